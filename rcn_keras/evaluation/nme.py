"""Normalised mean error (NME) of keypoints (docs/model.md 7): normalisers, "paper" and continuous modes,
300W border projection, failure rate, AUC and cumulative error distribution.

Points are (..., K, 2) in normalised [0, 1] crop coordinates unless said otherwise. Errors are
fractions (multiply by 100 for %).
"""

from __future__ import annotations

import numpy as np

from rcn_keras.grid import MAP_SIZE
from rcn_keras.keypoints import BOX_MIN_POINTS, BOX_NORMALISER, FACE_SIDE_IN_CROP, KeypointScheme, as_scheme


def inter_ocular(points: np.ndarray, normaliser: str | None = None, scheme: KeypointScheme | None = None) -> np.ndarray:
    """Normalising distance per sample for (N, K, 2) ground-truth points under ``scheme`` (default: the
    `standard_scheme` of K): the distance between two point groups' centres, or ``"box"`` (the face box
    side for fewer than 3 points, `FACE_SIDE_IN_CROP`)."""
    points = np.asarray(points, dtype=np.float64)
    scheme = as_scheme(scheme, points.shape[-2])
    name = scheme.check_normaliser(normaliser)
    if name == BOX_NORMALISER and points.shape[-2] < BOX_MIN_POINTS:
        return np.full(points.shape[:-2], FACE_SIDE_IN_CROP)
    if name == BOX_NORMALISER:
        return np.sqrt(np.ptp(points[..., 0], axis=-1) * np.ptp(points[..., 1], axis=-1))
    left, right = scheme.normalisers[name]
    return np.linalg.norm(points[..., left, :].mean(-2) - points[..., right, :].mean(-2), axis=-1)


def per_sample_nme(pred: np.ndarray, gt: np.ndarray, normaliser: str | None = None, mask: np.ndarray | None = None,
                   mode: str = "continuous", points: list[int] | None = None,
                   iod: np.ndarray | None = None, scheme: KeypointScheme | None = None) -> np.ndarray:
    """Mean point-to-point error of each sample divided by its inter-ocular distance.

    ``mode="continuous"``: sub-pixel ground truth, predictions as given (argmax read-out gives pixel
    centres). ``mode="paper"`` (docs/model.md 7.1): both sides on the integer 80-grid, ground truth floored,
    prediction = the pixel index, while the normaliser stays continuous. ``mask`` (N, K) averages
    over the unmasked points only; ``points`` restricts to a subset (e.g. `POINTS_49`); ``scheme`` gives
    the normalisers (default: the `standard_scheme` of K).
    """
    if mode not in ("continuous", "paper"):
        raise ValueError(f"mode must be 'continuous' or 'paper', got {mode!r}")
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} differ in shape")
    d = iod if iod is not None else inter_ocular(gt, normaliser, scheme)
    if mode == "paper":
        pred = np.floor(np.clip(pred, 0, 0.99999) * MAP_SIZE) / MAP_SIZE
        gt = np.floor(np.clip(gt, 0, 0.99999) * MAP_SIZE) / MAP_SIZE
    err = np.linalg.norm(pred - gt, axis=-1)
    w = np.ones_like(err) if mask is None else np.asarray(mask, dtype=np.float64)
    if points is not None:
        err, w = err[..., points], w[..., points]
    return (err * w).sum(-1) / np.maximum(w.sum(-1), 1e-12) / np.maximum(d, 1e-12)


def failure_rate(errors: np.ndarray, threshold: float = 0.08) -> float:
    """Fraction of samples whose NME exceeds ``threshold``."""
    return float(np.mean(np.asarray(errors) > threshold))


def ced(errors: np.ndarray, threshold: float = 0.08, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: (thresholds, fraction of samples with error <= threshold)."""
    xs = np.linspace(0.0, threshold, steps + 1)
    e = np.sort(np.asarray(errors))
    return xs, np.searchsorted(e, xs, side="right") / max(len(e), 1)


def auc(errors: np.ndarray, threshold: float = 0.08) -> float:
    """Area under the CED curve up to ``threshold``, divided by ``threshold`` (1.0 = perfect)."""
    xs, ys = ced(errors, threshold)
    return float(np.trapezoid(ys, xs) / threshold)


def project_to_border(pred_px: np.ndarray, codes: np.ndarray, border_pixel: np.ndarray,
                      snap: bool = True) -> np.ndarray:
    """300W test-time projection (docs/model.md 5.4) of (N, K, 2) predictions in 80-grid pixel units.

    With ``snap``, points with border code 1/3 get x = bp0/bp2, codes 2/4 get y = bp1/bp3; then every
    prediction is clamped into [bp0, bp2] x [bp1, bp3] (the joint model uses the clamp only).
    """
    p = np.array(pred_px, dtype=np.float64)
    bp = np.asarray(border_pixel, dtype=np.float64)[:, None, :]  # (N, 1, 4)
    if snap:
        codes = np.asarray(codes)
        p[..., 0] = np.where(codes == 1, bp[..., 0], np.where(codes == 3, bp[..., 2], p[..., 0]))
        p[..., 1] = np.where(codes == 2, bp[..., 1], np.where(codes == 4, bp[..., 3], p[..., 1]))
    p[..., 0] = np.clip(p[..., 0], bp[..., 0], bp[..., 2])
    p[..., 1] = np.clip(p[..., 1], bp[..., 1], bp[..., 3])
    return p
