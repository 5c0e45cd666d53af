"""rcn-keras: Recombinator Networks, SumNet and the denoising keypoint model for facial landmarks.

The public API is loaded on first use, so that ``import rcn_keras`` (and the ``rcn`` command's
argument parsing) does not import TensorFlow. Using any model name (`Landmarker`, `build_model`, ...)
imports and registers every custom layer for `.keras` loading; so does ``import rcn_keras.landmarker``.
The application (training runs, the ``rcn`` command, experiments) lives in `rcn_keras.app`.
"""

from __future__ import annotations

import importlib

__version__ = "0.3.0"

_EXPORTS = {
    "rcn_keras.landmarker": ("Landmarker", "load_landmarker"),
    "rcn_keras.presets": ("PRESETS", "Preset", "get_preset", "list_presets"),
    "rcn_keras.models.config": ("DenoiserConfig", "ModelConfig", "READOUTS"),
    "rcn_keras.models.registry": ("build_model", "list_models", "model_config"),
    "rcn_keras.models.denoising": ("build_denoiser", "build_joint_model"),
    "rcn_keras.models.head": ("KeypointReadout", "as_map_model", "with_readout"),
    "rcn_keras.losses": ("PixelNLL",),
    "rcn_keras.metrics": ("NME",),
    "rcn_keras.export": ("export_saved_model", "export_tflite"),
    "rcn_keras.prediction_files": ("write_predictions",),
    "rcn_keras.runtimes": ("ExportedLandmarker",),
    "rcn_keras.align": ("align_face",),
    "rcn_keras.pose": ("head_pose",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBPACKAGES = ("data", "evaluation", "models", "detection", "runtimes", "inference", "export", "video",
                "prediction_files", "keypoints", "boxes", "align", "pose")

__all__ = sorted(_WHERE) + ["__version__"]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"rcn_keras.{name}")
    if name not in _WHERE:
        raise AttributeError(f"module 'rcn_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))
