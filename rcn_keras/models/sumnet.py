"""SumNet baseline (docs/model.md 3): one branch per trunk level, each producing K maps that are
upsampled to 80x80 and summed with learned per-branch, per-keypoint weights.
"""

from __future__ import annotations

import keras

from rcn_keras.models.blocks import GraphBuilder, upsample_to_input
from rcn_keras.models.config import LEVELS, ModelConfig
from rcn_keras.models.layers import BranchSum

# Branch convs before the linear output conv, per layout; (filters, kernel, relu).
# SumNet_300W's F branch has 4 convs with F2 linear: a quirk of the authors' code we keep (docs/model.md 3.2).
_BRANCH_300W_F = [(64, 3, True), (64, 3, False), (64, 3, True)]


def _branch_convs(config: ModelConfig, level: int) -> list[tuple[int, int, bool]]:
    kernel = 1 if LEVELS[level] == "O" else 3
    if config.layout == "300w":
        return _BRANCH_300W_F if level == 0 else [(64, kernel, True)]
    channels = (16, 32, 48, 48, 48, 48, 48)[level]
    return [(channels, kernel, True)]


def build_sumnet(config: ModelConfig) -> keras.Model:
    """SumNet as a functional model: raw grey (B, 80, 80, 1) -> pre-softmax maps (B, 80, 80, K).

    A branch mask (finest first) drops masked branches from the sum (the paper's meaning, docs/model.md 3.4);
    trunk levels that no active branch needs are not built. Branch weights W (R, K) ~ U[0, 1), trained.
    """
    g = GraphBuilder(config)
    image, x, _ = g.inputs()  # SumNet takes 80x80 crops only (ModelConfig)
    feats = g.trunk(x, config.top_level)
    outputs = []
    for level, feat in enumerate(feats):
        if not config.mask[level]:
            continue
        name = LEVELS[level].lower()
        y = feat
        for i, (filters, kernel, relu) in enumerate(_branch_convs(config, level), start=1):
            y = g.conv(y, filters, kernel, f"b{name}{i}", "decoder", relu=relu)
        kernel = 1 if LEVELS[level] == "O" else 3
        y = g.conv(y, config.num_keypoints, kernel, f"b{name}_out", "decoder", relu=False, float32=True)
        outputs.append(upsample_to_input(y, level, f"b{name}_up"))
    l2_w = config.l2_encoder if config.l2_branch_weights is None else config.l2_branch_weights
    if len(outputs) == 1:
        maps = outputs[0]
    else:
        maps = BranchSum(config.weight_per_pixel, l2=l2_w, seed=g.next_seed(), dtype="float32",
                         name="branch_sum")(outputs)
    return keras.Model(image, keras.layers.Identity(name="presoftmax", dtype="float32")(maps),
                       name=config.name or "sumnet")
