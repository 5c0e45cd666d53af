"""Measuring a model's `LabelOffsets` on its training faces (`rcn_keras.models.label_offsets` says why)."""

from __future__ import annotations

import numpy as np

from rcn_keras.data.faceset import FaceSet
from rcn_keras.evaluation.report import predict_faceset
from rcn_keras.models.label_offsets import READINGS, LabelOffsets, mean_offsets


def measure_label_offsets(model, faces: FaceSet, batch_size: int = 64) -> LabelOffsets:
    """The mean (label - prediction) of each keypoint of `Landmarker` ``model`` (without offsets of its
    own, with its read-out and shape prior) on the un-jittered crops of ``faces`` (its training faces: the
    labels' convention, never a test set), plain and flip-averaged (when its keypoint scheme has a
    mirror). Points at an image border (300W border codes) or outside the crop do not count."""
    if len(faces) == 0:
        raise ValueError("label offsets need at least one face")
    model = model.with_label_offsets(None)
    offsets = {}
    for reading in READINGS:
        flip = reading == "flip"
        if flip and model.keypoints.flip is None:
            offsets[reading] = None
            continue
        pred, gt, _ = predict_faceset(model, faces, batch_size, flip=flip)
        inside = np.all((gt >= 0.0) & (gt < 1.0), axis=-1)
        offsets[reading] = mean_offsets(pred, gt, inside & (np.asarray(faces.border_codes) == 0))
    return LabelOffsets(offsets["plain"], offsets["flip"], len(faces))
