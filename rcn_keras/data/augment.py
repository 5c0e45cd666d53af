"""Stage C of the preprocessing (docs/model.md 1.4-1.8) as TensorFlow ops for the tf.data map: the jittered
affine warp of the 160 crop to 80x80 (or a larger network's input; keypoints moved by the same matrix), one black occlusion
rectangle, label masks, and the optional horizontal flip with the keypoint permutation.

All randomness is stateless, from a per-sample seed, so a pipeline is reproducible for a given seed.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from rcn_keras.grid import MAP_SIZE as OUT_SIZE
from rcn_keras.keypoints import GROUP_MEAN


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Jitter and occlusion of docs/model.md 1.4-1.5. Defaults: scale [0.9, 1.1], translation +-10 % of the box
    side, integer rotation in [-20, 20] degrees (MTFL README; 40 is the 300W README default),
    one black 20-50 px rectangle per image, no flip.

    Photometric jitter (off by default, not in the paper; for real photos), applied to the 80x80 crop
    before occlusion: ``gamma`` = half-width of log-gamma (intensity^gamma, gamma in [e^-g, e^g]),
    ``contrast`` = half-width of a contrast factor around the crop mean, ``blur`` = probability of a
    Gaussian blur (sigma uniform in [0.5, 1.5] px), ``noise`` = maximum standard deviation of additive
    Gaussian noise in grey levels (0-255).
    """

    scale: float = 0.1
    translate: float = 0.1
    rotation: int = 20
    occlusion: bool = True
    occlusion_min: int = 20
    occlusion_max: int = 50
    flip: bool = False
    gamma: float = 0.0
    contrast: float = 0.0
    blur: float = 0.0
    noise: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), bool if f.type in ("bool", bool) else (int, float)
            wrong_bool = kind != bool and isinstance(value, bool)
            if wrong_bool or not isinstance(value, kind) or (kind != bool and not math.isfinite(value)):
                raise ValueError(f"augment.{f.name}={value!r} must be "
                                 f"{'true or false' if kind == bool else 'a finite number'}")
        if int(self.rotation) != self.rotation:
            raise ValueError(f"rotation={self.rotation} must be a whole number of degrees")
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale={self.scale} must be in [0, 1) (half-width of the scale range)")
        if not 0 <= self.translate < 1:
            raise ValueError(f"translate={self.translate} must be in [0, 1) (fraction of the box side)")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation={self.rotation} must be an integer number of degrees in [0, 180]")
        if not 1 <= self.occlusion_min <= self.occlusion_max <= OUT_SIZE:
            raise ValueError(f"occlusion sizes must satisfy 1 <= min <= max <= {OUT_SIZE}, got "
                             f"{self.occlusion_min}, {self.occlusion_max}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma={self.gamma} must be in [0, 1] (half-width of log-gamma)")
        if not 0 <= self.contrast < 1:
            raise ValueError(f"contrast={self.contrast} must be in [0, 1) (half-width of the contrast factor)")
        if not 0 <= self.blur <= 1:
            raise ValueError(f"blur={self.blur} must be a probability in [0, 1]")
        if not 0 <= self.noise <= 64:
            raise ValueError(f"noise={self.noise} must be in [0, 64] (grey levels)")

    @property
    def photometric(self) -> bool:
        """Whether any photometric jitter is on."""
        return bool(self.gamma or self.contrast or self.blur or self.noise)


def draw_jitter(seed, config: AugmentConfig):
    """(scale, tx, ty, theta_deg) from a stateless seed; tx, ty are fractions of the box side."""
    u = tf.random.stateless_uniform([3], seed, -1.0, 1.0)
    rot = tf.random.stateless_uniform([], seed + 1, -config.rotation, config.rotation + 1, dtype=tf.int32)
    return 1.0 + config.scale * u[0], config.translate * u[1], config.translate * u[2], tf.cast(rot, tf.float32)


def warp_params(rect, scale, tx, ty, theta_deg, out_size: int = OUT_SIZE):
    """The similarity that maps the jittered box onto [0, out]^2 (docs/model.md 1.4 steps 1-4), in edge coords.

    Returns (tl, k, cos, sin): dst = k * R(-theta) (p - tl).
    """
    x0, y0, s = rect[0], rect[1], rect[2]
    theta = theta_deg * (math.pi / 180.0)
    c, sn = tf.cos(theta), tf.sin(theta)
    cx, cy = x0 + tx * s + s / 2.0, y0 + ty * s + s / 2.0
    h = -scale * s / 2.0  # top-left corner relative to the centre, after scaling
    tl = tf.stack([cx + c * h - sn * h, cy + sn * h + c * h])
    return tl, out_size / (s * scale), c, sn


def warp_points(points, tl, k, c, sn):
    """Move (K, 2) edge-coordinate points with the warp: dst = k R(-theta)(p - tl)."""
    d = points - tl
    return k * tf.stack([c * d[:, 0] + sn * d[:, 1], -sn * d[:, 0] + c * d[:, 1]], axis=-1)


def warp_image(image, tl, k, c, sn, out_size: int = OUT_SIZE):
    """Bilinear warp of an (H, W) image to (out, out, 1), zero outside (cv2.warpAffine's defaults).

    The projective op maps output pixel centres to input pixel centres (integers = centres).
    """
    inv = 1.0 / k
    a2 = tl[0] - 0.5 + 0.5 * inv * (c - sn)
    b2 = tl[1] - 0.5 + 0.5 * inv * (sn + c)
    transform = tf.stack([c * inv, -sn * inv, a2, sn * inv, c * inv, b2, 0.0, 0.0])[None]
    img = tf.cast(image, tf.float32)[None, :, :, None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=img, transforms=transform, output_shape=[out_size, out_size], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    return out[0]


def _gaussian_blur(image, sigma, radius: int = 2):
    """Separable (2 radius + 1)-tap Gaussian blur of an (H, W, 1) image (edges padded by reflection)."""
    taps = tf.range(-float(radius), radius + 1.0)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    width = 2 * radius + 1
    x = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    x = tf.nn.conv2d(x, tf.reshape(kernel, [width, 1, 1, 1]), 1, "VALID")
    x = tf.nn.conv2d(x, tf.reshape(kernel, [1, width, 1, 1]), 1, "VALID")
    return x[0]


def photometric(image, seed, config: AugmentConfig, zoom: float = 1.0):
    """Gamma, contrast, blur and noise jitter of a raw-intensity (0-255) crop, from a stateless seed;
    ``zoom``: the crop's side over 80 (the blur's sigma is in 80x80 pixels)."""
    u = tf.random.stateless_uniform([4], seed, -1.0, 1.0)
    x = image
    if config.gamma:
        x = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 0.0, 1.0), tf.exp(config.gamma * u[0]))
    if config.contrast:
        mean = tf.reduce_mean(x)
        x = mean + (x - mean) * (1.0 + config.contrast * u[1])
    if config.blur:
        sigma = zoom * (1.0 + 0.5 * u[2])
        do_blur = tf.random.stateless_uniform([], seed + 1) < config.blur
        x = tf.cond(do_blur, lambda: _gaussian_blur(x, sigma, round(2 * zoom)), lambda: x)
    if config.noise:
        std = config.noise * 0.5 * (u[3] + 1.0)
        x = x + std * tf.random.stateless_normal(tf.shape(x), seed + 2)
    return tf.clip_by_value(x, 0.0, 255.0)


def occlude(image, seed, config: AugmentConfig, zoom: float = 1.0):
    """Paint exactly one black rectangle, sides uniform integers in [min, max], fully inside (docs/model.md 1.5);
    ``zoom``: the crop's side over 80 (the sizes are in 80x80 pixels)."""
    size = image.shape[0]
    low, high = round(config.occlusion_min * zoom), round(config.occlusion_max * zoom)
    hw = tf.random.stateless_uniform([2], seed, low, high + 1, dtype=tf.int32)
    u = tf.random.stateless_uniform([2], seed + 7, 0.0, 1.0)
    top = tf.cast(tf.floor(u[0] * tf.cast(size - hw[0] + 1, tf.float32)), tf.int32)
    left = tf.cast(tf.floor(u[1] * tf.cast(size - hw[1] + 1, tf.float32)), tf.int32)
    r = tf.range(size)
    rows = (r >= top) & (r < top + hw[0])
    cols = (r >= left) & (r < left + hw[1])
    block = tf.cast(rows[:, None] & cols[None, :], image.dtype)[:, :, None]
    return image * (1.0 - block)


def label_mask(points_norm, border_codes, mask_outside: bool):
    """1 for keypoints that train: border code 0, and (if ``mask_outside``) inside [0, 1) (docs/model.md 1.7);
    -1 for those that train only through their group's mean (`GROUP_MEAN`, same rule); else 0."""
    own, group = tf.equal(border_codes, 0), tf.equal(border_codes, GROUP_MEAN)
    if mask_outside:
        inside = tf.reduce_all((points_norm >= 0.0) & (points_norm < 1.0), axis=-1)
        own, group = own & inside, group & inside
    return tf.cast(own, tf.float32) - tf.cast(group, tf.float32)


def flip_sample(image, points_norm, mask, perm):
    """Mirror an 80x80 sample: image columns reversed, x -> 1 - x, keypoints permuted."""
    perm = tf.constant(perm, tf.int32)
    image = tf.reverse(image, axis=[1])
    points = tf.gather(points_norm, perm)
    points = tf.stack([1.0 - points[:, 0], points[:, 1]], axis=-1)
    return image, points, tf.gather(mask, perm)

