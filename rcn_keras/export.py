"""Export a model as a SavedModel whose serving signature takes raw grey 80x80 crops (any batch size)
and returns keypoints and confidence, and convert it to TFLite. Outputs are written atomically."""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import TYPE_CHECKING

from rcn_keras.files import atomic_folder, atomic_write_bytes
from rcn_keras.grid import MAP_SIZE

if TYPE_CHECKING:
    import keras

FORMATS = ("saved_model", "tflite")  # read by the command line before TensorFlow is imported


def _readout_of(model: keras.Model, readout: str | None) -> str:
    """``readout``, else the model's own (a `Landmarker`'s), else arg-max."""
    return readout or getattr(model, "readout", None) or "argmax"


def export_saved_model(model: keras.Model, path: str | os.PathLike, readout: str | None = None,
                       batch_size: int | None = None) -> pathlib.Path:
    """SavedModel with endpoints ``serve`` (image -> {"keypoints": (B, K, 2) in [0, 1] of the crop,
    "confidence": (B, K) peak probability}) and ``presoftmax`` (image -> (B, 80, 80, K) maps).

    ``image`` is float32 (B, 80, 80, 1) raw grey intensities, B any size unless ``batch_size`` fixes
    it; it loads with plain TensorFlow. ``model``: a `Landmarker` (its read-out unless ``readout``) or a
    map model (arg-max unless ``readout``).
    """
    import keras
    import tensorflow as tf

    from rcn_keras.models.head import as_map_model, with_readout

    infer = with_readout(as_map_model(model), _readout_of(model, readout))
    with atomic_folder(path) as tmp:
        archive = keras.export.ExportArchive()
        archive.track(infer)
        spec = [tf.TensorSpec([batch_size, MAP_SIZE, MAP_SIZE, 1], tf.float32, name="image")]

        def serve(image):
            out = infer(image, training=False)
            return {"keypoints": out["keypoints"], "confidence": out["confidence"]}

        archive.add_endpoint("serve", serve, input_signature=spec)
        archive.add_endpoint("presoftmax", lambda image: infer(image, training=False)["presoftmax"],
                             input_signature=spec)
        archive.write_out(str(tmp), verbose=False)
    return pathlib.Path(path)


def export_tflite(model: keras.Model, path: str | os.PathLike, readout: str | None = None,
                  batch_size: int = 1) -> pathlib.Path:
    """TFLite flatbuffer (float32) for a **fixed** batch size, with the signature "serve"
    (image -> keypoints, confidence). A fixed batch lets TFLite's default XNNPack delegate run it
    (with a dynamic batch the delegate fails to prepare)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        sm = export_saved_model(model, pathlib.Path(tmp) / "sm", _readout_of(model, readout), batch_size=batch_size)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(sm), signature_keys=["serve"])
        flatbuffer = converter.convert()
    atomic_write_bytes(path, flatbuffer)
    return pathlib.Path(path)


def export_model(model: keras.Model, path: str | os.PathLike, format: str = "saved_model",
                 readout: str | None = None, batch_size: int | None = None) -> pathlib.Path:
    """Export in ``format`` ("saved_model": any batch unless ``batch_size``; "tflite": a fixed batch,
    default 1)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if format == "saved_model":
        return export_saved_model(model, path, readout, batch_size)
    return export_tflite(model, path, readout, batch_size or 1)
