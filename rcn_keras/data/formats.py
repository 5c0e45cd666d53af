"""Readers and writers for the real annotation formats: 300W `.pts`, MTFL text lists, AFW `anno.mat`,
and images. Every error names the file (and line) it comes from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import warnings

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
        lines = path.read_text(encoding="utf-8-sig", errors="strict").splitlines()  # a BOM is not data
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


def read_mtfl_list(path: PathLike, bad_lines: list[str] | None = None) -> list[MTFLRecord]:
    """Read an MTFL list: ``path x1..x5 y1..y5 gender smile glasses pose`` per line. A malformed line
    raises a `DataFormatError` naming it, or, when ``bad_lines`` is a list, is skipped and its error
    line appended there."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    records = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        try:
            if len(fields) < 11:
                raise DataFormatError(path, f"expected an image path, 10 coordinates and 4 attributes; "
                                            f"got {len(fields)} fields", lineno)
            values = _parse_floats(path, lineno, fields[1:11], "coordinate")
            attrs = tuple(int(a) for a in _parse_floats(path, lineno, fields[11:15], "attribute"))
        except DataFormatError as exc:
            if bad_lines is None:
                raise
            bad_lines.append(str(exc))
            continue
        kpts = np.stack([values[:5], values[5:10]], axis=-1)
        records.append(MTFLRecord(fields[0].replace("\\", "/"), kpts, attrs, lineno))
    if not records and not bad_lines:
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
    return decode_image(path, mode, upright)[0]


def decode_image(path: PathLike, mode: str = "RGB", upright: bool = False,
                 min_side: int | None = None) -> tuple[np.ndarray, float, tuple[int, int]]:
    """`load_image`, optionally reduced: with ``min_side``, a JPEG is decoded at the smallest of its DCT
    scales (1/2, 1/4, 1/8) whose long side is at least ``min_side`` (several times faster for a
    large photo; other formats decode whole). Returns (pixels, original pixels per decoded pixel,
    (width, height) of the whole image as returned, i.e. after ``upright``)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "image file not found")
    limit = 2 * Image.MAX_IMAGE_PIXELS  # PIL warns (from its own source line) at half this and refuses above it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            full = im.size
            if min_side is not None and max(full) > min_side:
                k = min_side / max(full)
                im.draft(im.mode if im.mode in ("L", "RGB") else "RGB",
                         (max(1, math.ceil(full[0] * k)), max(1, math.ceil(full[1] * k))))
            im.load()
            scale = full[0] / im.size[0]
            if upright:
                turned = ImageOps.exif_transpose(im)
                if turned.size != im.size:  # a quarter turn: the whole image turned as well
                    full = full[::-1]
                im = turned
            if im.mode in HIGH_DEPTH_MODES:
                im = _to_8_bit(im)
            return np.asarray(im.convert(mode)), scale, full
    except Image.DecompressionBombError:
        raise DataFormatError(path, f"image too large (over {limit:,} pixels: at most that many are read)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataFormatError(path, f"cannot decode image ({exc})") from None


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One face of a generic keypoint file: image path (relative to the file's folder unless absolute),
    K points in **edge coordinates** (pixel j spans [j, j + 1)), which are annotated, an optional face
    box (x, y, w, h) and where it was read (``source``, ``line`` or the COCO annotation index)."""

    image: str
    keypoints: np.ndarray
    annotated: np.ndarray
    box: tuple[float, float, float, float] | None
    source: str
    line: int | None = None
    ref: str = ""

    @property
    def where(self) -> str:
        """``file:line`` (CSV) or ``file (annotations[i])`` (COCO), for error messages."""
        return f"{self.source}:{self.line}" if self.line is not None else f"{self.source} ({self.ref})"


BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")


def _check_box_values(path, values: list[float], line: int | None = None, ref: str = ""):
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise DataFormatError(path, f"{ref + ': ' if ref else ''}face box must be x, y, w, h with a positive "
                                    f"width and height, got {values}", line)
    return tuple(values)


def read_keypoint_csv(path: PathLike) -> list[Annotation]:
    """Read a CSV of faces: ``image, x1, y1, ..., xK, yK`` per row, coordinates as **0-based pixel
    centres**; an empty x and y pair marks a point that is not annotated. An optional header row names
    the columns; there, columns ``box_x, box_y, box_w, box_h`` give a face box (the crop is then taken
    from the box). Every row must have the same K."""
    import csv

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFormatError(path, f"not a text CSV file ({exc})") from None
    numbered = [(i, [f.strip() for f in r]) for i, r in enumerate(rows, start=1) if any(f.strip() for f in r)]
    if not numbered:
        raise DataFormatError(path, "no rows")
    box_cols: list[int] = []
    first_line, first = numbered[0]
    point_cols = list(range(1, len(first)))
    try:
        float(first[1]) if len(first) > 1 else float("x")
        header = False
    except ValueError:
        header = True
    if header:
        names = [n.lower() for n in first]
        box_cols = [names.index(c) for c in BOX_COLUMNS if c in names]
        if box_cols and len(box_cols) != 4:
            raise DataFormatError(path, f"the header names some but not all of {', '.join(BOX_COLUMNS)}", first_line)
        point_cols = [j for j in range(1, len(first)) if j not in box_cols]
        numbered = numbered[1:]
    if not point_cols or len(point_cols) % 2:
        raise DataFormatError(path, f"expected an image column and x, y pairs, got {len(point_cols)} coordinate "
                                    f"columns", first_line)
    k = len(point_cols) // 2
    out = []
    for line, fields in numbered:
        width = len(first)
        if len(fields) != width:
            raise DataFormatError(path, f"expected {width} fields (image, {k} x, y pairs"
                                        f"{', box' if box_cols else ''}), got {len(fields)}", line)
        if not fields[0]:
            raise DataFormatError(path, "empty image path", line)
        coords = [fields[j] for j in point_cols]
        annotated = np.array([bool(coords[2 * i] or coords[2 * i + 1]) for i in range(k)])
        if any(bool(coords[2 * i]) != bool(coords[2 * i + 1]) for i in range(k)):
            raise DataFormatError(path, "a point has an x without a y (or a y without an x)", line)
        values = _parse_floats(path, line, [c if c else "0" for c in coords], "coordinate")
        points = np.asarray(values, np.float64).reshape(k, 2) + 0.5
        box = None
        if box_cols and any(fields[j] for j in box_cols):
            box = _check_box_values(path, _parse_floats(path, line, [fields[j] for j in box_cols], "box"), line)
        if not annotated.any() and box is None:
            raise DataFormatError(path, "no annotated point and no box: the face cannot be placed (leave the row "
                                        "out, or give box_x, box_y, box_w, box_h)", line)
        out.append(Annotation(fields[0].replace("\\", "/"), points, annotated, box, str(path), line))
    if not out:
        raise DataFormatError(path, "no rows after the header")
    return out


KEYPOINT_CSV_HEADER = "image,x1,y1"  # how a keypoint CSV written by `write_keypoint_csv` starts


def write_keypoint_csv(path: PathLike, images: list[str], points: np.ndarray) -> None:
    """Write one face per image as a keypoint CSV (`read_keypoint_csv`: a header, then ``image, x1, y1,
    ...`` as 0-based pixel centres), atomically."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    k = np.asarray(points).shape[1]
    writer.writerow(["image"] + [f"{c}{i}" for i in range(1, k + 1) for c in "xy"])
    for image, p in zip(images, points):
        writer.writerow([image] + [f"{v:.2f}" for v in np.asarray(p, np.float64).reshape(-1)])
    atomic_write_text(path, buf.getvalue())


def is_keypoint_csv(path: PathLike) -> bool:
    """Whether ``path`` starts as a keypoint CSV `write_keypoint_csv` writes (what an output may replace)."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.readline().startswith(KEYPOINT_CSV_HEADER)


def read_coco_keypoints(path: PathLike) -> tuple[list[Annotation], list[str] | None]:
    """Read a COCO keypoints JSON: ``images`` (id, file_name), ``annotations`` (image_id, ``keypoints``
    [x, y, v] * K, optional ``bbox`` x, y, w, h) and optionally ``categories[0].keypoints`` (the point
    names). Coordinates are 0-based pixel centres; ``v = 0`` marks a point that is not annotated;
    crowd annotations and those without any annotated point are left out. Returns the annotations and
    the point names (``None`` when the file has none)."""
    import json

    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON ({exc.msg})", exc.lineno) from None
    except UnicodeDecodeError:
        raise DataFormatError(path, "not a text JSON file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataFormatError(path, "a COCO keypoints file needs 'images' and 'annotations' lists")
    files = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DataFormatError(path, f"images[{i}]: needs an 'id' and a 'file_name'")
        if im["id"] in files:
            first = next(j for j, other in enumerate(data["images"]) if other.get("id") == im["id"])
            raise DataFormatError(path, f"images[{i}]: id {im['id']!r} is also images[{first}]'s: each image needs "
                                        f"its own id (annotations name their image by it)")
        files[im["id"]] = im["file_name"]
    names = None
    cats = data.get("categories")
    if isinstance(cats, list) and cats and isinstance(cats[0], dict) and isinstance(cats[0].get("keypoints"), list):
        names = [str(n) for n in cats[0]["keypoints"]]
    out, k = [], len(names) if names else None
    for i, ann in enumerate(data["annotations"]):
        ref = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataFormatError(path, f"{ref}: not an object")
        if ann.get("iscrowd"):
            continue
        if ann.get("image_id") not in files:
            raise DataFormatError(path, f"{ref}: image_id {ann.get('image_id')!r} is not in 'images'")
        kp = ann.get("keypoints")
        if not isinstance(kp, list) or not kp or len(kp) % 3:
            raise DataFormatError(path, f"{ref}: 'keypoints' must be a list of x, y, v triples")
        k = k or len(kp) // 3
        if len(kp) // 3 != k:
            raise DataFormatError(path, f"{ref}: {len(kp) // 3} keypoints, but "
                                        f"{'categories[0] names' if names else 'the first annotation has'} {k}")
        values = np.asarray(_parse_floats(path, None, [str(v) for v in kp], f"{ref}: keypoint"), np.float64)
        triples = values.reshape(k, 3)
        if not np.isin(triples[:, 2], (0, 1, 2)).all():
            raise DataFormatError(path, f"{ref}: visibility flags must be 0, 1 or 2")
        annotated = triples[:, 2] > 0
        if not annotated.any():
            continue
        box = None
        if ann.get("bbox") is not None:
            bbox = ann["bbox"]
            if not isinstance(bbox, list):
                raise DataFormatError(path, f"{ref}: 'bbox' must be [x, y, w, h]")
            box = _check_box_values(path, _parse_floats(path, None, [str(v) for v in bbox], f"{ref}: bbox"),
                                    ref=ref)
        out.append(Annotation(files[ann["image_id"]], triples[:, :2] + 0.5, annotated, box, str(path), None, ref))
    if not out:
        raise DataFormatError(path, "no annotations with keypoints")
    return out, names
