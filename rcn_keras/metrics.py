"""In-graph NME metric for `model.fit` logs (``nme`` / ``val_nme``): arg-max read-out, continuous
mode, masked points excluded, the keypoint count's default normaliser (docs/model.md, 7.2)."""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.grid import argmax_points
from rcn_keras.keypoints import DEFAULT_NORMALISER, NORMALISERS
from rcn_keras.models.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class NME(keras.metrics.Mean):
    """Mean over samples of mean(unmasked point error) / inter-ocular distance, in % (arg-max read-out)."""

    def __init__(self, normaliser: str | None = None, name: str = "nme", dtype=None):
        super().__init__(name=name, dtype=dtype or "float32")
        self.normaliser = normaliser

    def update_state(self, y_true, y_pred, sample_weight=None):
        k = y_pred.shape[3]
        if k not in NORMALISERS:
            raise ValueError(f"NME needs 5 or 68 keypoints, the model predicts {k}")
        left, right = NORMALISERS[k][self.normaliser or DEFAULT_NORMALISER[k]]
        y_true = ops.cast(y_true, "float32")
        pred = argmax_points(ops.cast(y_pred, "float32"))
        gt, mask = y_true[..., :2], y_true[..., 2]
        iod = ops.norm(ops.mean(ops.take(gt, left, axis=1), 1) - ops.mean(ops.take(gt, right, axis=1), 1), axis=-1)
        err = ops.norm(pred - gt, axis=-1)
        per_sample = ops.sum(err * mask, -1) / ops.maximum(ops.sum(mask, -1), 1e-12) / ops.maximum(iod, 1e-12)
        return super().update_state(100.0 * per_sample, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "normaliser": self.normaliser}
