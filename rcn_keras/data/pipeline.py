"""tf.data pipelines over a `FaceSet` (docs/model.md 6): train (fresh jitter and occlusion every epoch,
reshuffled), validation (jittered and occluded once with a fixed seed), test (no jitter).

Each element is ``(image, target)``: image (B, 80, 80, 1) (or the network's input side) float32 raw intensities 0-255 (LCN is
inside the model), target (B, K, 3) = normalised x, y in [0, 1] and the loss mask: 0/1 times the face's
label weight (`FaceSet.weights`: 1 for true labels, less for pseudo-labels); a negative mask marks a point
that holds its group's mean (`keypoints.GROUP_MEAN`: trained only through that mean).
"""

from __future__ import annotations

import tensorflow as tf

from rcn_keras.data import augment as aug
from rcn_keras.data.faceset import FaceSet
from rcn_keras.grid import discretise
from rcn_keras.keypoints import KeypointScheme, as_scheme

MODES = ("train", "validation", "test")


def flip_order(scheme: KeypointScheme, config: aug.AugmentConfig) -> list[int] | None:
    """The mirror permutation the training pipeline flips with (``None``: no flips); a scheme without a
    mirror refuses ``augment.flip``."""
    if not config.flip:
        return None
    if scheme.flip is None:
        raise ValueError(f"augment.flip needs the mirror permutation of the points, and keypoint scheme "
                         f"{scheme.name!r} has none: add \"flip\" to the scheme or set augment.flip=false")
    return list(scheme.flip)


def _sample_fn(mode: str, config: aug.AugmentConfig, mask_outside: bool, perm: list[int] | None, out_size: int):
    jitter = mode != "test"
    zoom = out_size / aug.OUT_SIZE  # occlusion sizes and blur are in 80x80 pixels

    def fn(sample, seed):
        seed = tf.stack([seed, tf.cast(sample["index"], tf.int64)])
        rect = sample["rect"]
        if jitter:
            scale, tx, ty, rot = aug.draw_jitter(seed, config)
        else:
            scale, tx, ty, rot = tf.constant(1.0), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        tl, k, c, sn = aug.warp_params(rect, scale, tx, ty, rot, out_size)
        image = aug.warp_image(sample["image"], tl, k, c, sn, out_size)
        points = aug.warp_points(sample["keypoints"], tl, k, c, sn) / out_size
        if mode == "train" and config.photometric:
            image = aug.photometric(image, seed + 5, config, zoom)
        if jitter and config.occlusion:
            image = aug.occlude(image, seed + 3, config, zoom)
        mask = aug.label_mask(points, sample["border_codes"], mask_outside) * sample["weight"]
        if perm is not None:
            do_flip = tf.random.stateless_uniform([], seed + 11) < 0.5
            image, points, mask = tf.cond(do_flip, lambda: aug.flip_sample(image, points, mask, perm),
                                          lambda: (image, points, mask))
        image = tf.ensure_shape(image, (out_size, out_size, 1))
        return image, tf.concat([points, mask[:, None]], axis=-1)

    return fn


def make_dataset(faces: FaceSet, mode: str = "train", batch_size: int = 64,
                 augment: aug.AugmentConfig | None = None, seed: int = 0,
                 mask_outside: bool | None = None, drop_remainder: bool = False,
                 scheme: KeypointScheme | None = None, out_size: int = aug.OUT_SIZE) -> tf.data.Dataset:
    """Batched, prefetched ``(image, target)`` pipeline over ``faces``, crops ``out_size`` pixels square
    (the network's input side; the targets are normalised, the same for any side).

    ``scheme``: the keypoint scheme (default: the `standard_scheme` of K) for the flip permutation and
    ``mask_outside``, which masks keypoints that leave the crop after the warp (the paper's schemes:
    True for 68 points as the authors' 300W code, False for 5 points as their MTFL code).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(faces) == 0:
        raise ValueError("cannot make a pipeline over an empty face set")
    config = augment or aug.AugmentConfig()
    scheme = as_scheme(scheme, faces.num_keypoints)
    perm = flip_order(scheme, config) if mode == "train" else None
    if mask_outside is None:
        mask_outside = scheme.mask_outside
    tensors = {"image": faces.images, "keypoints": faces.keypoints, "rect": faces.rects,
               "border_codes": faces.border_codes, "weight": faces.label_weights,
               "index": tf.range(len(faces), dtype=tf.int64)}
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if mode == "train":
        ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=(mode == "train"))
    ds = tf.data.Dataset.zip((ds, seeds))
    ds = ds.map(_sample_fn(mode, config, mask_outside, perm, out_size),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def corrupt_keypoints(labels, n_corrupt: int, seed, size: int = aug.OUT_SIZE):
    """Move ``n_corrupt`` distinct keypoints (uniformly chosen) to uniformly random pixels (docs/model.md 8).

    labels: (K,) int pixel indices; returns (noisy labels, corrupted 0/1 float mask).
    """
    k = labels.shape[0]
    order = tf.argsort(tf.random.stateless_uniform([k], seed))
    chosen = tf.scatter_nd(order[:n_corrupt, None], tf.ones([n_corrupt], tf.float32), [k])
    random_px = tf.random.stateless_uniform([k], seed + 5, 0, size * size, dtype=tf.int32)
    noisy = tf.where(chosen > 0, random_px, labels)
    return noisy, chosen


def one_hot_maps(labels, size: int = aug.OUT_SIZE):
    """(K,) pixel indices -> (size, size, K) one-hot maps."""
    k = labels.shape[0]
    return tf.transpose(tf.reshape(tf.one_hot(labels, size * size), (k, size, size)), (1, 2, 0))


def make_denoiser_dataset(faces: FaceSet, mode: str = "train", batch_size: int = 64, n_corrupt: int = 35,
                          augment: aug.AugmentConfig | None = None, seed: int = 0,
                          mask_outside: bool | None = None, scheme: KeypointScheme | None = None
                          ) -> tf.data.Dataset:
    """``(noisy one-hot maps (B, 80, 80, K), target (B, K, 3))`` from keypoint configurations only.

    Keypoints get the image pipeline's jitter (train: fresh each epoch; validation: fixed; test: none),
    are discretised to the 80 grid (docs/model.md 1.7), and ``n_corrupt`` of them move to uniformly random pixels,
    re-drawn every epoch in train mode. The target mask keeps only the corrupted points (and the 300W
    border mask), so only they train (docs/model.md 8).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    k = faces.num_keypoints
    if not 0 <= n_corrupt <= k:
        raise ValueError(f"n_corrupt={n_corrupt} must be between 0 and the keypoint count {k}")
    config = augment or aug.AugmentConfig()
    if mask_outside is None:
        mask_outside = as_scheme(scheme, k).mask_outside
    jitter = mode != "test"

    def fn(sample, rnd):
        s = tf.stack([rnd, tf.cast(sample["index"], tf.int64)])
        if jitter:
            scale, tx, ty, rot = aug.draw_jitter(s, config)
        else:
            scale, tx, ty, rot = tf.constant(1.0), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        tl, kk, c, sn = aug.warp_params(sample["rect"], scale, tx, ty, rot)
        points = aug.warp_points(sample["keypoints"], tl, kk, c, sn) / aug.OUT_SIZE
        labels = discretise(points, aug.OUT_SIZE)
        noisy, chosen = corrupt_keypoints(labels, n_corrupt, s + 13)
        mask = tf.maximum(aug.label_mask(points, sample["border_codes"], mask_outside), 0.0) * chosen
        return one_hot_maps(noisy), tf.concat([points, mask[:, None]], axis=-1)

    tensors = {"keypoints": faces.keypoints, "rect": faces.rects, "border_codes": faces.border_codes,
               "index": tf.range(len(faces), dtype=tf.int64)}
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if mode == "train":
        ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=(mode == "train"))
    ds = tf.data.Dataset.zip((ds, seeds)).map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
