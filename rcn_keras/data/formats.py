"""Readers and writers for the real annotation formats: 300W `.pts`, MTFL text lists, AFW `anno.mat`,
and images. Every error names the file (and line) it comes from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rcn_keras.files import atomic_write_text

PathLike = str | os.PathLike


class DataFormatError(ValueError):
    """A data file that cannot be read as its format says; the message starts with ``file[:line]:``."""

    def __init__(self, path: PathLike, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


def _parse_floats(path, lineno: int, fields: list[str], what: str) -> list[float]:
    values = []
    for field in fields:
        try:
            v = float(field)
        except ValueError:
            raise DataFormatError(path, f"{what}: {field!r} is not a number", lineno) from None
        if not math.isfinite(v):
            raise DataFormatError(path, f"{what}: {field!r} is not a finite number", lineno)
        values.append(v)
    return values


def read_pts(path: PathLike, n_points: int | None = None) -> np.ndarray:
    """Read a 300W/iBUG `.pts` file as an (N, 2) float64 array of (x, y), **as written** (1-based).

    Accepts the standard ``version: 1 / n_points: N / { ... }`` layout and a headerless file of
    "x y" lines. Raises `DataFormatError` with the line number on any malformed content.
    """
    path = pathlib.Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except UnicodeDecodeError:
        raise DataFormatError(path, "not a text .pts file") from None
    declared, points, in_braces, seen_brace = None, [], False, False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        low = line.lower()
        if low.startswith("version"):
            continue
        if low.startswith("n_points"):
            try:
                declared = int(line.split(":", 1)[1])
            except (IndexError, ValueError):
                raise DataFormatError(path, f"bad n_points line {line!r}", lineno) from None
            continue
        if line == "{":
            in_braces = seen_brace = True
            continue
        if line == "}":
            in_braces = False
            continue
        if seen_brace and not in_braces:
            raise DataFormatError(path, f"unexpected content after '}}': {line!r}", lineno)
        fields = line.split()
        if len(fields) != 2:
            raise DataFormatError(path, f"expected 'x y', got {line!r}", lineno)
        points.append(_parse_floats(path, lineno, fields, "coordinate"))
    if in_braces:
        raise DataFormatError(path, "missing closing '}'")
    if declared is not None and declared != len(points):
        raise DataFormatError(path, f"header says n_points {declared} but {len(points)} points follow")
    if n_points is not None and len(points) != n_points:
        raise DataFormatError(path, f"expected {n_points} points, found {len(points)}")
    if not points:
        raise DataFormatError(path, "no points")
    return np.asarray(points, dtype=np.float64)


def write_pts(path: PathLike, points: np.ndarray) -> None:
    """Write (N, 2) points in the standard `.pts` layout, atomically."""
    points = np.asarray(points, dtype=np.float64)
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in points)
    text = f"version: 1\nn_points:  {len(points)}\n{{\n{body}\n}}\n"
    atomic_write_text(path, text)


@dataclasses.dataclass(frozen=True)
class MTFLRecord:
    """One line of MTFL's training.txt / testing.txt: image path (``/`` separators), 5 (x, y) points,
    and the 4 attribute codes (gender, smile, glasses, pose; 1-based)."""

    image: str
    keypoints: np.ndarray
    attributes: tuple[int, ...]
    line: int


def read_mtfl_list(path: PathLike) -> list[MTFLRecord]:
    """Read an MTFL list: ``path x1..x5 y1..y5 gender smile glasses pose`` per line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    records = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) < 11:
            raise DataFormatError(path, f"expected an image path, 10 coordinates and 4 attributes; "
                                        f"got {len(fields)} fields", lineno)
        values = _parse_floats(path, lineno, fields[1:11], "coordinate")
        attrs = tuple(int(a) for a in _parse_floats(path, lineno, fields[11:15], "attribute"))
        kpts = np.stack([values[:5], values[5:10]], axis=-1)
        records.append(MTFLRecord(fields[0].replace("\\", "/"), kpts, attrs, lineno))
    if not records:
        raise DataFormatError(path, "no records")
    return records


@dataclasses.dataclass(frozen=True)
class AFWFace:
    """One face of AFW's anno.mat: image name, box (x1, y1, x2, y2), pose (yaw, pitch, roll) and
    the 6 points (left eye, right eye, nose, left mouth, mouth centre, right mouth), NaN if missing."""

    image: str
    box: tuple[float, float, float, float]
    pose: tuple[float, float, float]
    points6: np.ndarray

    @property
    def points5(self) -> np.ndarray:
        """The paper's 5 points: the mouth centre dropped (docs/model.md 1.2)."""
        return self.points6[[0, 1, 2, 3, 5]]


def read_afw_anno(path: PathLike) -> list[AFWFace]:
    """Read AFW's MATLAB v7.3 ``anno.mat`` (HDF5) as the authors' create_raw_afw does."""
    import h5py

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(path, f"not an HDF5 (MATLAB v7.3) file: {exc}") from None
    faces = []
    with f:
        if "anno" not in f:
            raise DataFormatError(path, f"no 'anno' variable (found {sorted(f.keys())})")
        anno = f["anno"]
        if anno.ndim != 2 or anno.shape[0] != 4:
            raise DataFormatError(path, f"'anno' should be a 4 x N cell array, got shape {anno.shape}")
        for i in range(anno.shape[1]):
            try:
                name = "".join(chr(int(c)) for c in np.asarray(f[anno[0, i]]).ravel())
                boxes, poses, lms = f[anno[1, i]], f[anno[2, i]], f[anno[3, i]]
                for j in range(len(boxes)):
                    b = np.asarray(f[boxes[j][0]], dtype=np.float64)
                    p = np.asarray(f[poses[j][0]], dtype=np.float64).ravel()
                    lm = np.asarray(f[lms[j][0]], dtype=np.float64)
                    if lm.shape != (2, 6):
                        raise ValueError(f"landmarks of face {j} have shape {lm.shape}, expected (2, 6)")
                    faces.append(AFWFace(name, (b[0, 0], b[1, 0], b[0, 1], b[1, 1]), tuple(p[:3]), lm.T.copy()))
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                raise DataFormatError(path, f"entry {i + 1}: {exc}") from None
    return faces


HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_8_bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image as 8-bit "L", scaled by its bit depth (16-bit
    0-65535, float 0-1 when it fits, else by its maximum), never clipped to near-white."""
    arr = np.asarray(im, dtype=np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if im.mode == "F" and top <= 1.0:
        scale = 255.0
    elif top <= 255.0 and im.mode == "F":
        scale = 1.0
    elif top <= 65535.0:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / top
    return Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), "L")


def load_image(path: PathLike, mode: str = "RGB", upright: bool = False) -> np.ndarray:
    """Decode an image file to a uint8 array (H, W, 3) for "RGB" or (H, W) for "L". Any bit depth
    PIL reads is scaled to 8 bits (a 16-bit PNG keeps its contrast); images larger than PIL's
    decompression-bomb limit are refused. ``upright``: apply the EXIF orientation (a phone photo as it
    is displayed); datasets keep the stored pixels, which their annotations refer to."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if upright:
                im = ImageOps.exif_transpose(im)
            if im.mode in HIGH_DEPTH_MODES:
                im = _to_8_bit(im)
            return np.asarray(im.convert(mode))
    except Image.DecompressionBombError:
        raise DataFormatError(path, f"image too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataFormatError(path, f"cannot decode image ({exc})") from None
