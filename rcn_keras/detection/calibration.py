"""Measure how a detector's boxes map to the crops the models train on: per face, the box format
(scale, shift x, shift y; `rcn_keras.boxes`) that turns the detector's box into the training crop,
and the medians over faces. `tools/calibrate_detectors.py` runs it on the 300W training faces."""

from __future__ import annotations

import os
import pathlib

import numpy as np

from rcn_keras.data import crop
from rcn_keras.detection.base import Detections
from rcn_keras.keypoints import afw5_from_68


def training_faces(root: str | os.PathLike, every: int = 1, cache_dir: str | None = None) -> list[tuple]:
    """(image path, 68 points in edge coordinates) of every ``every``-th 300W training face under ``root``
    (AFW + HELEN train less the seed-7345 validation split the models are picked on)."""
    from rcn_keras.data.datasets import SUBSETS_300W, image_beside, load_300w
    from rcn_keras.data.formats import read_pts

    train = load_300w(root, ("afw", "helen_train"), 68, cache_dir=cache_dir).split(0.1)[0]
    out = []
    for name, group in list(zip(train.names, train.groups))[::every]:
        pts = pathlib.Path(root) / SUBSETS_300W[group] / f"{name}.pts"
        out.append((image_beside(pts), read_pts(pts, n_points=68) - 0.5))
    return out


def training_crop(points68: np.ndarray, num_keypoints: int, width: int, height: int) -> np.ndarray:
    """The square (x, y, side) a model of ``num_keypoints`` points is trained on, for a face whose 68
    points (edge coordinates) are given: 1.3 x the landmark box (68), the eye / mouth rule (5)."""
    if num_keypoints == 5:
        return np.asarray(crop.box_from_5_points(afw5_from_68(points68), width, height, crop.MTFL_STAGE_B_RATIO),
                          np.float64)
    return np.asarray(crop.box_from_all_points(points68, crop.W300_STAGE_B_ENLARGE), np.float64)


def match(detections: Detections, target: np.ndarray) -> int | None:
    """Index of the detection that overlaps the square ``target`` (x, y, side) most (IoU >= 0.2), or None."""
    if not len(detections):
        return None
    x, y, s = target
    b = detections.boxes.astype(np.float64)
    iw = np.clip(np.minimum(b[:, 0] + b[:, 2], x + s) - np.maximum(b[:, 0], x), 0, None)
    ih = np.clip(np.minimum(b[:, 1] + b[:, 3], y + s) - np.maximum(b[:, 1], y), 0, None)
    iou = iw * ih / (b[:, 2] * b[:, 3] + s * s - iw * ih)
    best = int(np.argmax(iou))
    return best if iou[best] >= 0.2 else None


def box_format_of(box: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(scale, shift x, shift y) that takes ``box`` (x, y, w, h) to ``target`` (x, y, side) under
    `rcn_keras.boxes.crop_rect`: side = scale * max(w, h), centre = box centre + shift * max(w, h)."""
    bx, by, bw, bh = (float(v) for v in box)
    x, y, s = (float(v) for v in target)
    size = max(bw, bh)
    return np.array([s / size, (x + s / 2 - bx - bw / 2) / size, (y + s / 2 - by - bh / 2) / size])


def summarise(per_face: list[np.ndarray | None]) -> dict:
    """Median box format, its spread (half the 16-84 % range) and the recall, from `box_format_of` per
    face (``None`` where the detector missed the face)."""
    found = np.array([f for f in per_face if f is not None]).reshape(-1, 3)
    if not len(found):
        return {"format": None, "spread": None, "recall": 0.0, "faces": len(per_face)}
    lo, hi = np.percentile(found, [16, 84], axis=0)
    return {"format": [round(float(v), 4) for v in np.median(found, axis=0)],
            "spread": [round(float(v), 4) for v in (hi - lo) / 2],
            "recall": round(len(found) / len(per_face), 4), "faces": len(per_face)}


def measure(detector, faces) -> dict:
    """Calibration of ``detector`` on ``faces``, (image path, 68 points in edge coordinates) pairs: per
    keypoint count ("68", "5") the `summarise` dict."""
    from rcn_keras.data.formats import load_image

    per = {68: [], 5: []}
    for path, points in faces:
        image = load_image(path, "RGB")
        found = detector.detect(image)
        h, w = image.shape[:2]
        for k in per:
            target = training_crop(points, k, w, h)
            i = match(found, target)
            per[k].append(None if i is None else box_format_of(found.boxes[i], target))
    return {str(k): summarise(v) for k, v in per.items()}


def measure_on_faces(detector, faces, limit: int = 200) -> dict:
    """Calibration of ``detector`` for the crops of a `FaceSet` (a scheme of the user's own): run on up to
    ``limit`` of its loose 160x160 crops (evenly spread), each matched to the face's stage-B square; the
    `summarise` dict."""
    picks = np.unique(np.linspace(0, len(faces) - 1, min(limit, len(faces))).round().astype(int))
    per = []
    for i in picks:
        found = detector.detect(np.repeat(faces.images[i][..., None], 3, axis=-1))
        target = np.asarray(faces.rects[i], np.float64)
        j = match(found, target)
        per.append(None if j is None else box_format_of(found.boxes[j], target))
    return summarise(per)
