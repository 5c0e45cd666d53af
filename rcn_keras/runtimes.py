"""Run an exported model file without Keras: TFLite files with LiteRT (``ai-edge-litert``, the ``litert``
extra; TensorFlow's own interpreter where it is absent) and ONNX files with ONNX Runtime (the ``onnx``
extra). Each runner maps raw grey crops (N, 80, 80, 1) to {"keypoints", "confidence"}, and reads photos
as `Landmarker.predict` does (`ExportedLandmarker.predict`): with LiteRT, `rcn predict` starts in well
under a second, without importing TensorFlow."""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np

from rcn_keras.boxes import default_box_formats, pick_box_format
from rcn_keras.errors import first_line
from rcn_keras.extras import require
from rcn_keras.grid import MAP_SIZE
from rcn_keras.runtime import quiet_stderr


def tflite_interpreter(path: str, threads: int | None):
    """A LiteRT interpreter of the file ``path`` (TensorFlow's own copy where the litert extra is missing)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's copy (deprecated, slated for removal): same API
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path, num_threads=threads)
    return Interpreter(model_path=path, num_threads=threads)


class ExportedLandmarker:
    """A ``.tflite`` or ``.onnx`` file from `rcn_keras.export`, callable on crops and able to read photos
    (`predict`). ``threads``: CPU threads the runtime may use (default: its own choice). ``runtime``:
    "litert" or "onnxruntime". ``box_formats`` / ``default_box_format``: the face boxes it accepts (default:
    those of a model of the paper's keypoint schemes, 5 or 68 points; the calibrated detectors only for
    those)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, box_formats: dict | None = None,
                 default_box_format: str = "landmarks"):
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
                interpreter = tflite_interpreter(str(self.path), threads)
                self._run = interpreter.get_signature_runner("serve")
            except (ValueError, RuntimeError) as exc:
                raise ValueError(f"{self.path}: cannot load the TFLite model ({first_line(exc)})") from None
            shape = interpreter.get_input_details()[0]["shape"]
            self.batch_size, self.input_size = int(shape[0]), int(shape[1])  # fixed at export
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
            dim, side = self._session.get_inputs()[0].shape[:2]
            self.batch_size = dim if isinstance(dim, int) else None
            self.input_size = side if isinstance(side, int) else MAP_SIZE
            self._outputs = [o.name for o in self._session.get_outputs()]
        else:
            raise ValueError(f"{self.path}: not an exported model (.tflite or .onnx)")
        with quiet_stderr():  # LiteRT's XNNPACK notice
            self.num_keypoints = self._probe_keypoints()
        self.standard = self.num_keypoints in (5, 68)
        self.box_formats = {str(n): tuple(float(v) for v in f)
                            for n, f in (box_formats or default_box_formats(self.num_keypoints, self.standard)).items()}
        self.default_box_format = default_box_format

    def _probe_keypoints(self) -> int:
        """The point count of the file's outputs (one blank crop run through it)."""
        side = self.input_size
        return int(self(np.zeros((1, side, side, 1), np.float32))["keypoints"].shape[1])

    def box_format(self, name: str | None = None):
        """The box format ``name`` (see `rcn_keras.boxes.pick_box_format`)."""
        return pick_box_format(name, self.box_formats, self.default_box_format, self.num_keypoints, self.standard)

    def predict(self, images, boxes=None, box_format: str | None = None, batch_size: int = 64,
                on_error: str = "raise", detector=None, max_faces: int | None = None, level: bool = True,
                progress=None, on_result=None, preview_side: int | None = None, align=None,
                pose: bool = False) -> list[dict]:
        """Keypoints of every face in each image, as `Landmarker.predict` gives them (same arguments but
        the read-out and flip averaging, which are fixed in the file; ``align`` and ``pose`` as there);
        ``detector``: ``None`` or "none" (each image is one face crop), "auto", a detector name or a
        `Detector`."""
        from rcn_keras import inference
        from rcn_keras.detection.registry import make_detector

        finder = make_detector(detector)
        found_format = self.box_format(finder.name) if finder is not None else None
        return inference.predict_images(self, images, boxes, self.box_format(box_format), finder, found_format,
                                        batch_size, on_error, level, max_faces, progress, on_result, preview_side,
                                        align, pose, self.input_size)

    def _call(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.runtime == "litert":
            out = self._run(image=batch)
        else:
            out = dict(zip(self._outputs, self._session.run(self._outputs, {"image": batch})))
        return {"keypoints": np.asarray(out["keypoints"]), "confidence": np.asarray(out["confidence"])}

    def __call__(self, crops) -> dict[str, np.ndarray]:
        """Keypoints (N, K, 2) in [0, 1] of the crop and confidence (N, K) of crops (N, S, S, 1) or
        (N, S, S) of raw grey intensities (S = `input_size`, 80 or 160; as `Landmarker.predict_crops`);
        other shapes are refused."""
        from rcn_keras.inference import as_crops

        crops = as_crops(crops, self.input_size)
        if not len(crops) and hasattr(self, "num_keypoints"):
            return {"keypoints": np.zeros((0, self.num_keypoints, 2), np.float32),
                    "confidence": np.zeros((0, self.num_keypoints), np.float32)}
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
