"""Pixel-softmax head: per-keypoint softmax over all map pixels and read-out to coordinates (spec 5.1, 5.3).

Coordinates are normalised to [0, 1] by the map side, x = column, y = row. Pixel j covers
[j, j + 1) / D, so the arg-max read-out returns its centre (j + 0.5) / D.
"""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.models.layers import PACKAGE

READOUTS = ("argmax", "soft_argmax", "local_soft_argmax")
LOCAL_RADIUS = 2  # local_soft_argmax averages the (2r+1)^2 pixels around the peak


def pixel_argmax(flat):
    """Arg-max over the last axis as int32. tf.argmax directly: Keras' ops.argmax adds a BitwiseAnd
    (for numpy's -0.0 semantics) that TFLite's builtin ops cannot convert."""
    import tensorflow as tf

    return tf.argmax(flat, axis=-1, output_type=tf.int32)


def flatten_maps(logits):
    """(B, H, W, K) maps -> (B, K, H*W) with row-major (y, x) pixel order, as the authors' code."""
    h, w, k = logits.shape[1], logits.shape[2], logits.shape[3]
    return ops.reshape(ops.transpose(logits, (0, 3, 1, 2)), (-1, k, h * w))


def pixel_log_softmax(logits):
    """Per-keypoint log-softmax over all pixels, in float32: (B, H, W, K) -> (B, K, H*W)."""
    return ops.log_softmax(ops.cast(flatten_maps(logits), "float32"), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class KeypointReadout(keras.layers.Layer):
    """Pre-softmax maps (B, H, W, K) -> keypoints (B, K, 2) in [0, 1] and confidence (B, K).

    ``"argmax"`` (the paper) takes the most probable pixel's centre; ``"soft_argmax"`` takes the
    expectation of pixel centres under the softmax (sub-pixel, differentiable, but pulled towards the
    centre by far-away mass); ``"local_soft_argmax"`` takes that expectation only over the 5x5 pixels
    around the peak (sub-pixel, robust to a second mode). Confidence is the peak probability of each
    keypoint's softmax. Always float32.
    """

    def __init__(self, mode: str = "argmax", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if mode not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {mode!r}")
        self.mode = mode

    def call(self, logits):
        h, w = logits.shape[1], logits.shape[2]
        probs = ops.exp(pixel_log_softmax(logits))  # (B, K, H*W)
        confidence = ops.max(probs, axis=-1)
        grid = ops.arange(h * w)
        gx, gy = ops.cast(grid % w, "float32"), ops.cast(grid // w, "float32")
        if self.mode == "soft_argmax":
            weights = probs
        else:
            idx = pixel_argmax(probs)
            px, py = ops.cast(idx % w, "float32")[..., None], ops.cast(idx // w, "float32")[..., None]
            if self.mode == "argmax":
                return {"keypoints": ops.concatenate([(px + 0.5) / w, (py + 0.5) / h], axis=-1),
                        "confidence": confidence}
            near = ops.logical_and(ops.abs(gx - px) <= LOCAL_RADIUS, ops.abs(gy - py) <= LOCAL_RADIUS)
            weights = probs * ops.cast(near, "float32")
            weights = weights / ops.sum(weights, axis=-1, keepdims=True)
        xy = ops.stack([ops.sum(weights * (gx + 0.5) / w, axis=-1), ops.sum(weights * (gy + 0.5) / h, axis=-1)],
                       axis=-1)
        return {"keypoints": xy, "confidence": confidence}

    def compute_output_shape(self, input_shape):
        b, _, _, k = input_shape
        return {"keypoints": (b, k, 2), "confidence": (b, k)}

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def with_readout(model: keras.Model, readout: str = "argmax") -> keras.Model:
    """Wrap a map model into one returning {"presoftmax", "keypoints", "confidence"}.

    The wrapped model shares weights with ``model``; use it for inference, evaluation and export.
    """
    logits = model.outputs[0]
    out = KeypointReadout(readout, name="readout")(logits)
    return keras.Model(model.input, {"presoftmax": logits, **out}, name=f"{model.name}_readout")
