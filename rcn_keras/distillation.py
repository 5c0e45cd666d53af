"""Teacher targets for distillation: the pixel probabilities of one or more trained map models on the
very crops a student trains on (after augmentation), averaged over the teachers and, with a mirror
permutation, over each crop and its mirror image. `PixelNLL(distill_weight=...)` reads them.

A teacher that is an ensemble, a bigger network or flip-averaged is better than the network to train;
distilling it aims to move part of that gain into one network that costs one forward pass per face
(measured on 300W: v3's flip gain, 5.34 -> 5.18 %, did not transfer into v3; see the README).
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf
from keras import ops

from rcn_keras.grid import flatten_maps
from rcn_keras.metrics import NME
from rcn_keras.models.head import as_map_model


def mirrored_maps(maps, flip: Sequence[int]):
    """Maps (B, H, W, K) of mirrored crops moved back to the crops' frame: each map mirrored left-right
    and the channels re-ordered by the keypoint scheme's ``flip`` permutation (left eye <-> right eye)."""
    return ops.take(ops.flip(maps, axis=2), list(flip), axis=-1)


def teacher_probabilities(teachers: Sequence[keras.Model], crops, flip: Sequence[int] | None = None):
    """(B, K, H*W) float32 pixel probabilities per keypoint: the mean over ``teachers`` (map models or
    `Landmarker`s) of their softmax on ``crops`` (B, H, W, 1), and with ``flip`` also of their softmax on
    the mirrored crops, mirrored back."""
    total = None
    for teacher in teachers:
        net = as_map_model(teacher)
        views = [ops.cast(net(crops, training=False), "float32")]
        if flip is not None:
            views.append(mirrored_maps(ops.cast(net(ops.flip(crops, axis=2), training=False), "float32"), flip))
        for maps in views:
            p = ops.softmax(flatten_maps(maps), axis=-1)
            total = p if total is None else total + p
    return total / float(len(teachers) * (2 if flip is not None else 1))


def check_pooling(side: int, size: int) -> None:
    """A ValueError unless teacher maps of ``side`` can be pooled onto a student's ``size`` (a divisor)."""
    if size > side or side % size:
        raise ValueError(f"teacher maps of {side}x{side} cannot teach {size}x{size} maps (a divisor of {side} is needed)")


def pooled_probabilities(probs, side: int, size: int):
    """(B, K, side*side) pixel probabilities summed over blocks into (B, K, size*size): a teacher's maps
    on a student's coarser grid (80x80 -> 40x40: each 2x2 block's mass on the pixel that covers it)."""
    check_pooling(side, size)
    if size == side:
        return probs
    f = side // size
    blocks = ops.reshape(probs, (-1, probs.shape[1], size, f, size, f))
    return ops.reshape(ops.sum(blocks, axis=(3, 5)), (-1, probs.shape[1], size * size))


def student_crops(crops, side: int):
    """Crops (B, S, S, 1) made for a teacher of a finer input as a student's (B, side, side, 1): the mean of
    each block (160 -> 80: 2x2 blocks, the bilinear halving of the crop); the same crops when S == side."""
    full = int(crops.shape[1])
    if full % side:
        raise ValueError(f"{full}x{full} crops cannot be halved into {side}x{side} student crops "
                         f"(a divisor of {full} is needed)")
    f = full // side
    return crops if f == 1 else ops.average_pool(crops, f, f)


def with_teacher_targets(dataset: tf.data.Dataset, teachers: Sequence[keras.Model],
                         flip: Sequence[int] | None = None, size: int | None = None,
                         student_side: int | None = None) -> tf.data.Dataset:
    """A batched ``(crops, targets (B, K, 3))`` dataset with the teachers' probabilities appended to each
    keypoint's target: ``(crops, (B, K, 3 + S*S))``, the layout `PixelNLL` distils from; ``size``: the
    student's map side S when coarser than the teachers' (their probabilities pooled onto it).
    ``student_side``: a student that takes coarser crops than the teachers (80 from a 160x160 teacher):
    the teachers see the dataset's crops, the student their block means (`student_crops`)."""
    nets = [as_map_model(t) for t in teachers]
    for net in nets[1:]:
        if (tuple(net.output.shape[1:]) != tuple(nets[0].output.shape[1:])
                or net.input.shape[1] != nets[0].input.shape[1]):
            raise ValueError(f"teachers disagree on their crops or maps: {tuple(nets[0].input.shape[1:3])} -> "
                             f"{tuple(nets[0].output.shape[1:])} vs {tuple(net.input.shape[1:3])} -> "
                             f"{tuple(net.output.shape[1:])}")
    side = int(nets[0].output.shape[1])
    size = side if size is None else int(size)
    check_pooling(side, size)

    def add(crops, targets):
        probs = pooled_probabilities(teacher_probabilities(nets, crops, flip), side, size)
        student = crops if student_side is None else student_crops(crops, student_side)
        return student, tf.concat([tf.cast(targets, tf.float32), probs], axis=-1)

    return dataset.map(add, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def probability_maps(probs, height: int, width: int):
    """(B, K, H*W) pixel probabilities as (B, H, W, K) log-probability maps, read like a network's
    pre-softmax maps (their softmax gives the probabilities back)."""
    maps = ops.reshape(ops.log(ops.maximum(probs, 1e-30)), (-1, probs.shape[1], height, width))
    return ops.transpose(maps, (0, 2, 3, 1))


def teacher_check(dataset: tf.data.Dataset, scheme, readout: str, student: keras.Model | None = None,
                  batches: int = 4) -> dict:
    """NME (%) against the true labels, on the first ``batches`` batches of a `with_teacher_targets`
    dataset, of what the student is taught (the teachers' averaged maps) and of ``student`` (the network a
    run starts from, when given), both read by ``readout``. A teacher no better than the student on the
    crops it is shown (an augmentation it was not trained for, such as occlusion) teaches worse maps."""
    taught, own = NME(scheme=scheme, readout=readout), NME(scheme=scheme, readout=readout)
    student = as_map_model(student) if student is not None else None
    crops_seen = 0
    for crops, targets in dataset.take(batches):
        size = int(targets.shape[-1]) - 3
        height = width = int(round(size ** 0.5))
        if height * width != size:
            raise ValueError(f"teacher targets hold {size} pixels per point, not a square map")
        labels = targets[..., :3]
        taught.update_state(labels, probability_maps(targets[..., 3:], height, width))
        if student is not None:
            own.update_state(labels, ops.cast(student(crops, training=False), "float32"))
        crops_seen += int(crops.shape[0])
    result = {"crops": crops_seen, "teacher_nme": float(taught.result())}
    if student is not None:
        result["student_nme"] = float(own.result())
    return result
