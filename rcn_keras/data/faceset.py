"""`FaceSet`: a preprocessed face set after stages A and B, ready for the tf.data pipelines."""

from __future__ import annotations

import dataclasses

import numpy as np

from rcn_keras.data.crop import STAGE_A_SIZE

# Seed of the authors' train/validation shuffle (docs/model.md 1.1).
SPLIT_SEED = 7345


@dataclasses.dataclass
class FaceSet:
    """N faces: 160x160 grey crops (larger for networks of a larger input), keypoints and the inner face
    rectangle, all in the crop frame.

    * ``images`` (N, 160, 160) uint8 (`crop_size` square); ``keypoints`` (N, K, 2) float32 edge coordinates (x, y);
    * ``rects`` (N, 3) float32 stage-B square (x, y, side) that the warp maps to 80x80;
    * ``border_codes`` (N, K) int32 300W border codes (0 = not at an image border; MTFL all 0);
    * ``pads`` (N, 4) float32 pad ratios of the rectangle [left, top, right, bottom];
    * ``names`` file names (or ids), ``groups`` subset label per face (e.g. "afw", "helen");
    * ``skipped`` (file, reason) for inputs skipped with ``on_error="skip"``;
    * ``weights`` (N,) float32 loss weight of each face's labels (``None``: all 1; pseudo-labels weigh less).
    """

    images: np.ndarray
    keypoints: np.ndarray
    rects: np.ndarray
    border_codes: np.ndarray
    pads: np.ndarray
    names: list[str]
    groups: list[str]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    weights: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.images)
        if self.weights is not None:
            self.weights = np.asarray(self.weights, np.float32).reshape(-1)
            if len(self.weights) != n or not np.all(np.isfinite(self.weights)) or np.any(self.weights < 0):
                raise ValueError(f"FaceSet.weights must be {n} finite values >= 0, got {len(self.weights)}")
        if self.images.ndim != 3 or self.images.shape[1] != self.images.shape[2] or self.images.shape[1] < 1:
            raise ValueError(f"FaceSet images must be (N, side, side) square crops (side {STAGE_A_SIZE} for "
                             f"80x80 networks), got {self.images.shape}")
        for name in ("keypoints", "rects", "border_codes", "pads", "names", "groups"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FaceSet.{name} has {len(getattr(self, name))} entries for {n} images")
        if n and not np.all(np.isfinite(self.keypoints)):
            bad = sorted({self.names[i] for i in np.flatnonzero(~np.isfinite(self.keypoints).all(axis=(1, 2)))})
            raise ValueError(f"non-finite keypoints in {bad[:5]}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def label_weights(self) -> np.ndarray:
        """The loss weight of each face's labels, (N,) float32 (ones when ``weights`` is ``None``)."""
        return np.ones(len(self), np.float32) if self.weights is None else self.weights

    def weighted(self, weight: float) -> "FaceSet":
        """The same faces with every face's labels weighing ``weight`` in the loss."""
        return dataclasses.replace(self, weights=np.full(len(self), weight, np.float32))

    @property
    def crop_size(self) -> int:
        """Side of the loose crops in pixels (160 for the paper's 80x80 networks)."""
        return int(self.images.shape[1])

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]

    def take(self, indices) -> "FaceSet":
        """The faces at ``indices`` (a new FaceSet; arrays are copied)."""
        idx = np.asarray(indices, dtype=np.int64)
        return FaceSet(self.images[idx], self.keypoints[idx], self.rects[idx], self.border_codes[idx],
                       self.pads[idx], [self.names[i] for i in idx], [self.groups[i] for i in idx],
                       list(self.skipped), None if self.weights is None else self.weights[idx])

    def where_group(self, *groups: str) -> "FaceSet":
        """Faces whose group is one of ``groups``."""
        return self.take([i for i, g in enumerate(self.groups) if g in groups])

    def split(self, validation: int | float = 0.1, seed: int = SPLIT_SEED) -> tuple["FaceSet", "FaceSet"]:
        """The authors' split (docs/model.md 1.1): permute with ``seed``, the **last** part is validation.

        ``validation`` is a count or a fraction (``N // round(1 / fraction)`` faces, as 3148 // 10).
        """
        n = len(self)
        n_val = int(validation) if validation >= 1 else n // int(round(1 / validation))
        if not 0 < n_val < n:
            raise ValueError(f"validation size {n_val} is not between 1 and {n - 1} for {n} faces")
        order = np.random.RandomState(seed).permutation(n)
        return self.take(order[: n - n_val]), self.take(order[n - n_val:])

    @staticmethod
    def concat(sets: list["FaceSet"]) -> "FaceSet":
        """Join face sets with the same keypoint count."""
        ks = {s.num_keypoints for s in sets}
        if len(ks) != 1:
            raise ValueError(f"cannot join face sets with different keypoint counts {sorted(ks)}")
        sides = {s.crop_size for s in sets}
        if len(sides) != 1:
            raise ValueError(f"cannot join face sets cropped at different sides {sorted(sides)}")
        cat = lambda name: np.concatenate([getattr(s, name) for s in sets])  # noqa: E731
        return FaceSet(cat("images"), cat("keypoints"), cat("rects"), cat("border_codes"), cat("pads"),
                       sum((s.names for s in sets), []), sum((s.groups for s in sets), []),
                       sum((s.skipped for s in sets), []),
                       None if all(s.weights is None for s in sets)
                       else np.concatenate([s.label_weights for s in sets]))
