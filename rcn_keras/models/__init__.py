"""Model builders, custom layers and the pixel-softmax head."""

from rcn_keras.models.config import ModelConfig
from rcn_keras.models.head import KeypointReadout, with_readout
from rcn_keras.models.layers import BranchSum, LearnedUpsampling, LocalContrastNormalization, MaxOnly, RCNUniform
from rcn_keras.models.rcn import build_rcn
from rcn_keras.models.registry import MODEL_PRESETS, build_from_config, build_model, get_config, list_models
from rcn_keras.models.sumnet import build_sumnet

__all__ = [
    "BranchSum", "KeypointReadout", "LearnedUpsampling", "LocalContrastNormalization", "MaxOnly",
    "MODEL_PRESETS", "ModelConfig", "RCNUniform", "build_from_config", "build_model", "build_rcn",
    "build_sumnet", "get_config", "list_models", "with_readout",
]
