"""Denoising keypoint model and the joint RCN + denoiser model (spec section 8).

The denoiser sees only keypoint configurations: one one-hot 80x80 map per keypoint in, per-keypoint
pre-softmax maps out. The paper's net (3 convs 45x45, 64 filters, at 80x80; ~163 GMAC per image) is
GPU-only; the CPU preset keeps a similar receptive field by working on coarser maps (see
`DENOISER_PRESETS`). The joint model adds RCN's logits and the denoiser's logits on RCN's arg-max
one-hot maps, so its softmax is the renormalised product of the two distributions.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from rcn_keras.models.layers import PACKAGE, RCNUniform

MAP_SIZE = 80


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
    """``map_size`` is the resolution the convs work at (80 = the paper; 40 or 20 sum-pool the one-hot
    input and upsample the output logits by nearest repetition). ``kernel_size`` is the conv size."""

    num_keypoints: int = 68
    kernel_size: int = 45
    filters: int = 64
    convs: int = 3
    map_size: int = MAP_SIZE
    l2: float = 1e-6
    seed: int = 54621
    name: str = ""

    def __post_init__(self):
        if self.map_size not in (80, 40, 20, 16, 10):
            raise ValueError(f"map_size={self.map_size} is not allowed; allowed: 80, 40, 20, 16, 10 (divisors of 80)")
        for arg in ("num_keypoints", "kernel_size", "filters", "convs"):
            if not isinstance(getattr(self, arg), int) or getattr(self, arg) < 1:
                raise ValueError(f"{arg}={getattr(self, arg)!r} must be a positive integer")

    @property
    def receptive_field(self) -> int:
        """Receptive field of the conv stack in 80x80 pixels."""
        return (self.convs * (self.kernel_size - 1) + 1) * (MAP_SIZE // self.map_size)


DENOISER_PRESETS = {
    # The paper / authors' code: 25,406,212 parameters, receptive field 133 px, ~163 GMAC per image.
    "denoiser_300w": DenoiserConfig(),
    # CPU-trainable: the same 3-conv design on 20x20 maps (4x4 sum-pooled one-hots) with 11x11 kernels:
    # receptive field 124 px (vs 133), ~0.6 GMAC per image (~270x less); output logits are 4x4 blocks.
    "denoiser_300w_cpu": DenoiserConfig(kernel_size=11, map_size=20),
}


def build_denoiser(config: DenoiserConfig | str = "denoiser_300w", **overrides) -> keras.Model:
    """Denoiser: one-hot keypoint maps (B, 80, 80, K) -> pre-softmax maps (B, 80, 80, K)."""
    if isinstance(config, str):
        if config not in DENOISER_PRESETS:
            raise ValueError(f"unknown denoiser {config!r}; available: {sorted(DENOISER_PRESETS)}")
        config = dataclasses.replace(DENOISER_PRESETS[config], name=config)
    config = dataclasses.replace(config, **overrides)
    k, factor = config.num_keypoints, MAP_SIZE // config.map_size
    maps = keras.Input((MAP_SIZE, MAP_SIZE, k), name="keypoint_maps")
    x = maps
    if factor > 1:  # sum-pool: a one-hot stays a unit mass at the coarser cell that holds it
        x = keras.layers.AveragePooling2D(factor, name="sum_pool")(x)
        x = keras.layers.Rescaling(float(factor * factor), name="to_sum")(x)
    seed = config.seed
    reg = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    for i in range(config.convs):
        seed += 1
        x = keras.layers.Conv2D(config.filters, config.kernel_size, padding="same", activation="relu",
                                kernel_initializer=RCNUniform(seed), kernel_regularizer=reg,
                                name=f"dn_conv{i + 1}")(x)
    x = keras.layers.Conv2D(k, 1, kernel_initializer=RCNUniform(seed + 1), kernel_regularizer=reg,
                            dtype="float32", name="dn_out")(x)
    if factor > 1:
        x = keras.layers.UpSampling2D(factor, name="dn_up", dtype="float32")(x)
    model = keras.Model(maps, keras.layers.Identity(name="presoftmax", dtype="float32")(x),
                        name=config.name or "denoiser")
    model.denoiser_config = config
    return model


@keras.saving.register_keras_serializable(package=PACKAGE)
class ArgmaxOneHot(keras.layers.Layer):
    """Pre-softmax maps (B, H, W, K) -> one-hot maps of each keypoint's arg-max pixel (no gradient)."""

    def call(self, logits):
        from rcn_keras.models.head import flatten_maps, pixel_argmax

        h, w, k = logits.shape[1], logits.shape[2], logits.shape[3]
        onehot = ops.one_hot(pixel_argmax(flatten_maps(logits)), h * w, dtype=self.compute_dtype)  # (B, K, HW)
        return ops.stop_gradient(ops.transpose(ops.reshape(onehot, (-1, k, h, w)), (0, 2, 3, 1)))

    def compute_output_shape(self, input_shape):
        return input_shape


def build_joint_model(rcn: keras.Model, denoiser: keras.Model, name: str = "joint") -> keras.Model:
    """Joint inference (spec 8): image -> RCN logits z, h = one_hot(argmax z), output z + denoiser(h).

    The result is a map model like the others (save, export, evaluate, `with_readout`).
    """
    from rcn_keras.predict import as_map_model

    rcn, denoiser = as_map_model(rcn), denoiser
    r_shape, d_in, d_out = tuple(rcn.output.shape[1:]), tuple(denoiser.input.shape[1:]), tuple(denoiser.output.shape[1:])
    if d_in != d_out:
        raise ValueError(f"denoiser maps {d_in} in but {d_out} out: not a denoiser")
    if r_shape != d_in:
        raise ValueError(f"RCN predicts maps of shape {r_shape} but the denoiser takes {d_in}: the keypoint "
                         f"counts and map sizes must match")
    image = keras.Input(tuple(rcn.input.shape[1:]), name="image")
    z = rcn(image)
    z_dn = denoiser(ArgmaxOneHot(name="argmax_one_hot")(z))
    out = keras.layers.Add(name="presoftmax", dtype="float32")([z, z_dn])
    return keras.Model(image, out, name=name)
