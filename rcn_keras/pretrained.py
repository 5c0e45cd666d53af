"""Models shipped inside the package (``rcn_keras/weights/<name>.keras``), loadable by name."""

from __future__ import annotations

import pathlib

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"


def list_pretrained() -> list[str]:
    """Names of the models shipped with this install."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.keras"))


def pretrained_path(name: str) -> pathlib.Path | None:
    """Path of the shipped model ``name``, or ``None`` if no such model is shipped."""
    path = WEIGHTS_DIR / f"{name}.keras"
    return path if path.is_file() else None
