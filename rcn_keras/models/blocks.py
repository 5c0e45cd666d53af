"""Pieces shared by the SumNet and RCN builders: the layer tables, conv factory, trunk and upsampling.

The tables transcribe docs/model.md 3.1, 3.2, 4.1 and 4.2; each entry is (filters, kernel size).
"""

from __future__ import annotations

import keras

from rcn_keras.models.config import INPUT_SIZE, LEVEL_SIZES, ModelConfig
from rcn_keras.models.layers import (LCN_SIGMA, LCN_TAPS, LearnedUpsampling, LocalContrastNormalization, MaxOnly,
                                    RCNUniform)

# Encoder (trunk) output channels per level F..O; Sh7 (level O) is a 1x1 conv, the rest 3x3.
ENCODER_CHANNELS = {"mtfl": (16, 32, 48, 48, 48, 48, 48), "300w": (64,) * 7,
                    "fast": (8, 16, 48, 64, 96, 96, 96)}
# The 160x160 level H of a 160 input: one 3x3 trunk conv (as many channels as F's), max-pooled into F.
FINER_CHANNELS = {"mtfl": 16, "300w": 64, "fast": 8}

# RCN decoder convs per level (before the output conv at F). "D_top" is D when it is the
# coarsest level (4 branches): two convs, like S in the 5-branch net (docs/model.md 4.3).
RCN_DECODER = {
    "mtfl": {"F": [(16, 3)], "M": [(32, 3), (16, 3)], "C": [(48, 3), (32, 3)], "D": [(48, 3)],
             "D_top": [(48, 3), (48, 3)], "S": [(48, 3), (48, 3)], "T": [(48, 3), (48, 3)],
             "O": [(48, 1), (48, 1)]},
    "300w": {"F": [(64, 5), (64, 1), (64, 1)], "M": [(64, 5), (64, 1)], "C": [(64, 5), (64, 1)],
             "D": [(64, 5)], "D_top": [(64, 5), (64, 1)], "S": [(64, 5), (64, 1)],
             "T": [(64, 5), (64, 1)], "O": [(64, 1), (64, 1)]},
    # Spend the FLOPs where a CPU has them: few channels at the fine levels (which cost 4x per level),
    # depthwise-separable 3x3 / 5x5 convs, the wide receptive field from the coarse levels.
    "fast": {"F": [(16, 3)], "M": [(32, 3), (32, 3)], "C": [(48, 5), (48, 5)], "D": [(64, 5), (64, 5)],
             "D_top": [(64, 5), (64, 5)], "S": [(96, 5), (96, 5)], "T": [(96, 3), (96, 3)],
             "O": [(96, 1), (96, 1)]},
}
RCN_OUTPUT_KERNEL = {"mtfl": 3, "300w": 1, "fast": 1}
EXTRA_FINE = {"mtfl": [(16, 3), (16, 3)], "300w": [(64, 1), (64, 1)], "fast": [(16, 3), (16, 3)]}
# Layouts whose k x k convs (k > 1) are depthwise-separable (a k x k depthwise conv, then a 1x1 conv)
# with batch normalisation before each ReLU (thin separable stacks train slowly without it; at export
# it folds into the conv weights).
SEPARABLE_LAYOUTS = ("fast",)


def pool_of(name: str) -> tuple[int, int]:
    """(pool size, stride) of the max pool that leaves level ``name`` for the next coarser one."""
    return (3, 2) if name == "S" else (2, 2)


def up_of(name: str) -> tuple[int, int]:
    """(factor, rows cropped at the end) of the upsampling from the level coarser than ``name`` to it."""
    return (3, 1) if name == "S" else (2, 0)


class GraphBuilder:
    """Creates the layers of one network in order, with the initializer seeds of docs/model.md 2 and L2 groups."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self._seed = config.seed

    def next_seed(self) -> int:
        self._seed += 1
        return self._seed

    def conv(self, x, filters: int, kernel: int, name: str, group: str, relu: bool = True,
             float32: bool = False):
        """Conv 'same' + bias (+ ReLU), L2 by group ("encoder" / "decoder"), optional Gaussian noise."""
        l2 = self.config.l2_encoder if group == "encoder" else self.config.l2_decoder
        if not float32:  # hidden convs scale with width; the K-map output convs do not
            filters = max(1, int(round(filters * self.config.width)))
        fast = self.config.layout in SEPARABLE_LAYOUTS
        norm = fast and relu and not float32
        common = dict(padding="same", activation="relu" if relu and not norm else None, name=name,
                      bias_initializer="zeros", dtype="float32" if float32 else None)
        regulariser = keras.regularizers.L2(l2) if l2 > 0 else None
        if kernel > 1 and fast and x.shape[-1] > 1:
            x = keras.layers.SeparableConv2D(
                filters, kernel, depthwise_initializer=RCNUniform(seed=self.next_seed(), depthwise=True),
                pointwise_initializer=RCNUniform(seed=self.next_seed()), depthwise_regularizer=regulariser,
                pointwise_regularizer=regulariser, use_bias=not norm, **common)(x)
        else:
            x = keras.layers.Conv2D(filters, kernel, kernel_initializer=RCNUniform(seed=self.next_seed()),
                                    kernel_regularizer=regulariser, use_bias=not norm, **common)(x)
        if norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
            x = keras.layers.ReLU(name=f"{name}_relu")(x)
        return self.noise(x, name)

    def noise(self, x, name: str):
        """The authors' "dropout": multiplicative N(1, 1) noise at training time (off by default)."""
        if self.config.dropout:
            x = keras.layers.GaussianDropout(0.5, seed=self.next_seed(), name=f"{name}_noise")(x)
        return x

    def inputs(self):
        """Raw grey input (80x80x1, or 160x160x1) and the normalised 80x80 image (LCN inside the graph,
        docs/model.md 1.6); a 160 input also gives its own normalised version (LCN at twice the scale,
        so both see the same part of the face), else None."""
        size = self.config.input_size
        image = keras.Input((size, size, 1), name="image")
        lcn = self.config.lcn
        fine = None
        if size != INPUT_SIZE:
            factor = size // INPUT_SIZE
            fine = LocalContrastNormalization(self.config.lcn_floor, kernel_size=factor * (LCN_TAPS - 1) + 1,
                                              sigma=LCN_SIGMA * factor, name="lcn_h")(image) if lcn else image
            image80 = keras.layers.AveragePooling2D(factor, name="image_f")(image)
        else:
            image80 = image
        x = LocalContrastNormalization(self.config.lcn_floor, name="lcn")(image80) if lcn else image80
        return image, x, fine

    def trunk(self, x, top: int, fine=None) -> list:
        """Encoder Sh1..Sh(top+1): returns the trunk output at each level 0..top. With ``fine`` (the
        normalised 160 image) level 0 is H: its conv ``sh0``, max-pooled, joins ``x`` as F's input."""
        channels = ENCODER_CHANNELS[self.config.layout]
        names = self.config.levels
        first = 0
        feats = []
        if fine is not None:
            h = self.conv(fine, FINER_CHANNELS[self.config.layout], 3, "sh0", "encoder")
            feats.append(h)
            h = self.noise(keras.layers.MaxPool2D(2, 2, padding="valid", name="pool0")(h), "pool0")
            x = keras.layers.Concatenate(name="concat_h")([x, h])
            first = 1
        for level in range(first, top + 1):
            step = level - first  # the 80x80 network's own level index (F = 0)
            if step > 0:
                size, stride = pool_of(names[level - 1])
                x = keras.layers.MaxPool2D(size, stride, padding="valid", name=f"pool{step}")(x)
                x = self.noise(x, f"pool{step}")
            kernel = 1 if names[level] == "O" else 3
            x = self.conv(x, channels[step], kernel, f"sh{step + 1}", "encoder")
            feats.append(x)
        return feats

    def upsample(self, x, level: int, name: str):
        """Upsample from ``level + 1`` to ``level``: nearest repetition or learned shared kernel."""
        factor, crop = up_of(self.config.levels[level])
        if self.config.upsampling == "learned":
            return LearnedUpsampling(factor, crop, seed=self.next_seed(), name=name)(x)
        x = keras.layers.UpSampling2D(factor, interpolation="nearest", name=name)(x)
        if crop:
            x = keras.layers.Cropping2D(((0, crop), (0, crop)), name=f"{name}_crop")(x)
        return x

    def max_only(self, x, level: int):
        """The ``zero_non_pooled`` copy of a trunk tensor: only each pool window's maxima survive."""
        name = self.config.levels[level]
        size, stride = pool_of(name)
        return MaxOnly(size, stride, name=f"max_only_{name.lower()}")(x)


def upsample_to_input(x, level: int, name: str):
    """Nearest upsampling of a level-``level`` map straight to 80x80 (SumNet branches, docs/model.md 3.1)."""
    factor = INPUT_SIZE // LEVEL_SIZES[level]
    if factor == 1:
        return x
    return keras.layers.UpSampling2D(factor, interpolation="nearest", name=name, dtype="float32")(x)
