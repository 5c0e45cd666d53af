"""rcn-keras: Recombinator Networks, SumNet and the denoising keypoint model for facial landmarks.

Importing the package registers every custom layer for `.keras` loading.
"""

from rcn_keras.models import (
    MODEL_PRESETS,
    KeypointReadout,
    ModelConfig,
    build_model,
    get_config,
    list_models,
    with_readout,
)
from rcn_keras.training import PixelNLL

__version__ = "0.1.0"

__all__ = [
    "MODEL_PRESETS", "KeypointReadout", "ModelConfig", "PixelNLL", "build_model", "get_config",
    "list_models", "with_readout", "__version__",
]
