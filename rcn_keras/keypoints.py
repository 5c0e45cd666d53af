"""Keypoint schemes as data (`KeypointScheme`: point count, names, mirror permutation, NME normalisers,
crop rule), the paper's two (5 and 68 points, docs/model.md 1.8, 7.2-7.4), the 49-point subset and the
5 points derived from the 68. Indices are 0-based. No TensorFlow here."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from rcn_keras.options import check_fields

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

# The face regions of the 68 iBUG points (0-based): where an error sits. The jaw is an open contour, in order.
REGIONS_68 = {"jaw": tuple(range(0, 17)), "brows": tuple(range(17, 27)), "nose": tuple(range(27, 36)),
              "eyes": tuple(range(36, 48)), "mouth": tuple(range(48, 68))}
# 49-point variant: drop the contour (points 1-17) and the inner-mouth corners (61, 65), 1-based.
POINTS_49 = [i for i in range(68) if i >= 17 and i not in (60, 64)]
# How the face crop is found from the keypoints (docs/model.md, 1.2-1.3): "points" = the tight box of
# all points made square (x 1.7 for the loose 160 crop, x 1.3 for the 80x80 face); "eyes_mouth" = MTFL's
# rule from 5 points in the order left eye, right eye, nose, left mouth, right mouth.
CROP_RULES = ("points", "eyes_mouth")
# The normaliser every scheme has: the square root of the area of the ground-truth points' tight box.
# Fewer than BOX_MIN_POINTS points span no area: there it is the face box side, which is the crop side
# over the stage-B enlargement (1.3), i.e. FACE_SIDE_IN_CROP in crop units (such faces crop from a box).
BOX_NORMALISER = "box"
BOX_MIN_POINTS = 3
FACE_SIDE_IN_CROP = 1 / 1.3
# Border code of a keypoint that is not annotated (COCO visibility 0): masked in the loss and the NME.
NOT_ANNOTATED = -1
# Border code of a keypoint annotated only through its group's mean: it holds that mean (e.g. MTFL's eye
# centre on each of the six eye points of a 68-point face, `partial_68`); the loss trains the mean of the
# group's soft-argmax points there (`rcn_keras.losses.PixelNLL` ``groups``), never the point alone.
GROUP_MEAN = -2


def is_annotated(codes) -> np.ndarray:
    """Whether each point of ``codes`` (border codes) carries its own true position (codes 0-4)."""
    return np.asarray(codes) >= 0


@dataclasses.dataclass(frozen=True)
class KeypointScheme:
    """What a set of K keypoints means to training and evaluation, as data (JSON round-trippable).

    ``flip``: point i of a mirrored face is point ``flip[i]`` of the original (``None``: the scheme
    has no mirror, and horizontal flips are refused). ``normalisers``: name -> (left indices, right
    indices) whose centres give the normalising distance of the NME; ``"box"`` (the square root of the
    area of the points' tight box) is always available. ``default_normaliser``: the NME's headline
    one (default: the first listed, else ``"box"``). ``crop``: one of `CROP_RULES`. ``mask_outside``:
    points that leave the 80x80 crop after jitter do not train. ``names``: optional point names.
    """

    num_keypoints: int
    name: str = "custom"
    names: tuple[str, ...] | None = None
    flip: tuple[int, ...] | None = None
    normalisers: dict = dataclasses.field(default_factory=dict)
    default_normaliser: str | None = None
    crop: str = "points"
    mask_outside: bool = True

    def __post_init__(self):
        k = self.num_keypoints
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"keypoint scheme: num_keypoints={k!r} must be a positive integer")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"keypoint scheme: name={self.name!r} must be a non-empty string")
        if self.names is not None:
            names = tuple(self.names)
            if len(names) != k or not all(isinstance(n, str) and n for n in names) or len(set(names)) != k:
                raise ValueError(f"keypoint scheme {self.name!r}: names must be {k} different non-empty strings "
                                 f"(one per point), got {len(names)}")
            object.__setattr__(self, "names", names)
        if self.flip is not None:
            flip = tuple(self.flip)
            if sorted(flip) != list(range(k)) or not all(isinstance(i, int) for i in flip):
                raise ValueError(f"keypoint scheme {self.name!r}: flip must be a permutation of 0..{k - 1} "
                                 f"(point i of the mirrored face is point flip[i]), got {list(self.flip)}")
            if any(flip[flip[i]] != i for i in range(k)):
                bad = next(i for i in range(k) if flip[flip[i]] != i)
                raise ValueError(f"keypoint scheme {self.name!r}: flip must pair points (mirroring twice is the "
                                 f"identity), but point {bad} -> {flip[bad]} -> {flip[flip[bad]]}")
            object.__setattr__(self, "flip", flip)
        if not isinstance(self.normalisers, dict):
            raise ValueError(f"keypoint scheme {self.name!r}: normalisers must map a name to [left, right] "
                             f"index lists, got {self.normalisers!r}")
        normalisers = {}
        for name, groups in self.normalisers.items():
            if name == BOX_NORMALISER:
                raise ValueError(f"keypoint scheme {self.name!r}: the normaliser name {name!r} is built in")
            try:
                left, right = (tuple(int(i) for i in g) for g in groups)
                ok = left and right and all(0 <= i < k for i in left + right)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"keypoint scheme {self.name!r}: normaliser {name!r} must be two non-empty lists "
                                 f"of point indices in 0..{k - 1}, got {groups!r}")
            normalisers[str(name)] = (left, right)
        object.__setattr__(self, "normalisers", normalisers)
        default = self.default_normaliser or next(iter(normalisers), BOX_NORMALISER)
        if default not in self.normaliser_names:
            raise ValueError(f"keypoint scheme {self.name!r}: default_normaliser={default!r} is not allowed; "
                             f"allowed: {self.normaliser_names}")
        object.__setattr__(self, "default_normaliser", default)
        if self.crop not in CROP_RULES:
            raise ValueError(f"keypoint scheme {self.name!r}: crop={self.crop!r} is not allowed; allowed: {CROP_RULES}")
        if self.crop == "eyes_mouth" and k != 5:
            raise ValueError(f"keypoint scheme {self.name!r}: crop='eyes_mouth' needs 5 points, not {k}")
        if not isinstance(self.mask_outside, bool):
            raise ValueError(f"keypoint scheme {self.name!r}: mask_outside must be true or false")

    @property
    def normaliser_names(self) -> list[str]:
        """Every normaliser of the scheme: the named ones, then ``"box"``."""
        return [*self.normalisers, BOX_NORMALISER]

    def check_normaliser(self, normaliser: str | None) -> str:
        """``normaliser`` (``None``: the default) if the scheme has it, else a ValueError listing them."""
        name = normaliser or self.default_normaliser
        if name not in self.normaliser_names:
            raise ValueError(f"normaliser {name!r} is not available for keypoint scheme {self.name!r}; "
                             f"allowed: {self.normaliser_names}")
        return name

    @property
    def is_standard(self) -> bool:
        """Whether this is one of the paper's schemes (`SCHEMES`), whose crops the detectors are calibrated to."""
        return SCHEMES.get(self.name) == self

    def to_dict(self) -> dict:
        return {"num_keypoints": self.num_keypoints, "name": self.name,
                "names": list(self.names) if self.names else None,
                "flip": list(self.flip) if self.flip is not None else None,
                "normalisers": {n: [list(l), list(r)] for n, (l, r) in self.normalisers.items()},
                "default_normaliser": self.default_normaliser, "crop": self.crop, "mask_outside": self.mask_outside}

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointScheme":
        if not isinstance(d, dict):
            raise ValueError(f"a keypoint scheme is a JSON object, got {type(d).__name__}")
        check_fields(cls, d, "keypoint scheme field")
        if "num_keypoints" not in d:
            raise ValueError("a keypoint scheme needs num_keypoints")
        return cls(**d)

    def subset(self, indices: list[int], name: str) -> "KeypointScheme":
        """The scheme of the points ``indices`` of this one (flip and normalisers kept where every point
        they use is in the subset)."""
        pos = {int(i): j for j, i in enumerate(indices)}
        if len(pos) != len(indices) or not all(0 <= i < self.num_keypoints for i in pos):
            raise ValueError(f"subset indices must be different points in 0..{self.num_keypoints - 1}")
        flip = None
        if self.flip is not None and all(self.flip[i] in pos for i in pos):
            flip = [pos[self.flip[i]] for i in indices]
        norms = {n: ([pos[i] for i in l], [pos[i] for i in r]) for n, (l, r) in self.normalisers.items()
                 if all(i in pos for i in l + r)}
        names = [self.names[i] for i in indices] if self.names else None
        return KeypointScheme(len(indices), name, names, flip, norms, crop="points",
                              mask_outside=self.mask_outside)


FACE_5 = KeypointScheme(5, "face5", ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth"), tuple(FLIP_5),
                        {"eye_centres": ([0], [1])}, crop="eyes_mouth", mask_outside=False)
FACE_68 = KeypointScheme(68, "face68", None, tuple(FLIP_68), {
    "corner_midpoints": ([36, 39], [42, 45]),  # the authors' 300W normaliser
    "outer_corners": ([36], [45]),              # inter-ocular (IO) of the 300W challenge
    "pupils": (list(range(36, 42)), list(range(42, 48))),  # inter-pupil from the 6 eye points
}, crop="points", mask_outside=True)
SCHEMES = {s.name: s for s in (FACE_5, FACE_68)}


def standard_scheme(num_keypoints: int) -> KeypointScheme:
    """The paper's scheme for 5 or 68 points; for any other count a scheme without a mirror, with the
    ``"box"`` normaliser and crops from the points."""
    for scheme in SCHEMES.values():
        if scheme.num_keypoints == num_keypoints:
            return scheme
    return KeypointScheme(num_keypoints)


def as_scheme(scheme, num_keypoints: int | None = None) -> KeypointScheme:
    """A `KeypointScheme` from a scheme, its dict, a scheme name (`SCHEMES`), a JSON file path, or
    ``None`` (the `standard_scheme` of ``num_keypoints``); a given ``num_keypoints`` must agree."""
    if scheme is None:
        if num_keypoints is None:
            raise ValueError("a keypoint scheme or a keypoint count is needed")
        return standard_scheme(num_keypoints)
    if isinstance(scheme, str) and scheme in SCHEMES:
        scheme = SCHEMES[scheme]
    elif isinstance(scheme, (str, os.PathLike)):
        scheme = load_scheme(scheme)
    elif isinstance(scheme, dict):
        scheme = KeypointScheme.from_dict(scheme)
    elif not isinstance(scheme, KeypointScheme):
        raise ValueError(f"not a keypoint scheme: {scheme!r}")
    if num_keypoints is not None and scheme.num_keypoints != num_keypoints:
        raise ValueError(f"keypoint scheme {scheme.name!r} has {scheme.num_keypoints} points but the model "
                         f"predicts {num_keypoints}")
    return scheme


def load_scheme(path: str | os.PathLike) -> KeypointScheme:
    """A scheme from a JSON file; errors are one line that names the file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: keypoint scheme file not found (or a name other than {', '.join(SCHEMES)})")
    try:
        return KeypointScheme.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _five_from_68() -> np.ndarray:
    m = np.zeros((5, 68))
    m[0, 36:42] = m[1, 42:48] = 1 / 6
    m[2, 30] = m[3, 48] = m[4, 54] = 1.0
    return m


# The paper's 5 points as weights over the 68 iBUG points (rows: left eye, right eye, nose, mouth corners).
FIVE_FROM_68 = _five_from_68()
# The 68 points whose mean is one of the 5 (the eyes' six points each): the loss groups of `partial_68`.
GROUPS_68 = tuple(tuple(int(i) for i in np.flatnonzero(row)) for row in FIVE_FROM_68 if np.count_nonzero(row) > 1)


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (scale, rotation, shift) taking points ``src`` (M, 2) onto ``dst``, as a
    2x3 matrix ``A``: dst ~ A[:, :2] @ p + A[:, 2]."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    den = max(float((s * s).sum()), 1e-12)
    a = (s * d).sum() / den
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / den
    linear = np.array([[a, -b], [b, a]])
    return np.concatenate([linear, (md - linear @ ms)[:, None]], axis=1)


def fit_similarity(src: np.ndarray, dst: np.ndarray):
    """`similarity_matrix` as a function of points (..., 2)."""
    matrix = similarity_matrix(src, dst)
    return lambda points: np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def place_shape(shape: np.ndarray, points5: np.ndarray) -> np.ndarray:
    """A 68-point ``shape`` moved by the similarity that best takes its 5 derived points onto ``points5``."""
    shape = np.asarray(shape, np.float64)
    return fit_similarity(FIVE_FROM_68 @ shape, np.asarray(points5, np.float64))(shape)


def partial_68(points5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A face with only the paper's 5 points as a 68-point face (issue 32): (68, 2) points and border codes.
    Nose tip and mouth corners are points 31, 49, 55 (1-based) themselves; each eye centre is held by the
    eye's six points as their group mean (`GROUP_MEAN`); every other point is `NOT_ANNOTATED`."""
    p5 = np.asarray(points5, np.float64)
    if p5.shape != (5, 2):
        raise ValueError(f"partial_68 needs the 5 points (5, 2), got shape {p5.shape}")
    points = np.zeros((68, 2))
    codes = np.full(68, NOT_ANNOTATED, np.int32)
    for row, weights in zip(p5, FIVE_FROM_68):
        members = np.flatnonzero(weights)
        points[members] = row
        codes[members] = GROUP_MEAN if len(members) > 1 else 0
    return points, codes


def afw5_from_68(points68: np.ndarray) -> np.ndarray:
    """Approximate the paper's 5 AFW points from 68 iBUG points (docs/model.md, 7.4; `FIVE_FROM_68`).

    Eye centres = mean of the 6 points of each eye (pts 37-42, 43-48), nose tip = pt 31,
    mouth corners = pts 49 and 55 (1-based). Order: left eye, right eye, nose, left mouth, right mouth.
    """
    p = np.asarray(points68)
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"afw5_from_68 needs (..., 68, 2) points, got shape {p.shape}")
    return np.einsum("fk,...kc->...fc", FIVE_FROM_68, p).astype(np.result_type(p.dtype, np.float32))
