"""Pixel-softmax head: per-keypoint softmax over all map pixels and the read-out of keypoints from it
(docs/model.md, 5.1 and 5.3). Coordinates follow `rcn_keras.grid`: normalised to [0, 1], pixel
centres at (j + 0.5) / D.
"""

from __future__ import annotations

import keras
from keras import ops

from rcn_keras.grid import MAP_SIZE, flatten_maps, mirror_points, pixel_argmax, pixel_centres
from rcn_keras.models.config import READOUTS
from rcn_keras.models.layers import PACKAGE
from rcn_keras.models.shape_prior import average_moments, mirror_moments

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
        # Each map is exponentiated once, and the layout suits the read-out: the expectation of
        # soft_argmax reduces over pixels on axis 1 (no transpose), arg-max peaks are taken on the last
        # axis (TFLite's ARG_MAX is about 4x slower on another). The read-out is about half of a small
        # model's time per face on a CPU (benchmarks/speed_vs_dlib.py).
        h, w, k = logits.shape[1], logits.shape[2], logits.shape[3]
        if self.mode == "soft_argmax":
            flat = ops.reshape(ops.cast(logits, "float32"), (-1, h * w, k))  # (B, H*W, K)
            unnormalised = ops.exp(flat - ops.max(flat, axis=1, keepdims=True))  # peak pixel = 1
            total = ops.sum(unnormalised, axis=1)  # (B, K)
            centres = ops.transpose(pixel_centres(ops.arange(h * w), w))  # (2, H*W)
            expected = ops.matmul(centres, unnormalised) / total[:, None, :]  # (B, 2, K)
            return {"keypoints": ops.transpose(expected, (0, 2, 1)), "confidence": 1.0 / total}
        flat = ops.cast(flatten_maps(logits), "float32")  # (B, K, H*W)
        top = ops.max(flat, axis=-1, keepdims=True)
        confidence = 1.0 / ops.sum(ops.exp(flat - top), axis=-1)
        peak = pixel_argmax(flat)  # (B, K)
        if self.mode == "argmax":
            return {"keypoints": pixel_centres(peak, w), "confidence": confidence}
        # local_soft_argmax: the expectation over the (2r+1)^2 pixels around each peak only.
        offsets = ops.arange(-LOCAL_RADIUS, LOCAL_RADIUS + 1)
        n = int(offsets.shape[0])
        dy, dx = ops.repeat(offsets, n), ops.tile(offsets, n)  # (n*n,) each
        y, x = (peak // w)[..., None] + dy, (peak % w)[..., None] + dx  # (B, K, n*n)
        inside = ops.logical_and(ops.logical_and(y >= 0, y < h), ops.logical_and(x >= 0, x < w))
        index = ops.clip(y, 0, h - 1) * w + ops.clip(x, 0, w - 1)
        weights = ops.exp(ops.take_along_axis(flat, index, axis=-1) - top) * ops.cast(inside, "float32")
        points = ops.sum(pixel_centres(index, w) * weights[..., None], axis=-2)  # (B, K, 2)
        return {"keypoints": points / ops.sum(weights, axis=-1)[..., None], "confidence": confidence}

    def compute_output_shape(self, input_shape):
        b, _, _, k = input_shape
        return {"keypoints": (b, k, 2), "confidence": (b, k)}

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def mirror_average(out: dict, mirrored: dict, flip) -> dict:
    """Flip test-time averaging: read-outs of crops (``out``) and of the same crops mirrored left-right
    (``mirrored``) averaged, the mirrored points moved back (x -> 1 - x) and re-ordered by the keypoint
    scheme's ``flip`` permutation (left eye <-> right eye, ...)."""
    points = mirror_points(mirrored["keypoints"], flip)
    confidence = ops.take(mirrored["confidence"], list(flip), axis=1)
    return {"keypoints": (out["keypoints"] + points) / 2, "confidence": (out["confidence"] + confidence) / 2}


def mirrored_readout(maps_model, head, crops, flip=None, prior=None, offsets=None) -> dict:
    """``head`` on ``maps_model``'s maps of ``crops`` (B, H, W, C); with a ``flip`` permutation, averaged
    with the read-out of the mirrored crops (`mirror_average`, twice the network time). With a
    `ShapePrior` ``prior``, the keypoints are its fit to the maps' moments (both crops' moments
    averaged when flipping); the confidence stays the head's. `LabelOffsets` ``offsets`` (of the plain or
    the flip-averaged reading) move the keypoints last."""
    maps = maps_model(crops, training=False)
    out = head(maps)
    mirrored = None if flip is None else maps_model(ops.flip(crops, axis=2), training=False)
    if mirrored is not None:
        out = mirror_average(out, head(mirrored), flip)
    if prior is not None:
        moments = prior.moments(maps)
        if mirrored is not None:
            moments = average_moments(moments, mirror_moments(*prior.moments(mirrored), flip))
        out = {**out, "keypoints": prior.fit(*moments)}
    if offsets is not None:
        out = {**out, "keypoints": offsets.apply(out["keypoints"], flip is not None)}
    return out


def input_side(model: keras.Model) -> int:
    """Side of the grey crops ``model`` (a map model, read-out model or `Landmarker`) takes: 80, or 160."""
    return int(as_map_model(model).input.shape[1])


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
    if isinstance(out, (list, tuple)) or len(out.shape) != 4 or not is_map_side(out.shape[1], out.shape[2]):
        shape = [tuple(o.shape) for o in out] if isinstance(out, (list, tuple)) else tuple(out.shape)
        raise ValueError(f"model {model.name!r} outputs {shape}, not (None, S, S, K) keypoint maps with S "
                         f"{MAP_SIZE} or a divisor of it: not a landmark model")
    return model


def is_map_side(height, width) -> bool:
    """Whether maps of ``height`` x ``width`` are keypoint maps: square, of the crop's side (80) or a
    divisor of it (40x40: the fast model without upsampling), so that pixel centres map onto the crop."""
    return height == width and isinstance(height, int) and height > 0 and MAP_SIZE % height == 0


def with_readout(model: keras.Model, readout: str = "argmax", prior=None, offsets=None) -> keras.Model:
    """Wrap a map model into one returning {"presoftmax", "keypoints", "confidence"}; with a
    `ShapePrior` ``prior``, the keypoints are its fit (the confidence stays the read-out's); `LabelOffsets`
    ``offsets`` (the plain reading's) move them last.

    The wrapped model shares weights with ``model``; use it for inference, evaluation and export.
    """
    model = as_map_model(model)
    logits = model.outputs[0]
    out = KeypointReadout(readout, name="readout")(logits)
    if prior is not None:
        out = {**out, "keypoints": prior(logits)}
    if offsets is not None:
        out = {**out, "keypoints": offsets.apply(out["keypoints"])}
    return keras.Model(model.input, {"presoftmax": logits, **out}, name=f"{model.name}_readout")
