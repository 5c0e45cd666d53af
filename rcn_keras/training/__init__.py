"""Losses, metrics, callbacks, configuration and the fit loop."""

from rcn_keras.training.config import DataConfig, TrainConfig, preset_train_config
from rcn_keras.training.fit import train
from rcn_keras.training.losses import PixelNLL, discretise
from rcn_keras.training.metrics import NME

__all__ = ["DataConfig", "NME", "PixelNLL", "TrainConfig", "discretise", "preset_train_config", "train"]
