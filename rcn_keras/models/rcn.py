"""Recombinator Networks (docs/model.md 4): coarse-to-fine decoder that concatenates upsampled
coarse features with each finer level's trunk features; the "skip" variant concatenates the
outputs of **all** coarser levels (dense, cumulative concatenation, docs/model.md 4.4).
"""

from __future__ import annotations

import keras

from rcn_keras.models.blocks import EXTRA_FINE, RCN_DECODER, RCN_OUTPUT_KERNEL, GraphBuilder
from rcn_keras.grid import MAP_SIZE
from rcn_keras.models.config import ModelConfig


def build_rcn(config: ModelConfig) -> keras.Model:
    """RCN as a functional model: raw grey (B, 80, 80, 1) -> pre-softmax maps (B, 80, 80, K).

    Branch mask (our interpretation, docs/model.md 4.6): a 0 at level r drops the trunk (lateral) features
    concatenated there; the decoder still runs on the upsampled coarser tensor alone. Levels coarser
    than the coarsest active branch are not built. With ``output_level=1`` the decoder stops at M and
    its K logit maps are upsampled bilinearly to 80x80 (the F branch is not built), or with
    ``upsample_maps=False`` emitted at 40x40. A 160x160 input (``input_size``) adds the level H in
    front of the trunk; its decoder ends at F (``output_level=1``).
    """
    g = GraphBuilder(config)
    table = RCN_DECODER[config.layout]
    mask, top = config.mask, config.top_level
    names = config.levels
    image, x, fine = g.inputs()
    feats = g.trunk(x, top, fine)

    stream = None  # what the next finer level upsamples
    out_level = config.output_level
    for level in range(top, out_level - 1, -1):
        name = names[level].lower()
        lateral = feats[level]
        if config.zero_non_pooled and level < top:
            lateral = g.max_only(lateral, level)
        if level == top:
            x = lateral
        else:
            up = g.upsample(stream, level, name=f"up_{name}")
            x = keras.layers.Concatenate(name=f"concat_{name}")([lateral, up]) if mask[level] else up
        key = "D_top" if names[level] == "D" and level == top else names[level]
        convs = table[key] + (EXTRA_FINE[config.layout] if level == out_level and config.extra_fine else [])
        for i, (filters, kernel) in enumerate(convs, start=1):
            x = g.conv(x, filters, kernel, f"{name}{i}", "decoder")
        if level == out_level:
            x = g.conv(x, config.num_keypoints, RCN_OUTPUT_KERNEL[config.layout], "fout", "decoder",
                       relu=False, float32=True)
            factor = MAP_SIZE // config.level_sizes[level]
            if factor > 1 and config.upsample_maps:
                x = keras.layers.UpSampling2D(factor, interpolation="bilinear", dtype="float32",
                                              name="fout_up")(x)
        elif config.skip and level < top:
            x = keras.layers.Concatenate(name=f"stream_{name}")([x, up])
        stream = x
    return keras.Model(image, keras.layers.Identity(name="presoftmax", dtype="float32")(stream),
                       name=config.name or "rcn")
