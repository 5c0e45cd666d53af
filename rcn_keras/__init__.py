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
from rcn_keras import data
from rcn_keras.export import export, export_saved_model, export_tflite
from rcn_keras.predict import load_model, predict, write_predictions
from rcn_keras.pretrained import list_pretrained, pretrained_info
from rcn_keras.training import NME, PixelNLL, TrainConfig, preset_train_config, train

__version__ = "0.1.0"

__all__ = [
    "MODEL_PRESETS", "NME", "KeypointReadout", "ModelConfig", "PixelNLL", "TrainConfig", "build_model", "data",
    "export", "export_saved_model", "export_tflite", "get_config", "list_models", "list_pretrained", "load_model",
    "predict", "pretrained_info",
    "preset_train_config", "train", "with_readout", "write_predictions", "__version__",
]
