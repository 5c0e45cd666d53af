"""Shared helpers of the benchmark scripts: environment capture, table printing, atomic JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import platform

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def environment() -> dict:
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def print_table(rows: list[dict], columns: list[str]) -> str:
    """Print rows as a Markdown table and return it."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [(f"{row[c]:.2f}" if abs(row[c]) < 10 else f"{row[c]:.1f}") if isinstance(row[c], float)
                 else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    return text


def write_results(name: str, payload: dict) -> pathlib.Path:
    """Write ``results/<name>.json`` atomically."""
    from rcn_keras.data.formats import atomic_write_bytes

    path = RESULTS / f"{name}.json"
    atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
    return path
