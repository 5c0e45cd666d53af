"""Label offsets: the mean (label - prediction) of each keypoint on a model's training faces, added to its
points, one set for the plain reading and one for the flip-averaged one.

Why: a dataset's labels need not be mirror images of themselves. 300W's points sit about 0.25 map pixels (of
80) right of the mirror-symmetric place (half the gap to their mirror images); a network trained with flips
cannot learn that (each flipped face teaches the opposite), so it reads every point that much too far left,
and a network trained without flips (MTFL) learns it, so flip averaging cancels it and reads 0.6 pixels left.
Measured on the training faces and added back, each reading lands on the labels' convention. Only a constant
per point: it never moves one face's points relative to each other.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from keras import ops

READINGS = ("plain", "flip")


@dataclasses.dataclass(frozen=True, eq=False)
class LabelOffsets:
    """``plain`` and ``flip`` (K, 2) offsets in crop units ([0, 1] of the crop, x then y), added to the points
    of the plain and the flip-averaged reading; ``flip`` is ``None`` for a scheme without a mirror; ``faces``:
    how many training faces they were measured on (information only)."""

    plain: np.ndarray
    flip: np.ndarray | None = None
    faces: int | None = None

    def __post_init__(self):
        for name in READINGS:
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, np.float32)
            if value.ndim != 2 or value.shape[1] != 2 or not np.all(np.isfinite(value)):
                raise ValueError(f"label offsets '{name}' must be finite (K, 2) values, got shape {value.shape}")
            object.__setattr__(self, name, value)
        if self.plain is None:
            raise ValueError("label offsets need the 'plain' reading's offsets")
        if self.flip is not None and self.flip.shape != self.plain.shape:
            raise ValueError(f"label offsets: 'flip' is {self.flip.shape}, 'plain' {self.plain.shape}")

    @property
    def num_keypoints(self) -> int:
        return int(self.plain.shape[0])

    def reading(self, flip: bool) -> np.ndarray:
        """The (K, 2) offsets of the flip-averaged reading (``flip``) or the plain one; zeros where a scheme
        without a mirror has none for flips."""
        if not flip:
            return self.plain
        return self.flip if self.flip is not None else np.zeros_like(self.plain)

    def apply(self, points, flip: bool = False):
        """``points`` (B, K, 2) of the plain or flip-averaged reading moved by its offsets (a graph op)."""
        return ops.add(ops.cast(points, "float32"), self.reading(flip)[None])

    def to_dict(self) -> dict:
        return {"plain": self.plain.tolist(), "flip": None if self.flip is None else self.flip.tolist(),
                "faces": self.faces}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelOffsets":
        unknown = set(data) - {"plain", "flip", "faces"}
        if unknown:
            raise ValueError(f"label offsets: unknown fields {sorted(unknown)}; allowed: plain, flip, faces")
        return cls(data["plain"], data.get("flip"), data.get("faces"))


def as_label_offsets(value) -> LabelOffsets | None:
    """``None``, a `LabelOffsets` or its dict (as saved in a model's config) as `LabelOffsets`."""
    if value is None or isinstance(value, LabelOffsets):
        return value
    if isinstance(value, dict):
        return LabelOffsets.from_dict(value)
    raise TypeError(f"label_offsets must be a LabelOffsets, its dict or None, got {type(value).__name__}")


def mean_offsets(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per keypoint the mean of (gt - pred) over the faces where it is ``valid`` (N, K); 0 where it never is."""
    valid = np.asarray(valid, bool)[..., None]
    diff = np.where(valid, np.asarray(gt, np.float64) - np.asarray(pred, np.float64), 0.0)
    counts = valid.sum(axis=0)
    return (diff.sum(axis=0) / np.maximum(counts, 1)).astype(np.float32)
