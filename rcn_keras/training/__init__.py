"""Losses, metrics, callbacks and the fit loop."""

from rcn_keras.training.losses import PixelNLL, discretise

__all__ = ["PixelNLL", "discretise"]
