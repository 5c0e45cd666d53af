"""Export a trained model as a SavedModel whose serving signature takes raw grey 80x80 crops (any batch
size) and returns keypoints and confidence, and convert it to TFLite. Outputs are written atomically."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import keras

from rcn_keras.data.formats import atomic_write_bytes
from rcn_keras.models.head import with_readout
from rcn_keras.predict import as_map_model

FORMATS = ("saved_model", "tflite")


def _replace_dir(tmp: pathlib.Path, path: pathlib.Path) -> None:
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_saved_model(model: keras.Model, path: str | os.PathLike, readout: str = "argmax",
                       batch_size: int | None = None) -> pathlib.Path:
    """SavedModel with endpoints ``serve`` (image -> {"keypoints": (B, K, 2) in [0, 1] of the crop,
    "confidence": (B, K) peak probability}) and ``presoftmax`` (image -> (B, 80, 80, K) maps).

    ``image`` is float32 (B, 80, 80, 1) raw grey intensities, B any size unless ``batch_size`` fixes
    it; it loads with plain TensorFlow.
    """
    import tensorflow as tf

    infer = with_readout(as_map_model(model), readout)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        archive = keras.export.ExportArchive()
        archive.track(infer)
        spec = [tf.TensorSpec([batch_size, 80, 80, 1], tf.float32, name="image")]

        def serve(image):
            out = infer(image, training=False)
            return {"keypoints": out["keypoints"], "confidence": out["confidence"]}

        archive.add_endpoint("serve", serve, input_signature=spec)
        archive.add_endpoint("presoftmax", lambda image: infer(image, training=False)["presoftmax"],
                             input_signature=spec)
        archive.write_out(str(tmp), verbose=False)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def export_tflite(model: keras.Model, path: str | os.PathLike, readout: str = "argmax",
                  batch_size: int = 1) -> pathlib.Path:
    """TFLite flatbuffer (float32) for a **fixed** batch size, with the signature "serve"
    (image -> keypoints, confidence). A fixed batch lets TFLite's default XNNPack delegate run it
    (with a dynamic batch the delegate fails to prepare)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        sm = export_saved_model(model, pathlib.Path(tmp) / "sm", readout, batch_size=batch_size)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(sm), signature_keys=["serve"])
        flatbuffer = converter.convert()
    atomic_write_bytes(path, flatbuffer)
    return pathlib.Path(path)


def export(model: keras.Model, path: str | os.PathLike, format: str = "saved_model", readout: str = "argmax",
           tflite_batch_size: int = 1):
    """Export in ``format`` ("saved_model" or "tflite")."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if format == "saved_model":
        return export_saved_model(model, path, readout)
    return export_tflite(model, path, readout, tflite_batch_size)
