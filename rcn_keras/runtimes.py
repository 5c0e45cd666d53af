"""Run an exported model file on 80x80 crops without Keras: TFLite files with LiteRT (``ai-edge-litert``,
the ``litert`` extra; TensorFlow's own interpreter where it is absent) and ONNX files with ONNX Runtime
(the ``onnx`` extra). Each runner maps raw grey crops (N, 80, 80, 1) to {"keypoints", "confidence"}."""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np

from rcn_keras.errors import first_line
from rcn_keras.extras import require
from rcn_keras.grid import MAP_SIZE


def _tflite_interpreter(path: str, threads: int | None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's copy (deprecated, slated for removal): same API
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path, num_threads=threads)
    return Interpreter(model_path=path, num_threads=threads)


class ExportedLandmarker:
    """A ``.tflite`` or ``.onnx`` file from `rcn_keras.export`, callable on crops. ``threads``: CPU
    threads the runtime may use (default: its own choice). ``runtime``: "litert" or "onnxruntime"."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = pathlib.Path(path)
        if self.path.is_dir():
            hint = (" (a SavedModel: load it with tf.saved_model.load, or export --format tflite / onnx)"
                    if (self.path / "saved_model.pb").is_file() else "")
            raise ValueError(f"{self.path}: a folder, not a .tflite or .onnx file{hint}")
        if not self.path.is_file():
            raise FileNotFoundError(f"model not found: {self.path}")
        suffix = self.path.suffix.lower()
        if suffix == ".tflite":
            self.runtime = "litert"
            try:
                interpreter = _tflite_interpreter(str(self.path), threads)
                self._run = interpreter.get_signature_runner("serve")
            except (ValueError, RuntimeError) as exc:
                raise ValueError(f"{self.path}: cannot load the TFLite model ({first_line(exc)})") from None
            self.batch_size = int(interpreter.get_input_details()[0]["shape"][0])  # fixed at export
        elif suffix == ".onnx":
            self.runtime = "onnxruntime"
            onnxruntime = require("onnxruntime", "running ONNX models", "onnxruntime", "onnx")
            options = onnxruntime.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            try:
                self._session = onnxruntime.InferenceSession(str(self.path), options,
                                                             providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types for bad files)
                raise ValueError(f"{self.path}: cannot load the ONNX model ({first_line(exc)})") from None
            dim = self._session.get_inputs()[0].shape[0]
            self.batch_size = dim if isinstance(dim, int) else None
            self._outputs = [o.name for o in self._session.get_outputs()]
        else:
            raise ValueError(f"{self.path}: not an exported model (.tflite or .onnx)")

    def _call(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.runtime == "litert":
            out = self._run(image=batch)
        else:
            out = dict(zip(self._outputs, self._session.run(self._outputs, {"image": batch})))
        return {"keypoints": np.asarray(out["keypoints"]), "confidence": np.asarray(out["confidence"])}

    def __call__(self, crops) -> dict[str, np.ndarray]:
        """Keypoints (N, K, 2) in [0, 1] of the crop and confidence (N, K) of crops (N, 80, 80, 1) or
        (N, 80, 80) of raw grey intensities (as `Landmarker.predict_crops`); other shapes are refused."""
        crops = np.asarray(crops, np.float32)
        if crops.ndim == 3:
            crops = crops[..., None]
        if crops.ndim != 4 or crops.shape[1:] != (MAP_SIZE, MAP_SIZE, 1):
            raise ValueError(f"crops must be (N, {MAP_SIZE}, {MAP_SIZE}, 1) grey images, got shape "
                             f"{np.shape(crops)}")
        if self.batch_size is None:
            return self._call(crops)
        parts = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            n = len(batch)
            if n < self.batch_size:  # a fixed-batch file: pad the last batch
                batch = np.concatenate([batch, np.zeros((self.batch_size - n,) + batch.shape[1:], np.float32)])
            parts.append({k: v[:n] for k, v in self._call(batch).items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in ("keypoints", "confidence")}
