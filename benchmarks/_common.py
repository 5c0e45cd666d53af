"""Shared helpers of the benchmark scripts: environment capture, table printing, atomic JSON output, the
research-only data's absence."""

from __future__ import annotations

import json
import os
import pathlib
import platform

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    """The processor's model name (timings and bfloat16 support depend on it)."""
    info = pathlib.Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def environment() -> dict:
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "cpus": os.cpu_count(), "cpu": cpu_name(), "machine": platform.machine(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset"),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def print_table(rows: list[dict], columns: list[str]) -> str:
    """Print rows as a Markdown table (floats with 2 decimals below 10, else 1) and return it."""
    from rcn_keras.markdown import markdown_table

    def cell(v):
        return (f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}") if isinstance(v, float) else v

    text = markdown_table([{c: cell(r.get(c)) for c in columns} for r in rows], columns)
    print(text)
    return text


def write_results(name: str, payload: dict) -> pathlib.Path:
    """Write ``results/<name>.json`` atomically."""
    from rcn_keras.files import atomic_write_bytes

    path = RESULTS / f"{name}.json"
    atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
    return path


def write_report(name: str, title: str, intro: str, rows: list[dict], columns: list[str], payload: dict) -> None:
    """Print ``rows`` as a table and write it under ``title`` and ``intro`` to ``results/<name>.md``, and
    ``payload`` to ``results/<name>.json``."""
    from rcn_keras.files import atomic_write_text

    table = print_table(rows, columns)
    atomic_write_text(RESULTS / f"{name}.md", f"# {title}\n\n{intro}\n\n{table}\n")
    print(f"wrote {write_results(name, payload)}")


def data_missing(root: str) -> bool:
    """True (after saying so) where the research-only 300W data a benchmark scores on is not at ``root``."""
    if pathlib.Path(root).is_dir():
        return False
    print(f"skipped: {root} not found (the 300W data is research-only and not shipped)")
    return True
