"""Custom Keras layers and the initializer of the RCN / SumNet networks (docs/model.md 1.6, 2, 3.3, 4.5).

Every class here is registered for `.keras` serialisation under the package name "rcn_keras".
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

PACKAGE = "rcn_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RCNUniform(keras.initializers.Initializer):
    """U(-b, b) with b = sqrt(6 / (fan_in + fan_out / 4)), fan = channels * k^2 (docs/model.md 2).

    The /4 comes from an unused default pool size in the authors' code; we keep it to match their init.
    ``depthwise=True`` for a depthwise kernel (kh, kw, channels, 1), where each output sees one channel:
    fan_in = fan_out = kh * kw (the conv formula would shrink the weights by sqrt(channels)).
    """

    def __init__(self, seed: int | None = None, depthwise: bool = False):
        self.seed = seed
        self.depthwise = bool(depthwise)

    def __call__(self, shape, dtype=None):
        if len(shape) == 4 and self.depthwise:
            fan_in = fan_out = shape[0] * shape[1]
        elif len(shape) == 4:
            kh, kw, cin, cout = shape
            fan_in, fan_out = cin * kh * kw, cout * kh * kw
        elif len(shape) == 2:
            fan_in, fan_out = shape
        else:
            raise ValueError(f"RCNUniform expects a conv (4-D) or dense (2-D) kernel shape, got {shape}")
        limit = math.sqrt(6.0 / (fan_in + fan_out / 4.0))
        return keras.random.uniform(shape, -limit, limit, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"seed": self.seed, "depthwise": self.depthwise}


LCN_TAPS = 9  # the paper's LCN Gaussian: 9 taps, sigma 1.591 (docs/model.md 1.6)
LCN_SIGMA = 1.591


def _gaussian_kernel(size: int = LCN_TAPS, sigma: float = LCN_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian (size taps) centred on the middle tap. The LCN's 2-D Gaussian
    (docs/model.md 1.6) is its outer product with itself: separable, so the blur runs as two 1-D convs
    (18 instead of 81 multiply-adds per pixel, the same result)."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r**2) / (2.0 * sigma**2))
    return (g / g.sum()).astype("float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalContrastNormalization(keras.layers.Layer):
    """Local contrast normalisation, the first op of every RCN/SumNet graph (docs/model.md 1.6).

    out = (v / max(std, floor) + 2.5) / 5 with v = x - G*x and std = sqrt(G*v^2), G a 9x9 Gaussian
    (sigma 1.591) with zero padding. ``floor_mode="image"`` uses each image's mean local std (batch
    independent, the default); ``"batch"`` uses one mean over the whole batch, as the authors' code.
    Always computed in float32 (pixel values squared overflow float16).
    """

    FLOOR_MODES = ("image", "batch")

    def __init__(self, floor_mode: str = "image", kernel_size: int = LCN_TAPS, sigma: float = LCN_SIGMA, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if floor_mode not in self.FLOOR_MODES:
            raise ValueError(f"lcn floor_mode must be one of {self.FLOOR_MODES}, got {floor_mode!r}")
        self.floor_mode = floor_mode
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)
        g = _gaussian_kernel(self.kernel_size, self.sigma)
        self._rows, self._cols = g[:, None, None, None], g[None, :, None, None]

    def _blur(self, x):
        x = ops.conv(x, ops.convert_to_tensor(self._rows), strides=1, padding="same")
        return ops.conv(x, ops.convert_to_tensor(self._cols), strides=1, padding="same")

    def call(self, x):
        x = ops.cast(x, "float32")
        v = x - self._blur(x)
        # "+ eps" rather than a maximum with a scalar: TFLite's XNNPack cannot prepare the latter.
        std = ops.sqrt(self._blur(ops.square(v)) + 1e-12)
        axes = (0, 1, 2, 3) if self.floor_mode == "batch" else (1, 2, 3)
        floor = ops.mean(std, axis=axes, keepdims=True) + 1e-6
        return (v / ops.maximum(std, floor) + 2.5) / 5.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "floor_mode": self.floor_mode,
                "kernel_size": self.kernel_size, "sigma": self.sigma}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LearnedUpsampling(keras.layers.Layer):
    """Transposed conv with one k x k kernel shared by all channels (docs/model.md 4.5 ``learn_upsampling``).

    k = 2r - 1, stride r, symmetric padding r - 1, no bias; output pixel r*i is centred on input i.
    Not L2-regularised. ``crop_last`` drops that many trailing rows/columns (the 2 -> 5 step).
    """

    def __init__(self, factor: int, crop_last: int = 0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.crop_last = int(crop_last)
        self.seed = seed
        self.kernel_size = 2 * self.factor - 1

    def build(self, input_shape):
        k = self.kernel_size
        limit = math.sqrt(6.0 / (2.0 * k * k))
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, 1, 1),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed))

    def call(self, x):
        r = self.factor
        shape = ops.shape(x)
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        y = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, h, w, 1))
        y = ops.conv_transpose(y, ops.cast(self.kernel, y.dtype), strides=r, padding="valid")
        y = y[:, r - 1: r - 1 + h * r - self.crop_last, r - 1: r - 1 + w * r - self.crop_last, :]
        y = ops.reshape(y, (shape[0], c, h * r - self.crop_last, w * r - self.crop_last))
        return ops.transpose(y, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, h * self.factor - self.crop_last, w * self.factor - self.crop_last, c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "crop_last": self.crop_last, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaxOnly(keras.layers.Layer):
    """Keeps only the maxima of each pooling window, zeroing the rest (docs/model.md 4.5 ``zero_non_pooled``).

    Ties keep every maximal element. Uses the level's true pool window, including the overlapping
    3x3/2 pool of the 5 -> 2 step (where an element is kept if it is the max of any window holding it).
    """

    def __init__(self, pool_size: int = 2, strides: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.strides = int(strides or pool_size)

    def call(self, x):
        k, s = self.pool_size, self.strides
        h, w = x.shape[1], x.shape[2]
        pooled = ops.max_pool(x, pool_size=k, strides=s, padding="valid")
        oh, ow = pooled.shape[1], pooled.shape[2]
        if k == s:
            up = ops.repeat(ops.repeat(pooled, k, axis=1), k, axis=2)
            ph, pw = h - oh * k, w - ow * k
            # Rows/columns beyond the last full window are never pooled: they are dropped (zeroed).
            up = ops.pad(up, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=float("inf"))
            return x * ops.cast(ops.equal(x, up), x.dtype)
        keep = ops.zeros_like(x)
        for i in range(oh):
            for j in range(ow):
                window_max = pooled[:, i: i + 1, j: j + 1, :]
                hit = ops.cast(ops.equal(x[:, i * s: i * s + k, j * s: j * s + k, :], window_max), x.dtype)
                keep = ops.maximum(keep, ops.pad(
                    hit, ((0, 0), (i * s, h - i * s - k), (j * s, w - j * s - k), (0, 0))))
        return x * keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BranchSum(keras.layers.Layer):
    """SumNet combination: out[..., k] = sum_r W[r, k] * branch_r[..., k] (docs/model.md 3.3).

    ``weight_per_pixel`` gives W the shape (R, H, W, K) instead of (R, K). W ~ U[0, 1) at init.
    """

    def __init__(self, weight_per_pixel: bool = False, l2: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.weight_per_pixel = bool(weight_per_pixel)
        self.l2 = float(l2)
        self.seed = seed

    def build(self, input_shape):
        n = len(input_shape)
        _, h, w, k = input_shape[0]
        shape = (n, h, w, k) if self.weight_per_pixel else (n, k)
        self.branch_weights = self.add_weight(
            name="branch_weights", shape=shape,
            initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=self.seed),
            regularizer=keras.regularizers.L2(self.l2) if self.l2 > 0 else None)

    def call(self, branches):
        stacked = ops.stack(branches, axis=0)
        w = ops.cast(self.branch_weights, stacked.dtype)
        if not self.weight_per_pixel:
            w = w[:, None, None, None, :]
        else:
            w = w[:, None]
        return ops.sum(stacked * w, axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weight_per_pixel": self.weight_per_pixel,
                "l2": self.l2, "seed": self.seed}
