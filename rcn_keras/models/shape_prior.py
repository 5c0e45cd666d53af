"""A statistical face-shape prior for the read-out: each keypoint's softmax gives a mean and a 2x2
covariance, and the keypoints are the most probable shape under a Gaussian (PCA) model of the training
shapes given those Gaussian observations (MAP). A point whose map is broad or elongated (a jaw point
sliding along the jaw line, a point under a beard or a hand) moves towards what the confident points
and the shape statistics say; confident points barely move.

Built from training keypoints with `ShapePrior.from_shapes`; saved inside the model as weights. Only
matrix products and element-wise operations (the linear solve is an unrolled conjugate gradient), so a
model with a prior exports to SavedModel, TFLite and ONNX like one without.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from rcn_keras.grid import mirror_points
from rcn_keras.keypoints import fit_similarity
from rcn_keras.models.layers import PACKAGE

DEFAULT_TEMPERATURE = 1.5  # logits x 1.5 before the moments: picked on rcn-300w validation faces
DEFAULT_STRENGTH = 1.0  # the prior's weight against the maps: 1 = the Bayesian posterior
COVARIANCE_FLOOR = 1e-6  # added to each point's variance (crop units: a deviation of 0.08 px at 80x80)
# Modes kept (at most), alignment rounds and conjugate-gradient steps per round. On the 300W validation
# faces 64 modes x 4 rounds x 6 steps score as all 132 modes x 4 x 10 (rcn-300w 5.00 %, rcn-300w-fast v2
# 6.11 %) in half the time; on rcn-300w 48 modes cost 0.01, 32 modes 0.04, 4 steps 0.03, 2 rounds 0.15 and
# 1 round 1.2 points (benchmarks/results/shape_prior_cost.md).
DEFAULT_MODES, DEFAULT_ITERATIONS, DEFAULT_STEPS = 64, 4, 6


def keypoint_moments(logits, temperature: float = DEFAULT_TEMPERATURE):
    """Mean (B, K, 2) and covariance (B, K, 3) = (xx, xy, yy) of each keypoint's pixel softmax of
    ``temperature`` x logits (B, H, W, K); normalised coordinates of pixel centres, float32."""
    logits = ops.cast(logits, "float32") * temperature
    h, w, k = logits.shape[1], logits.shape[2], logits.shape[3]
    flat = ops.reshape(logits, (-1, h * w, k))
    p = ops.exp(flat - ops.max(flat, axis=1, keepdims=True))
    p = ops.reshape(p / ops.sum(p, axis=1, keepdims=True), (-1, h, w, k))
    xs = (ops.arange(w, dtype="float32") + 0.5) / w
    ys = (ops.arange(h, dtype="float32") + 0.5) / h
    px, py = ops.sum(p, axis=1), ops.sum(p, axis=2)  # marginals over rows (B, W, K) and columns (B, H, K)
    x = ops.einsum("bwk,w->bk", px, xs)
    y = ops.einsum("bhk,h->bk", py, ys)
    # Centred second moments: E[x^2] - E[x]^2 would cancel to noise where the pixel centres are rounded
    # (a float16 export stores them in half precision).
    dx = xs[None, :, None] - x[:, None, :]  # (B, W, K)
    dy = ys[None, :, None] - y[:, None, :]  # (B, H, K)
    xx = ops.sum(px * dx * dx, axis=1)
    yy = ops.sum(py * dy * dy, axis=1)
    xy = ops.sum(ops.sum(p * dx[:, None], axis=2) * dy, axis=1)
    return ops.stack([x, y], axis=-1), ops.stack([xx, xy, yy], axis=-1)


def mirror_moments(points, covariance, flip):
    """Moments of a mirrored crop moved back: x -> 1 - x, re-ordered by ``flip``, xy negated."""
    covariance = ops.take(covariance, list(flip), axis=1)
    return mirror_points(points, flip), covariance * ops.convert_to_tensor([1.0, -1.0, 1.0])


def average_moments(a, b):
    """Two independent estimates of the same points averaged: means halved, covariances quartered."""
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 4


def _similarity(src, dst, weight):
    """Weighted least-squares similarity dst ~ M src + t per sample: (a, b) of M = [[a, -b], [b, a]]
    (B,) each and t (B, 2). src, dst (B, K, 2); weight (B, K)."""
    weight = weight / ops.sum(weight, axis=1, keepdims=True)
    ms = ops.sum(weight[..., None] * src, axis=1)
    md = ops.sum(weight[..., None] * dst, axis=1)
    s, d = src - ms[:, None], dst - md[:, None]
    den = ops.sum(weight * ops.sum(s * s, axis=-1), axis=1)
    a = ops.sum(weight * (s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]), axis=1) / den
    b = ops.sum(weight * (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]), axis=1) / den
    t = md - ops.stack([a * ms[:, 0] - b * ms[:, 1], b * ms[:, 0] + a * ms[:, 1]], axis=-1)
    return a, b, t


def _apply(a, b, t, points):
    x, y = points[..., 0], points[..., 1]
    return ops.stack([a[:, None] * x - b[:, None] * y, b[:, None] * x + a[:, None] * y], axis=-1) + t[:, None]


def _precision(cov, a, b):
    """The 2x2 precisions of covariances (B, K, 3) carried through M = [[a, -b], [b, a]], as the two
    (B, 2K) factors `_weigh` reads: (xx, yy) of each point and (xy, xy) of each point."""
    xx, xy, yy = cov[..., 0] + COVARIANCE_FLOOR, cov[..., 1], cov[..., 2] + COVARIANCE_FLOOR
    c, s = a[:, None], b[:, None]
    # M C M^T for M = [[c, -s], [s, c]]
    mxx = c * c * xx - 2 * c * s * xy + s * s * yy
    myy = s * s * xx + 2 * c * s * xy + c * c * yy
    mxy = c * s * (xx - yy) + (c * c - s * s) * xy
    k2 = 2 * cov.shape[1]
    det = mxx * myy - mxy * mxy
    diagonal = ops.reshape(ops.stack([myy / det, mxx / det], axis=-1), (-1, k2))
    cross = -mxy / det
    return diagonal, ops.reshape(ops.stack([cross, cross], axis=-1), (-1, k2))


def _weigh(weights, u):
    """The block-diagonal precision (`_precision`'s pair) times flat points u (B, 2K):
    (xx ux + xy uy, xy ux + yy uy) per point, as diagonal x u + cross x (u with x and y swapped)."""
    diagonal, cross = weights
    swapped = ops.reshape(ops.flip(ops.reshape(u, (-1, u.shape[-1] // 2, 2)), axis=-1), (-1, u.shape[-1]))
    return diagonal * u + cross * swapped


@keras.saving.register_keras_serializable(package=PACKAGE)
class ShapePrior(keras.layers.Layer):
    """Pre-softmax maps (B, H, W, K) -> the MAP keypoints (B, K, 2) under a PCA shape model, given each
    point's softmax mean and covariance (`keypoint_moments` at ``temperature``).

    Weights (not trained by gradient): the mean of the Procrustes-aligned training shapes (K, 2), its
    ``num_modes`` principal modes (num_modes, K, 2) and their variances. Each of ``iterations`` rounds
    aligns the observed points to the current shape (a similarity weighted by each point's confidence),
    solves for the mode coefficients that maximise the posterior (``steps`` of conjugate gradient,
    whitened by the mode variances; ``strength`` scales the prior) and maps the shape back.
    """

    def __init__(self, num_keypoints: int, num_modes: int, strength: float = DEFAULT_STRENGTH,
                 temperature: float = DEFAULT_TEMPERATURE, iterations: int = DEFAULT_ITERATIONS,
                 steps: int = DEFAULT_STEPS, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if num_modes < 1 or num_modes > 2 * num_keypoints - 4:
            raise ValueError(f"num_modes must be in 1..{2 * num_keypoints - 4} for {num_keypoints} keypoints, "
                             f"got {num_modes}")
        if not strength > 0 or not temperature > 0:
            raise ValueError(f"strength and temperature must be positive, got {strength} and {temperature}")
        if iterations < 1 or steps < 1:
            raise ValueError(f"iterations and steps must be at least 1, got {iterations} and {steps}")
        self.num_keypoints, self.num_modes = int(num_keypoints), int(num_modes)
        self.strength, self.temperature = float(strength), float(temperature)
        self.iterations, self.steps = int(iterations), int(steps)
        k, m = self.num_keypoints, self.num_modes
        self.mean = self.add_weight(shape=(k, 2), initializer="zeros", trainable=False, name="mean")
        self.modes = self.add_weight(shape=(m, k, 2), initializer="zeros", trainable=False, name="modes")
        self.variances = self.add_weight(shape=(m,), initializer="ones", trainable=False, name="variances")

    @classmethod
    def from_shapes(cls, points, num_modes: int | None = None, **kwargs) -> "ShapePrior":
        """A prior from training keypoints (N, K, 2) (normalised crop coordinates; NaN rows are
        skipped): Procrustes-aligned to their mean, then PCA. ``num_modes``: default the leading
        `DEFAULT_MODES`, capped by all but the 4 similarity directions and by the number of shapes."""
        shapes = np.asarray(points, np.float64)
        shapes = shapes[np.isfinite(shapes).all(axis=(1, 2))]
        if shapes.ndim != 3 or shapes.shape[-1] != 2:
            raise ValueError(f"points must be (N, K, 2), got shape {np.shape(points)}")
        n, k = shapes.shape[:2]
        if n < 3:
            raise ValueError(f"a shape prior needs at least 3 complete training shapes, got {n}")
        modes = num_modes if num_modes is not None else min(DEFAULT_MODES, 2 * k - 4, n - 1)
        mean, basis, variances = procrustes_pca(shapes, modes)
        prior = cls(k, modes, **kwargs)
        prior.set_weights([mean.astype(np.float32), basis.astype(np.float32), variances.astype(np.float32)])
        return prior

    def leading(self, num_modes: int | None = None, iterations: int = DEFAULT_ITERATIONS,
                steps: int = DEFAULT_STEPS) -> "ShapePrior":
        """A copy with the first ``num_modes`` modes (default `DEFAULT_MODES`; at most this prior's): the
        prior `from_shapes` fits with that many, the modes being ordered by variance; and the given
        alignment rounds and conjugate-gradient steps."""
        modes = min(num_modes or DEFAULT_MODES, self.num_modes)
        prior = ShapePrior(self.num_keypoints, modes, strength=self.strength, temperature=self.temperature,
                           iterations=iterations, steps=steps)
        mean, basis, variances = self.get_weights()
        prior.set_weights([mean, basis[:modes], variances[:modes]])
        return prior

    def call(self, logits):
        """Pre-softmax maps (B, H, W, K) -> keypoints (B, K, 2)."""
        return self.fit(*self.moments(logits))

    def moments(self, logits):
        """`keypoint_moments` of ``logits`` at this prior's temperature."""
        return keypoint_moments(logits, self.temperature)

    def fit(self, points, covariance):
        """Observed means (B, K, 2) and covariances (B, K, 3) -> the MAP keypoints (B, K, 2)."""
        points = ops.cast(points, "float32")
        covariance = ops.cast(covariance, "float32")
        m, k2 = self.num_modes, 2 * self.num_keypoints
        psi = ops.reshape(self.modes, (m, k2)) * ops.sqrt(self.variances)[:, None]  # whitened modes
        confidence = 1.0 / (covariance[..., 0] + covariance[..., 2] + 2 * COVARIANCE_FLOOR)
        z = ops.zeros((ops.shape(points)[0], m), "float32")
        shape = ops.broadcast_to(self.mean[None], ops.shape(points))
        for _ in range(self.iterations):
            a, b, t = _similarity(points, shape, confidence)
            observed = _apply(a, b, t, points) - self.mean  # in the frame of the mean shape
            weights = _precision(covariance, a, b)

            def normal(v):  # (Psi W Psi^T + strength I) v, W the points' block-diagonal precision
                back = ops.matmul(_weigh(weights, ops.matmul(v, psi)), ops.transpose(psi))
                return back + v if self.strength == 1.0 else back + self.strength * v

            rhs = ops.matmul(_weigh(weights, ops.reshape(observed, (-1, k2))), ops.transpose(psi))
            z = _conjugate_gradient(normal, rhs, z, self.steps)
            shape = self.mean + ops.reshape(ops.matmul(z, psi), ops.shape(points))
        det = a * a + b * b  # the shape back into the crop by the inverse of the last alignment
        return _apply(a / det, -b / det, ops.zeros_like(t), shape - t[:, None])

    def compute_output_shape(self, logits_shape):
        return (logits_shape[0], logits_shape[-1], 2)

    def get_config(self):
        return {**super().get_config(), "num_keypoints": self.num_keypoints, "num_modes": self.num_modes,
                "strength": self.strength, "temperature": self.temperature, "iterations": self.iterations,
                "steps": self.steps}


def _conjugate_gradient(apply, rhs, x, steps: int):
    """``steps`` of conjugate gradient for apply(x) = rhs, batched over rows, from ``x``."""
    # A converged row has r = 0: its steps become 0 through `where`, not through small constants
    # (a float16 export would round them to 0 and divide 0 by 0).
    r = rhs - apply(x)
    p = r
    rr = ops.sum(r * r, axis=-1, keepdims=True)
    for _ in range(steps):
        ap = apply(p)
        pap = ops.sum(p * ap, axis=-1, keepdims=True)
        moving = pap > 0
        alpha = ops.where(moving, rr / ops.where(moving, pap, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        new = ops.sum(r * r, axis=-1, keepdims=True)
        left = rr > 0
        p = r + ops.where(left, new / ops.where(left, rr, 1.0), 0.0) * p
        rr = new
    return x


def procrustes_pca(shapes: np.ndarray, num_modes: int, rounds: int = 5):
    """Mean (K, 2) of ``shapes`` (N, K, 2) after generalised Procrustes alignment (similarity) and the
    top ``num_modes`` principal modes (num_modes, K, 2) with their variances."""
    mean = shapes.mean(axis=0)
    for _ in range(rounds):
        aligned = np.stack([_align(s, mean) for s in shapes])
        mean = aligned.mean(axis=0)
    flat = aligned.reshape(len(aligned), -1) - mean.reshape(-1)
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    variances = singular[:num_modes] ** 2 / len(flat)
    return mean, vt[:num_modes].reshape(num_modes, *mean.shape), np.maximum(variances, 1e-12)


def _align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` (K, 2) moved by the least-squares similarity onto ``dst``."""
    return fit_similarity(src, dst)(src)
