"""Keypoint schemes: the mirror permutations, the normalising distances, the 49-point subset and the
5 points derived from the 68 (docs/model.md, 1.8, 7.2-7.4). Indices are 0-based."""

from __future__ import annotations

import numpy as np

# Horizontal-flip permutations: point i of a mirrored face is point FLIP[i] of the original.
FLIP_5 = [1, 0, 2, 4, 3]


def _flip_68() -> list[int]:
    perm = list(range(68))
    pairs = [(i, 16 - i) for i in range(8)]
    pairs += [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22), (31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


FLIP_68 = _flip_68()

# name -> (left indices, right indices) averaged into the two eye points, per keypoint count.
NORMALISERS = {
    5: {"eye_centres": ([0], [1])},
    68: {
        "corner_midpoints": ([36, 39], [42, 45]),  # the authors' 300W normaliser
        "outer_corners": ([36], [45]),              # inter-ocular (IO) of the 300W challenge
        "pupils": (list(range(36, 42)), list(range(42, 48))),  # inter-pupil from the 6 eye points
    },
}
DEFAULT_NORMALISER = {5: "eye_centres", 68: "corner_midpoints"}
# 49-point variant: drop the contour (points 1-17) and the inner-mouth corners (61, 65), 1-based.
POINTS_49 = [i for i in range(68) if i >= 17 and i not in (60, 64)]


def flip_permutation(num_keypoints: int) -> list[int]:
    """The mirror permutation for 5 or 68 keypoints."""
    if num_keypoints == 5:
        return FLIP_5
    if num_keypoints == 68:
        return FLIP_68
    raise ValueError(f"horizontal flip needs 5 or 68 keypoints (a known mirror order), got {num_keypoints}")


def normaliser_names(num_keypoints: int) -> list[str]:
    """The normalisers defined for a keypoint count, the default first."""
    return list(NORMALISERS.get(num_keypoints, {}))


def afw5_from_68(points68: np.ndarray) -> np.ndarray:
    """Approximate the paper's 5 AFW points from 68 iBUG points (docs/model.md, 7.4).

    Eye centres = mean of the 6 points of each eye (pts 37-42, 43-48), nose tip = pt 31,
    mouth corners = pts 49 and 55 (1-based). Order: left eye, right eye, nose, left mouth, right mouth.
    """
    p = np.asarray(points68)
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"afw5_from_68 needs (..., 68, 2) points, got shape {p.shape}")
    return np.stack([p[..., 36:42, :].mean(-2), p[..., 42:48, :].mean(-2), p[..., 30, :],
                     p[..., 48, :], p[..., 54, :]], axis=-2)
