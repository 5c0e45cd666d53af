"""Pixel-softmax head: per-keypoint softmax over all map pixels and the read-out of keypoints from it
(docs/model.md, 5.1 and 5.3). Coordinates follow `rcn_keras.grid`: normalised to [0, 1], pixel
centres at (j + 0.5) / D.
"""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.grid import MAP_SIZE, flatten_maps, pixel_argmax, pixel_centres
from rcn_keras.models.config import READOUTS
from rcn_keras.models.layers import PACKAGE

LOCAL_RADIUS = 2  # local_soft_argmax averages the (2r+1)^2 pixels around the peak


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
        if self.mode == "argmax":
            return {"keypoints": pixel_centres(pixel_argmax(probs), w), "confidence": confidence}
        grid = ops.arange(h * w)
        centres = pixel_centres(grid, w)  # (H*W, 2)
        if self.mode == "soft_argmax":
            weights = probs
        else:
            peak = pixel_argmax(probs)
            px, py = ops.cast(peak % w, "float32")[..., None], ops.cast(peak // w, "float32")[..., None]
            gx, gy = ops.cast(grid % w, "float32"), ops.cast(grid // w, "float32")
            near = ops.logical_and(ops.abs(gx - px) <= LOCAL_RADIUS, ops.abs(gy - py) <= LOCAL_RADIUS)
            weights = probs * ops.cast(near, "float32")
            weights = weights / ops.sum(weights, axis=-1, keepdims=True)
        return {"keypoints": ops.matmul(weights, centres), "confidence": confidence}

    def compute_output_shape(self, input_shape):
        b, _, _, k = input_shape
        return {"keypoints": (b, k, 2), "confidence": (b, k)}

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def as_map_model(model: keras.Model) -> keras.Model:
    """The pre-softmax map model inside ``model``: itself, the "presoftmax" output of a read-out model,
    or a `Landmarker`'s backbone. A ValueError says what the model is when it is none of these."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, keras.Model):
        return backbone
    try:
        out = model.output
    except (AttributeError, ValueError):
        raise ValueError(f"model {model.name!r} ({type(model).__name__}) is not a keypoint map model") from None
    if isinstance(out, dict):
        if "presoftmax" not in out:
            raise ValueError(f"model {model.name!r} has outputs {sorted(out)} but no 'presoftmax' maps")
        return keras.Model(model.input, out["presoftmax"], name=model.name)
    if isinstance(out, (list, tuple)) or len(out.shape) != 4 or tuple(out.shape[1:3]) != (MAP_SIZE, MAP_SIZE):
        shape = [tuple(o.shape) for o in out] if isinstance(out, (list, tuple)) else tuple(out.shape)
        raise ValueError(f"model {model.name!r} outputs {shape}, not (None, {MAP_SIZE}, {MAP_SIZE}, K) "
                         f"keypoint maps: not a landmark model")
    return model


def with_readout(model: keras.Model, readout: str = "argmax") -> keras.Model:
    """Wrap a map model into one returning {"presoftmax", "keypoints", "confidence"}.

    The wrapped model shares weights with ``model``; use it for inference, evaluation and export.
    """
    model = as_map_model(model)
    logits = model.outputs[0]
    out = KeypointReadout(readout, name="readout")(logits)
    return keras.Model(model.input, {"presoftmax": logits, **out}, name=f"{model.name}_readout")
