"""What the machine can do and how to run on it: the mixed-precision policy for a ``precision`` choice."""

from __future__ import annotations

import functools
import pathlib

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX-BF16; Linux /proc/cpuinfo)."""
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_precision(precision: str = "auto") -> str:
    """The Keras dtype policy for ``precision``: ``auto`` is mixed_float16 on a GPU, mixed_bfloat16 on a
    CPU with native bfloat16 (about 1.3-1.7x faster training here), float32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not allowed; allowed: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if has_gpu():
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"
