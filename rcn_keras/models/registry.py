"""`build_model`, the one entry point from a preset name (or a `ModelConfig`) to a SumNet / RCN network."""

from __future__ import annotations

import keras

from rcn_keras.models.config import ModelConfig
from rcn_keras.models.rcn import build_rcn
from rcn_keras.models.sumnet import build_sumnet
from rcn_keras.presets import get_preset, list_presets


def list_models() -> list[str]:
    """Preset names accepted by `build_model` and `model_config` (every SumNet / RCN preset)."""
    return list_presets(denoisers=False)


def model_config(name: str, **overrides) -> ModelConfig:
    """The network of preset ``name`` with ``overrides`` applied (any `ModelConfig` field)."""
    preset = get_preset(name)
    if preset.is_denoiser:
        raise ValueError(f"preset {name!r} is a denoiser: build it with build_denoiser")
    return preset.model.replace(**overrides)


def build_from_config(config: ModelConfig) -> keras.Model:
    """Build the network a `ModelConfig` describes."""
    return build_rcn(config) if config.family == "rcn" else build_sumnet(config)


def build_model(name: str | ModelConfig, **overrides) -> keras.Model:
    """Build a preset by name (e.g. ``build_model("rcn_mtfl", branches=5)``) or from a `ModelConfig`.

    The model maps raw grey crops (B, 80, 80, 1) to pre-softmax maps (B, 80, 80, K); wrap it in a
    `Landmarker` (or `with_readout`) to get keypoints. The config is attached as ``model.rcn_config``.
    """
    config = name.replace(**overrides) if isinstance(name, ModelConfig) else model_config(name, **overrides)
    model = build_from_config(config)
    model.rcn_config = config
    return model
