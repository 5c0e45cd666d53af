"""The training loss: masked per-keypoint negative log-likelihood of the true pixel (docs/model.md, 5.2),
float32 and log-softmax based, or its sub-pixel (bilinear) or spread (Gaussian target) variants,
optionally plus the distance of the soft-argmax read-out from the true point, the distance of a group's
mean point from its label (partial labels) and the divergence from a teacher's maps (distillation).

Targets are (B, K, 3): normalised x, y in [0, 1] and a mask (> 0: the point's weight; < 0: the point holds
its group's mean, `keypoints.GROUP_MEAN`), discretised by `rcn_keras.grid`; with a teacher, (B, K, 3 + H*W):
the teacher's per-keypoint pixel probabilities follow (`rcn_keras.distillation`).
"""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.grid import discretise, pixel_centres
from rcn_keras.models.head import pixel_log_softmax
from rcn_keras.models.layers import PACKAGE


TARGETS = ("pixel", "bilinear", "gaussian")


def bilinear_labels(coords, size: int):
    """Normalised (..., 2) coordinates -> the 4 pixel labels around the point (pixel centres at
    (j + 0.5) / size) and their bilinear weights, each (..., 4); points near the border are clamped."""
    u = ops.clip(ops.cast(coords, "float32") * size - 0.5, 0.0, size - 1.0)
    lo = ops.floor(u)
    frac = u - lo
    lo = ops.cast(lo, "int32")
    hi = ops.minimum(lo + 1, size - 1)
    x0, y0, x1, y1 = lo[..., 0], lo[..., 1], hi[..., 0], hi[..., 1]
    fx, fy = frac[..., 0], frac[..., 1]
    labels = ops.stack([y0 * size + x0, y0 * size + x1, y1 * size + x0, y1 * size + x1], axis=-1)
    weights = ops.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    return labels, weights


def gaussian_profiles(coords, size: int, sigma: float):
    """Normalised (..., 2) coordinates -> the target's x and y profiles, each (..., size): a Gaussian of
    ``sigma`` map pixels around the point, sampled at the pixel centres and summing to 1 on the map (their
    outer product is the 2-D target; a point off the map puts its mass on the nearest pixels)."""
    centres = (ops.arange(size, dtype="float32") + 0.5) / size
    offset = (centres - ops.cast(coords, "float32")[..., None]) * (size / sigma)  # (..., 2, size)
    log_g = -0.5 * offset * offset
    g = ops.exp(log_g - ops.max(log_g, axis=-1, keepdims=True))
    g = g / ops.sum(g, axis=-1, keepdims=True)
    return g[..., 0, :], g[..., 1, :]


def _distance(points, target, size: int):
    """Euclidean distance in map pixels between normalised (..., 2) ``points`` and ``target``."""
    offset = (points - target) * size
    return ops.sqrt(ops.sum(offset * offset, axis=-1) + 1e-6)


def teacher_divergence(teacher, logp):
    """KL(teacher || model) per keypoint, (B, K): ``teacher`` (B, K, H*W) probabilities, ``logp`` the
    model's (B, K, H*W) log-softmax; 0 where they agree (the cross-entropy less the teacher's entropy)."""
    q = ops.cast(teacher, "float32")
    log_q = ops.log(ops.maximum(q, 1e-30))
    return ops.sum(q * (log_q - logp), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelNLL(keras.losses.Loss):
    """L = K * sum_{b,k} m_bk * NLL_bk / (sum m + 1e-8), returned per sample so that the batch mean is L.

    y_true: (B, K, 3) = (x, y, mask) normalised; y_pred: pre-softmax maps (B, H, W, K).
    ``target="pixel"`` (the paper): the NLL of the one pixel that holds the point. ``"bilinear"``:
    the cross-entropy against the point spread bilinearly over the 4 pixel centres around it, so
    that the softmax learns sub-pixel positions (read them with a soft-argmax). ``"gaussian"``: against a
    Gaussian of ``target_sigma`` map pixels around the point (`gaussian_profiles`): sub-pixel too, and
    a softmax that need not put all its mass on four pixels (label smoothing in space). ``coordinate_weight``
    > 0 adds, per point, that weight times the Euclidean distance in map pixels between the soft-argmax
    (the softmax's expected pixel centre) and the true point: the error the soft-argmax read-out makes,
    the numerator of the NME, trained directly (as in integral regression, Sun et al. 2018).
    ``distill_weight`` > 0 adds, per point, that weight times KL(teacher || model) over the pixels when
    ``y_true`` carries a teacher's probabilities after (x, y, mask): on every point of a face, labelled or
    not (MTFL's partially labelled faces learn all 68 points from the teacher), at the face's weight (the
    largest mask size of its points), each point counted once; targets without them (validation) give
    the plain loss, so validation losses stay comparable across runs. ``label_weight`` scales the terms
    of the true labels (0: the teachers' maps alone). ``point_weights`` (one number >= 0 per keypoint) weighs
    each point's label terms and its share of the normalising count (e.g. the jaw's 17 points x 2), so the
    loss keeps its scale.
    ``groups`` (tuples of point indices, e.g. `keypoints.GROUPS_68`): where a face's points of a group
    have a negative mask (they hold the group's mean label, MTFL's eye centre), the distance in map
    pixels between the mean of their soft-argmax points and that label, times the mask's size, counts
    as one more point; such points have no loss of their own.
    """

    def __init__(self, target: str = "pixel", name: str = "pixel_nll", reduction: str = "sum_over_batch_size",
                 dtype=None, coordinate_weight: float = 0.0, distill_weight: float = 0.0, groups=(),
                 label_weight: float = 1.0, target_sigma: float = 1.0, point_weights=()):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        if target not in TARGETS:
            raise ValueError(f"target={target!r} is not allowed; allowed: {TARGETS}")
        if not target_sigma > 0:
            raise ValueError(f"target_sigma={target_sigma!r} must be > 0 (map pixels)")
        if not coordinate_weight >= 0:
            raise ValueError(f"coordinate_weight={coordinate_weight!r} must be >= 0")
        if not distill_weight >= 0:
            raise ValueError(f"distill_weight={distill_weight!r} must be >= 0")
        if not label_weight >= 0:
            raise ValueError(f"label_weight={label_weight!r} must be >= 0")
        groups = tuple(tuple(int(i) for i in g) for g in groups)
        if any(not g or min(g) < 0 for g in groups):
            raise ValueError(f"groups={groups!r} must be non-empty lists of point indices")
        point_weights = tuple(float(w) for w in point_weights or ())
        if any(not w >= 0 for w in point_weights):
            raise ValueError(f"point_weights={point_weights!r} must be numbers >= 0, one per keypoint")
        self.point_weights = point_weights
        self.target = target
        self.coordinate_weight = float(coordinate_weight)
        self.distill_weight = float(distill_weight)
        self.label_weight = float(label_weight)
        self.target_sigma = float(target_sigma)
        self.groups = groups

    def call(self, y_true, y_pred):
        size = y_pred.shape[1]
        k = y_pred.shape[-1]
        y_true = ops.cast(y_true, "float32")
        mask = ops.maximum(y_true[..., 2], 0.0)
        if self.point_weights:
            if len(self.point_weights) != k:
                raise ValueError(f"point_weights has {len(self.point_weights)} weights for {k} keypoints")
            mask = mask * ops.convert_to_tensor(self.point_weights, "float32")
        logp = pixel_log_softmax(y_pred)  # (B, K, H*W)
        if self.target == "pixel":
            labels = discretise(y_true[..., :2], size)
            nll = -ops.squeeze(ops.take_along_axis(logp, labels[..., None], axis=-1), -1)
        elif self.target == "bilinear":
            labels, weights = bilinear_labels(y_true[..., :2], size)
            nll = -ops.sum(weights * ops.take_along_axis(logp, labels, axis=-1), axis=-1)
        else:  # the cross-entropy against the separable Gaussian: sum over rows of gy x (logp rows . gx)
            gx, gy = gaussian_profiles(y_true[..., :2], size, self.target_sigma)
            rows = ops.reshape(logp, (-1, k, size, y_pred.shape[2]))
            nll = -ops.sum(gy * ops.sum(rows * gx[..., None, :], axis=-1), axis=-1)
        if self.coordinate_weight or self.groups:
            centres = pixel_centres(ops.arange(size * y_pred.shape[2]), y_pred.shape[2])  # (H*W, 2)
            expected = ops.matmul(ops.exp(logp), centres)  # (B, K, 2), normalised
        if self.coordinate_weight:
            nll = nll + self.coordinate_weight * _distance(expected, y_true[..., :2], size)
        total, counted = self.label_weight * ops.sum(mask * nll, axis=-1), mask
        if self.distill_weight and y_true.shape[-1] > 3:
            face = ops.max(ops.abs(y_true[..., 2]), axis=-1, keepdims=True) * ops.ones_like(mask)
            total = total + self.distill_weight * ops.sum(face * teacher_divergence(y_true[..., 3:], logp), axis=-1)
            counted = ops.maximum(mask, face)
        count = ops.sum(counted, axis=-1)
        group_mask = ops.maximum(-y_true[..., 2], 0.0)
        for members in self.groups:  # each group with a mean label counts as one point
            idx = list(members)
            weight = ops.mean(ops.take(group_mask, idx, axis=1), axis=1)
            mean_of = lambda p: ops.mean(ops.take(p, idx, axis=1), axis=1)  # noqa: E731
            total = total + self.label_weight * weight * _distance(mean_of(expected), mean_of(y_true[..., :2]), size)
            count = count + weight
        batch = ops.cast(ops.shape(mask)[0], "float32")
        return k * total / (ops.sum(count) / batch + 1e-8)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "target": self.target,
                "coordinate_weight": self.coordinate_weight, "distill_weight": self.distill_weight,
                "groups": [list(g) for g in self.groups], "label_weight": self.label_weight,
                "target_sigma": self.target_sigma, "point_weights": list(self.point_weights)}
