"""Masked per-keypoint negative log-likelihood of the true pixel (spec 5.2), float32 and log-softmax based.

Targets are (B, K, 3): normalised x, y in [0, 1] and a 0/1 mask. They are discretised here exactly as
spec 1.7: clamp to [0, 0.99999], floor(coord * D), label = y_int * D + x_int.
"""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.models.head import pixel_log_softmax
from rcn_keras.models.layers import PACKAGE


def discretise(coords, size: int):
    """Normalised (..., 2) coordinates -> integer pixel labels y_int * size + x_int (spec 1.7)."""
    c = ops.clip(ops.cast(coords, "float32"), 0.0, 0.99999)
    ij = ops.cast(ops.floor(c * size), "int32")
    return ij[..., 1] * size + ij[..., 0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelNLL(keras.losses.Loss):
    """L = K * sum_{b,k} m_bk * NLL_bk / (sum m + 1e-8), returned per sample so that the batch mean is L.

    y_true: (B, K, 3) = (x, y, mask) normalised; y_pred: pre-softmax maps (B, H, W, K).
    """

    def __init__(self, name: str = "pixel_nll", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")

    def call(self, y_true, y_pred):
        size = y_pred.shape[1]
        k = y_pred.shape[-1]
        y_true = ops.cast(y_true, "float32")
        mask = y_true[..., 2]
        labels = discretise(y_true[..., :2], size)
        logp = pixel_log_softmax(y_pred)  # (B, K, H*W)
        nll = -ops.squeeze(ops.take_along_axis(logp, labels[..., None], axis=-1), -1)
        batch = ops.cast(ops.shape(mask)[0], "float32")
        mean_mask = ops.sum(mask) / batch
        return k * ops.sum(mask * nll, axis=-1) / (mean_mask + 1e-8)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}
