"""dlib's 68-point ERT shape predictor (the ``peers`` extra) behind `Landmarker.predict`'s interface for
given face boxes: the peer our benchmarks measure against, and a teacher for pseudo-labels.

dlib's predictor was trained on all of 300-W (research use only) from its HOG detector's boxes; a box of
ours is turned into that convention with the detector's calibration (`rcn_keras.detection.registry`), so
that the predictor starts where it was trained to.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rcn_keras.boxes import LANDMARK_BOX_SCALE, Box, check_box, crop_rect
from rcn_keras.detection.registry import calibrated_box_formats
from rcn_keras.extras import require
from rcn_keras.inference import to_rgb

NUM_KEYPOINTS = 68


def dlib_box(box: Box, box_format: tuple[float, float, float] = (LANDMARK_BOX_SCALE, 0.0, 0.0)) -> Box:
    """The square dlib HOG-detector box (x, y, w, h) whose calibrated crop is the crop of ``box`` under
    ``box_format``: the same face square, read back through dlib's calibration."""
    x0, y0, side = (float(v) for v in crop_rect((1, 1), box, box_format))
    cx, cy = x0 + side / 2, y0 + side / 2
    d_scale, d_sx, d_sy = calibrated_box_formats(NUM_KEYPOINTS)["dlib"]
    d_size = side / d_scale
    dcx, dcy = cx - d_sx * d_size, cy - d_sy * d_size
    return dcx - d_size / 2, dcy - d_size / 2, d_size, d_size


class DlibLandmarks:
    """dlib's 68-point predictor with ``predict(images, boxes, box_format="landmarks")``: one result per
    image, ``{"image", "faces": [{"box", "keypoints" (68, 2)}]}``, keypoints in 0-based pixel centres."""

    num_keypoints = NUM_KEYPOINTS
    name = "dlib"

    def __init__(self):
        self._dlib = require("dlib", "dlib's 68-point predictor", "dlib-bin", "peers")
        models = require("face_recognition_models", "dlib's 68-point predictor", "face-recognition-models",
                         "peers")
        self._predictor = self._dlib.shape_predictor(models.pose_predictor_model_location())

    def points(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float64 pixel centres of one face in ``rgb`` (uint8 (H, W, 3)) from a dlib-style box."""
        x, y, w, h = box
        rect = self._dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)) - 1, int(round(y + h)) - 1)
        shape = self._predictor(rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)

    def predict(self, images: Sequence, boxes: Sequence[Box], box_format: str = "landmarks", **_) -> list[dict]:
        """Points of one face per image, given its box; ``box_format`` "landmarks" (the tight box of the
        face's points) or "dlib" (dlib's own detector box)."""
        if box_format not in ("landmarks", "dlib"):
            raise ValueError(f"box format {box_format!r} is not accepted by dlib's predictor; allowed: dlib, "
                             f"landmarks")
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} boxes: dlib's predictor needs one box per image")
        results = []
        for index, (image, box) in enumerate(zip(images, boxes)):
            name, rgb = to_rgb(image, index)
            face = check_box(box) if box_format == "dlib" else dlib_box(box)
            results.append({"image": name, "faces": [{"box": face, "keypoints": self.points(rgb, face)}]})
        return results
