"""Pseudo-labels: a trained 68-point model's points for faces that carry only the paper's 5 true points
(MTFL), checked against those points and anchored to them (self-training, issue 32).

Each face is cropped as a 68-point training face is (the tight box of its points, `boxes.LANDMARK_BOX_SCALE`):
first from the model's mean shape placed on the 5 true points by a similarity, then (``rounds`` > 1) from
the model's own points. The 5 points derived from the result (`keypoints.FIVE_FROM_68`) are compared with
the true ones in each face's eye frame (x along the eyes, unit = eye-centre distance): the median offset
over all faces is the difference of the two annotation conventions (``bias``); what remains per face is
the model's error there (``agreement``, % of the eye distance, like the 5-point NME). ``anchor`` moves
the points behind each true point by that remaining error (each eye's six points together), so that a
kept face's derived 5 points are its true points in the 68-point convention.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np

from rcn_keras.data.formats import write_keypoint_csv
from rcn_keras.keypoints import FIVE_FROM_68, place_shape

EYES = (0, 1)  # rows of the two eye centres among the 5 points
# The default threshold (% of the eye distance): rcn-300w's validation faces within 5 % keep 90 % of them
# at 4.53 % NME, those beyond score 8.54 % (benchmarks/results/pseudo_label_threshold.json).
MAX_ERROR = 5.0


@dataclasses.dataclass
class PseudoLabels:
    """``keypoints`` (N, 68, 2) pixel centres (0-based) after anchoring, ``raw`` the model's own,
    ``agreement`` (N,) % of the eye distance, ``kept`` (N,) whether ``agreement`` <= ``max_error``,
    ``bias`` (5, 2) the convention offset in the eye frame (eye-distance units)."""

    images: list[str]
    keypoints: np.ndarray
    raw: np.ndarray
    agreement: np.ndarray
    kept: np.ndarray
    bias: np.ndarray
    max_error: float

    def summary(self) -> dict:
        a = self.agreement
        return {"faces": len(a), "kept": int(self.kept.sum()), "max_error": self.max_error,
                "agreement_mean": float(a.mean()), "agreement_median": float(np.median(a)),
                "agreement_p90": float(np.percentile(a, 90)), "bias_eye_distance": self.bias.round(4).tolist()}


def tight_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, w, h) of the tight box of pixel-centre points, in edge coordinates (the "landmarks" box)."""
    lo, hi = points.min(0), points.max(0) + 1.0
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


def eye_frames(points5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per face the rotation (N, 2, 2) whose columns are the eye direction and its normal, and the eye
    distance (N,)."""
    eyes = points5[:, EYES[1]] - points5[:, EYES[0]]
    iod = np.maximum(np.linalg.norm(eyes, axis=-1), 1e-9)
    u = eyes / iod[:, None]
    rot = np.stack([u, np.stack([-u[:, 1], u[:, 0]], -1)], axis=-1)
    return rot, iod


def agreement(points68: np.ndarray, points5: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's error at the true points, the convention ``bias`` taken out: returns the per-face error
    (N,) in % of the eye distance, the per-face residual (N, 5, 2) in pixels and the bias (5, 2)."""
    rot, iod = eye_frames(points5)
    offset = points5 - np.einsum("fk,nkc->nfc", FIVE_FROM_68, points68)
    local = np.einsum("nij,nfi->nfj", rot, offset) / iod[:, None, None]  # eye frame, eye-distance units
    bias = np.median(local, axis=0)
    residual = offset - np.einsum("nij,fj->nfi", rot, bias) * iod[:, None, None]
    error = np.linalg.norm(residual, axis=-1).mean(-1) / iod * 100.0
    return error, residual, bias


def anchor(points68: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Move the points behind each true point (`FIVE_FROM_68`'s non-zero weights) by its residual."""
    members = (FIVE_FROM_68 > 0).astype(np.float64)  # each of the 68 belongs to at most one of the 5
    return points68 + np.einsum("fk,nfc->nkc", members, residual)


def label_faces(predict: Callable, images: Sequence, points5: np.ndarray, mean_shape: np.ndarray,
                rounds: int = 2, chunk: int = 256, progress: Callable | None = None) -> np.ndarray:
    """The model's 68 points (N, 68, 2) pixel centres for one face per image. ``predict(images, boxes)``:
    `Landmarker.predict` with "landmarks" boxes; ``points5`` (N, 5, 2) the true points (pixel centres);
    ``mean_shape`` (68, 2) any frame: the first crop is its tight box placed on the true points."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds!r} must be at least 1")
    points = np.stack([place_shape(mean_shape, p) for p in np.asarray(points5, np.float64)])
    for r in range(rounds):
        out = []
        for start in range(0, len(images), chunk):
            part = list(images[start:start + chunk])
            results = predict(part, [tight_box(p) for p in points[start:start + chunk]])
            out.extend(np.asarray(res["faces"][0]["keypoints"], np.float64) for res in results)
            if progress is not None:
                progress(r * len(images) + start + len(part), rounds * len(images))
        points = np.stack(out)
    return points


def pseudo_labels(predict: Callable, images: Sequence[str], points5: np.ndarray, mean_shape: np.ndarray,
                  max_error: float = MAX_ERROR, anchored: bool = True, rounds: int = 2,
                  progress: Callable | None = None) -> PseudoLabels:
    """`label_faces`, scored by `agreement` against the true 5 points, kept up to ``max_error`` % and
    (``anchored``) moved onto them."""
    if not max_error > 0:
        raise ValueError(f"max_error={max_error!r} must be a positive percentage of the eye distance")
    points5 = np.asarray(points5, np.float64)
    raw = label_faces(predict, images, points5, mean_shape, rounds, progress=progress)
    error, residual, bias = agreement(raw, points5)
    final = anchor(raw, residual) if anchored else raw
    return PseudoLabels(list(map(str, images)), final, raw, error, error <= max_error, bias, float(max_error))


def write_pseudo_labels(path: str | os.PathLike, labels: PseudoLabels) -> None:
    """The kept faces as a keypoint CSV at ``path`` (image paths absolute), written atomically."""
    keep = np.flatnonzero(labels.kept)
    images = [os.path.abspath(labels.images[i]) for i in keep]
    write_keypoint_csv(path, images, labels.keypoints[keep])
