"""Models shipped inside the package (``rcn_keras/weights/<name>.keras``), loadable by name."""

from __future__ import annotations

import json
import os
import pathlib

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"


def list_pretrained() -> list[str]:
    """Names of the models shipped with this install."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.keras"))


def pretrained_path(name: str) -> pathlib.Path | None:
    """Path of the shipped model ``name``, or ``None`` if no such model is shipped."""
    path = WEIGHTS_DIR / f"{name}.keras"
    return path if path.is_file() else None


def pretrained_info(name: str) -> dict | None:
    """The model card data (``<name>.json`` beside the weights: data, budget, NME, read-out) of a
    shipped model, or ``None``."""
    path = WEIGHTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def default_readout(model: str | os.PathLike) -> str:
    """The read-out a model was tuned with: its model card's for a shipped name, else ``"argmax"``."""
    info = pretrained_info(str(model)) if not pathlib.Path(model).exists() else None
    return (info or {}).get("readout", "argmax")


def package_pretrained(model_path: str | os.PathLike, name: str, card: dict,
                       weights_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Write a trained map model as the shipped model ``name``: the weights without optimizer state
    (``<name>.keras``, a fresh uncompiled copy) and its model card data (``<name>.json``), atomically."""
    import keras

    from rcn_keras.data.formats import atomic_write_bytes
    from rcn_keras.predict import load_model
    from rcn_keras.training.callbacks import save_model_atomically

    folder = pathlib.Path(weights_dir) if weights_dir else WEIGHTS_DIR
    trained = load_model(model_path)
    clean = keras.Model.from_config(trained.get_config())
    clean.set_weights(trained.get_weights())
    save_model_atomically(clean, folder / f"{name}.keras")
    atomic_write_bytes(folder / f"{name}.json", json.dumps(card, indent=2).encode())
    return folder / f"{name}.keras"
