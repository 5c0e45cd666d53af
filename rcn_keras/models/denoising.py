"""Denoising keypoint model and the joint RCN + denoiser model (docs/model.md 8).

The denoiser sees only keypoint configurations: one one-hot 80x80 map per keypoint in, per-keypoint
pre-softmax maps out. The paper's net (3 convs 45x45, 64 filters, at 80x80; ~163 GMAC per image) is
GPU-only; the CPU preset keeps a similar receptive field by working on coarser maps (see
the presets `denoiser_300w` and `denoiser_300w_cpu`). The joint model adds RCN's logits and the denoiser's logits on RCN's arg-max
one-hot maps, so its softmax is the renormalised product of the two distributions.
"""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.grid import MAP_SIZE, flatten_maps, pixel_argmax
from rcn_keras.models.config import DenoiserConfig
from rcn_keras.models.head import as_map_model
from rcn_keras.models.layers import PACKAGE, RCNUniform
from rcn_keras.presets import get_preset


def build_denoiser(config: DenoiserConfig | str = "denoiser_300w", **overrides) -> keras.Model:
    """Denoiser: one-hot keypoint maps (B, 80, 80, K) -> pre-softmax maps (B, 80, 80, K)."""
    if isinstance(config, str):
        preset = get_preset(config)
        if not isinstance(preset.model, DenoiserConfig):
            raise ValueError(f"preset {config!r} is not a denoiser (it builds a {preset.model.family} network)")
        config = preset.model.replace(name=config)
    config = config.replace(**overrides)
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
        h, w, k = logits.shape[1], logits.shape[2], logits.shape[3]
        onehot = ops.one_hot(pixel_argmax(flatten_maps(logits)), h * w, dtype=self.compute_dtype)  # (B, K, HW)
        return ops.stop_gradient(ops.transpose(ops.reshape(onehot, (-1, k, h, w)), (0, 2, 3, 1)))

    def compute_output_shape(self, input_shape):
        return input_shape


def build_joint_model(rcn: keras.Model, denoiser: keras.Model, name: str = "joint") -> keras.Model:
    """Joint inference (docs/model.md 8): image -> RCN logits z, h = one_hot(argmax z), output z + denoiser(h).

    The result is a map model like the others (save, export, evaluate, `with_readout`).
    """
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
