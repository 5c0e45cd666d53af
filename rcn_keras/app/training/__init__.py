"""Training runs: `TrainConfig` (what to train, validated), `train` (model.fit with checkpoints, resume,
logs, report), callbacks and tf.distribute strategies."""

from rcn_keras.app.training.config import TrainConfig, preset_train_config
from rcn_keras.app.training.fit import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "preset_train_config", "train"]
