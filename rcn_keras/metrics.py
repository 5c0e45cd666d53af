"""In-graph NME metric for `model.fit` logs (``nme`` / ``val_nme``): arg-max read-out (or the model's
own, so that best-epoch selection scores what users get), continuous mode, masked points excluded, the
keypoint scheme's default normaliser (docs/model.md, 7.2)."""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.keypoints import BOX_MIN_POINTS, BOX_NORMALISER, FACE_SIDE_IN_CROP, as_scheme
from rcn_keras.models.head import KeypointReadout
from rcn_keras.models.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class NME(keras.metrics.Mean):
    """Mean over samples of mean(unmasked point error) / inter-ocular distance, in %, with the keypoints
    read by ``readout`` (a `KeypointReadout` mode; the paper's arg-max by default)."""

    def __init__(self, normaliser: str | None = None, scheme: dict | None = None, name: str = "nme", dtype=None,
                 readout: str = "argmax"):
        super().__init__(name=name, dtype=dtype or "float32")
        self.normaliser = normaliser
        self.scheme = scheme.to_dict() if hasattr(scheme, "to_dict") else scheme
        self.readout = readout
        self._read = KeypointReadout(readout)

    def update_state(self, y_true, y_pred, sample_weight=None):
        scheme = as_scheme(self.scheme, y_pred.shape[3])
        norm = scheme.check_normaliser(self.normaliser)
        y_true = ops.cast(y_true, "float32")
        pred = self._read.call(ops.cast(y_pred, "float32"))["keypoints"]
        gt, mask = y_true[..., :2], ops.maximum(y_true[..., 2], 0.0)  # < 0: a group-mean label, no point
        if norm == BOX_NORMALISER and scheme.num_keypoints < BOX_MIN_POINTS:
            iod = ops.full((ops.shape(gt)[0],), FACE_SIDE_IN_CROP)
        elif norm == BOX_NORMALISER:
            extent = ops.max(gt, axis=1) - ops.min(gt, axis=1)
            iod = ops.sqrt(extent[:, 0] * extent[:, 1])
        else:
            left, right = scheme.normalisers[norm]
            iod = ops.norm(ops.mean(ops.take(gt, list(left), axis=1), 1) - ops.mean(ops.take(gt, list(right), axis=1), 1),
                           axis=-1)
        err = ops.norm(pred - gt, axis=-1)
        per_sample = ops.sum(err * mask, -1) / ops.maximum(ops.sum(mask, -1), 1e-12) / ops.maximum(iod, 1e-12)
        return super().update_state(100.0 * per_sample, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "normaliser": self.normaliser, "scheme": self.scheme,
                "readout": self.readout}
