"""The 80x80 grid every model works on: its size, pixel centres and the discretisation of points.

Coordinates are normalised to [0, 1] by the map side, x = column, y = row; pixel j covers
[j, j + 1) / size, so its centre is (j + 0.5) / size (see docs/model.md, 1.7 and 5.3). Maps are
flattened row-major (y, x), as in the authors' code.
"""

from __future__ import annotations

MAP_SIZE = 80  # side of the model input crop and of every keypoint map


def discretise(coords, size: int = MAP_SIZE):
    """Normalised (..., 2) coordinates -> integer pixel labels y_int * size + x_int (clamped to the map)."""
    from keras import ops

    c = ops.clip(ops.cast(coords, "float32"), 0.0, 0.99999)
    ij = ops.cast(ops.floor(c * size), "int32")
    return ij[..., 1] * size + ij[..., 0]


def pixel_centres(index, size: int = MAP_SIZE):
    """Flat pixel indices (...) -> their centres (..., 2) in normalised coordinates (float32)."""
    from keras import ops

    x = ops.cast(index % size, "float32")
    y = ops.cast(index // size, "float32")
    return ops.stack([(x + 0.5) / size, (y + 0.5) / size], axis=-1)


def flatten_maps(logits):
    """(B, H, W, K) maps -> (B, K, H*W) in row-major (y, x) pixel order."""
    from keras import ops

    h, w, k = logits.shape[1], logits.shape[2], logits.shape[3]
    return ops.reshape(ops.transpose(logits, (0, 3, 1, 2)), (-1, k, h * w))


def mirror_points(points, flip):
    """Points (..., K, 2) of a left-right mirrored crop moved back to the crop: re-ordered by the keypoint
    scheme's ``flip`` permutation (left eye <-> right eye, ...) and x -> 1 - x."""
    from keras import ops

    points = ops.take(points, list(flip), axis=-2)
    return ops.stack([1.0 - points[..., 0], points[..., 1]], axis=-1)


def pixel_argmax(flat, axis: int = -1):
    """Arg-max over ``axis`` (the flattened pixels) as int32. tf.argmax directly: Keras' ops.argmax adds
    a BitwiseAnd (for numpy's -0.0 semantics) that TFLite's builtin ops cannot convert."""
    import tensorflow as tf

    return tf.argmax(flat, axis=axis, output_type=tf.int32)


def argmax_points(maps):
    """(B, H, W, K) maps (scores, logits or one-hot) -> (B, K, 2) centres of each map's arg-max pixel."""
    return pixel_centres(pixel_argmax(flatten_maps(maps)), maps.shape[2])
