"""Named presets (the authors' README commands, spec 5.5) and `build_model`, the one entry point."""

from __future__ import annotations

import difflib

import keras

from rcn_keras.models.config import ModelConfig
from rcn_keras.models.rcn import build_rcn
from rcn_keras.models.sumnet import build_sumnet

_MTFL = dict(layout="mtfl", num_keypoints=5)
_300W = dict(layout="300w", num_keypoints=68)

MODEL_PRESETS: dict[str, ModelConfig] = {
    "sumnet_mtfl": ModelConfig(family="sumnet", branches=6, l2_encoder=1e-10, l2_decoder=1e-14,
                               l2_branch_weights=1e-14, **_MTFL),
    "sumnet_300w": ModelConfig(family="sumnet", branches=5, l2_encoder=1e-14, l2_decoder=1e-6, **_300W),
    "rcn_mtfl": ModelConfig(family="rcn", branches=6, l2_encoder=1e-6, l2_decoder=1e-12, **_MTFL),
    "rcn_mtfl_skip": ModelConfig(family="rcn", branches=6, skip=True, l2_encoder=1e-4, l2_decoder=1e-4,
                                 **_MTFL),
    "rcn_300w": ModelConfig(family="rcn", branches=5, l2_encoder=1e-12, l2_decoder=1e-8, **_300W),
    # The authors' released 300W model (trained_model/RCN_300W): max-only laterals, learned upsampling.
    "rcn_300w_released": ModelConfig(family="rcn", branches=5, zero_non_pooled=True, upsampling="learned",
                                     l2_encoder=1e-10, l2_decoder=1e-8, **_300W),
    # Tuned for a CPU budget (issue 5): the paper's rcn_300w at half width (about a quarter of the
    # compute); training preset adds Adam, flips and a local soft-argmax read-out.
    "rcn_300w_tuned": ModelConfig(family="rcn", branches=5, width=0.5, l2_encoder=1e-12, l2_decoder=1e-8,
                                  **_300W),
    "rcn_mtfl_tuned": ModelConfig(family="rcn", branches=6, l2_encoder=1e-6, l2_decoder=1e-12, **_MTFL),
    # The real-face recipe of issue 15 (training preset: bfloat16, Adam + cosine, flips, photometric and
    # box jitter, bilinear targets, soft-argmax): the paper's networks, rcn_300w at half width.
    "rcn_300w_real": ModelConfig(family="rcn", branches=5, width=0.5, l2_encoder=1e-12, l2_decoder=1e-8,
                                 **_300W),
    "rcn_mtfl_real": ModelConfig(family="rcn", branches=6, l2_encoder=1e-6, l2_decoder=1e-12, **_MTFL),
    "rcn_300w_skip": ModelConfig(family="rcn", branches=5, skip=True, l2_encoder=0.1, l2_decoder=0.1,
                                 **_300W),
}


def list_models() -> list[str]:
    """Names accepted by `build_model` and `get_config`."""
    return sorted(MODEL_PRESETS)


def get_config(name: str, **overrides) -> ModelConfig:
    """The preset ``name`` with ``overrides`` applied (any `ModelConfig` field)."""
    if name not in MODEL_PRESETS:
        close = difflib.get_close_matches(name, MODEL_PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; available: {', '.join(list_models())}")
    return MODEL_PRESETS[name].replace(name=name, **overrides)


def build_from_config(config: ModelConfig) -> keras.Model:
    """Build the network a `ModelConfig` describes."""
    return build_rcn(config) if config.family == "rcn" else build_sumnet(config)


def build_model(name: str | ModelConfig, **overrides) -> keras.Model:
    """Build a preset by name (e.g. ``build_model("rcn_mtfl", branches=5)``) or from a `ModelConfig`.

    The model maps raw grey crops (B, 80, 80, 1) to pre-softmax maps (B, 80, 80, K); wrap it with
    `with_readout` to get keypoints. The config is attached as ``model.rcn_config``.
    """
    config = name.replace(**overrides) if isinstance(name, ModelConfig) else get_config(name, **overrides)
    model = build_from_config(config)
    model.rcn_config = config
    return model
