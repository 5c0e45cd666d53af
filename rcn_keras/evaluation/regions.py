"""Where a 68-point error sits: NME per face region (jaw, brows, nose, eyes, mouth) and, for the jaw, its
error split into the component along the true contour (points sliding along the jaw line) and across it
(the jaw line itself missed). Means over faces and the region's points, % of each face's normaliser."""

from __future__ import annotations

import numpy as np

from rcn_keras.evaluation.nme import inter_ocular, per_sample_nme
from rcn_keras.keypoints import REGIONS_68, KeypointScheme

CONTOUR = "jaw"
# The keys of `region_errors`, in the order tables show them: the jaw, its along / across split, the rest.
REGION_COLUMNS = ("jaw", "jaw along", "jaw across", "brows", "nose", "eyes", "mouth")


def contour_tangents(points: np.ndarray) -> np.ndarray:
    """(N, P, 2) unit tangents of open contours (N, P, 2): central differences, one-sided at the ends."""
    points = np.asarray(points, np.float64)
    step = np.empty_like(points)
    step[:, 1:-1] = points[:, 2:] - points[:, :-2]
    step[:, 0] = points[:, 1] - points[:, 0]
    step[:, -1] = points[:, -1] - points[:, -2]
    return step / np.maximum(np.linalg.norm(step, axis=-1, keepdims=True), 1e-12)


def contour_components(pred: np.ndarray, gt: np.ndarray, contour, distance: np.ndarray,
                       mask: np.ndarray | None = None) -> tuple[float, float]:
    """Mean |error| along and across the true open ``contour`` (point indices, in order) as % of
    ``distance`` (N,); ``mask`` (N, K) leaves points out."""
    idx = list(contour)
    truth = np.asarray(gt, np.float64)[:, idx]
    error = np.asarray(pred, np.float64)[:, idx] - truth
    tangent = contour_tangents(truth)
    along = np.abs(np.sum(error * tangent, -1))
    across = np.abs(error[..., 0] * tangent[..., 1] - error[..., 1] * tangent[..., 0])
    w = np.ones_like(along) if mask is None else np.asarray(mask, np.float64)[:, idx]
    scale = 100.0 / np.maximum(np.asarray(distance, np.float64), 1e-12)[:, None]
    total = max(float(w.sum()), 1e-12)
    return float((along * scale * w).sum() / total), float((across * scale * w).sum() / total)


def region_errors(pred: np.ndarray, gt: np.ndarray, normaliser: str | None = None, mask: np.ndarray | None = None,
                  scheme: KeypointScheme | None = None) -> dict[str, float]:
    """NME (%) per region of the 68 points (the mean over faces of each face's region NME) and the jaw's
    mean error along and across its true contour (``"jaw along"``, ``"jaw across"``), keyed in
    `REGION_COLUMNS` order."""
    if np.shape(gt)[-2] != 68:
        raise ValueError(f"face regions are those of the 68 iBUG points, not of {np.shape(gt)[-2]} points")
    distance = inter_ocular(gt, normaliser, scheme)
    out = {name: float(100 * per_sample_nme(pred, gt, mask=mask, points=list(points), iod=distance).mean())
           for name, points in REGIONS_68.items()}
    out["jaw along"], out["jaw across"] = contour_components(pred, gt, REGIONS_68[CONTOUR], distance, mask)
    return {name: out[name] for name in REGION_COLUMNS}
