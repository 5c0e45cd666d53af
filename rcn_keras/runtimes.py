"""Run an exported model file on 80x80 crops without Keras: TFLite files with LiteRT (``ai-edge-litert``,
the ``litert`` extra; TensorFlow's own interpreter where it is absent) and ONNX files with ONNX Runtime
(the ``onnx`` extra). Each runner maps raw grey crops (N, 80, 80, 1) to {"keypoints", "confidence"}."""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np

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
        if not self.path.is_file():
            raise FileNotFoundError(f"model not found: {self.path}")
        suffix = self.path.suffix.lower()
        if suffix == ".tflite":
            self.runtime = "litert"
            interpreter = _tflite_interpreter(str(self.path), threads)
            self._run = interpreter.get_signature_runner("serve")
            self.batch_size = int(interpreter.get_input_details()[0]["shape"][0])  # fixed at export
        elif suffix == ".onnx":
            self.runtime = "onnxruntime"
            onnxruntime = require("onnxruntime", "running ONNX models", "onnxruntime", "onnx")
            options = onnxruntime.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
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
        crops = np.asarray(crops, np.float32).reshape(-1, MAP_SIZE, MAP_SIZE, 1)
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
