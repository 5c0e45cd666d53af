"""Aligned face crops: the similarity transform (scale, rotation, shift) that takes a face's points onto a
template's, and the image warped by it. What a face recogniser wants as input (InsightFace / ArcFace:
5 points onto a 112x112 template), or a face chip like dlib's ``get_face_chip`` (our 68-point mean shape,
a size and a padding), from the points of any of our models (5 or 68; a 68-point face gives its 5 by
`keypoints.FIVE_FROM_68`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import numpy as np

from rcn_keras.keypoints import FIVE_FROM_68, similarity_matrix

# InsightFace's ArcFace template (`norm_crop`, 112 x 112 pixels; pixel-centre coordinates): the eye centres,
# the nose tip and the mouth corners, image-left first, as its recognition models were trained on.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]])
TEMPLATES = ("arcface", "mean68", "mean5")
MEAN_FACE_FILE = pathlib.Path(__file__).parent / "weights" / "mean_face.json"
DEFAULT_PADDING = 0.25  # as dlib's get_face_chip


@functools.lru_cache(maxsize=None)
def mean_face() -> dict:
    """`tools/mean_face.py`'s file: the 68-point mean shape in 2D (``points_2d``) and 3D (``points_3d``)."""
    return json.loads(MEAN_FACE_FILE.read_text())


@dataclasses.dataclass(frozen=True)
class Template:
    """Where a face's points go in an aligned crop of ``size`` x ``size`` pixels: ``points`` (5 or 68, x, y
    in pixel-centre coordinates of the crop)."""

    name: str
    size: int
    points: np.ndarray

    @property
    def num_points(self) -> int:
        return len(self.points)


def template(name: str = "arcface", size: int | None = None, padding: float = DEFAULT_PADDING) -> Template:
    """A named template: "arcface" (InsightFace's 5 points; ``size`` defaults to 112, other sizes scale it),
    "mean68" (our 68-point mean shape, its landmark box centred with ``padding`` x its side on each side,
    as dlib's face chips; ``size`` defaults to 150) or "mean5" (the same placed by its 5 derived points)."""
    if name not in TEMPLATES:
        raise ValueError(f"alignment template {name!r} is not known; known: {', '.join(TEMPLATES)}")
    default = 112 if name == "arcface" else 150
    size = default if size is None else size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= 4096:
        raise ValueError(f"aligned crop size {size!r} must be a whole number of pixels from 16 to 4096")
    if not 0 <= padding <= 2:
        raise ValueError(f"alignment padding {padding!r} must be from 0 to 2 (a fraction of the face's side)")
    if name == "arcface":
        return Template(name, int(size), (ARCFACE_112 + 0.5) * (size / 112) - 0.5)
    shape = np.asarray(mean_face()["points_2d"], np.float64)  # landmark box's longer side 1, top-left at 0
    side = size / (1 + 2 * padding)
    points = (shape - (shape.max(0) + shape.min(0)) / 2) * side + size / 2 - 0.5
    return Template(name, int(size), FIVE_FROM_68 @ points if name == "mean5" else points)


def as_template(spec) -> Template:
    """A `Template` from a Template, a template name, a crop size (arcface) or a dict of `template` options."""
    if isinstance(spec, Template):
        return spec
    if isinstance(spec, str):
        return template(spec)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return template("arcface", int(spec))
    if isinstance(spec, dict):
        return template(**spec)
    raise ValueError(f"align={spec!r}: give a crop size (arcface template), a template name "
                     f"({', '.join(TEMPLATES)}), a dict of template() options or a Template")


def matching_points(points: np.ndarray, target: Template) -> tuple[np.ndarray, np.ndarray]:
    """(face points, template points) of the same count: a 68-point face meets a 5-point template by
    `FIVE_FROM_68`, a 5-point face a 68-point template by the template's 5. One line for anything else
    or for a degenerate face (NaN, or every point at one place)."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) not in (5, 68):
        raise ValueError(f"aligning needs 5 or 68 points (x, y); got an array of shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("aligning needs finite points; this face has NaN or infinite ones")
    ours, theirs = points, target.points
    if len(points) != target.num_points:
        if len(points) == 68:
            ours = FIVE_FROM_68 @ points
        else:
            theirs = FIVE_FROM_68 @ target.points
    if np.ptp(ours, axis=0).max() < 1e-6:
        raise ValueError("aligning needs a face: all its points are at one place (a degenerate shape)")
    return ours, theirs


def alignment_matrix(points: np.ndarray, target="arcface") -> np.ndarray:
    """The 2x3 similarity taking image pixels (pixel-centre coordinates) to the aligned crop's, fitted by
    least squares from a face's points to the template's (`template`; a size means arcface)."""
    target = as_template(target)
    return similarity_matrix(*matching_points(points, target))


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``image`` (H, W[, C]) uint8 seen through the 2x3 ``matrix`` (image -> crop pixel centres) as a
    ``size`` x ``size`` crop, bilinear, black outside the image; the image's channels and dtype."""
    from PIL import Image

    image = np.asarray(image)
    linear, shift = matrix[:, :2], matrix[:, 2]
    inverse = np.linalg.inv(linear)
    # PIL maps each output pixel's corner coordinate (x, y) to input (a x + b y + c, d x + e y + f);
    # the half-pixel terms convert between its corner coordinates and our pixel centres.
    offset = inverse @ (-shift - 0.5) + 0.5
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(ch)).transform(
        (size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR, fillcolor=0)) for ch in channels]
    return out[0] if image.ndim == 2 else np.stack(out, axis=-1)


def align_face(image, points: np.ndarray, target="arcface", scale: float = 1.0) -> np.ndarray:
    """The aligned crop (uint8, the image's colour: grey stays grey) of the face with ``points`` (pixels of
    the original image) in ``image`` (a file, uint8 array or PIL image; ``scale``: original pixels per
    pixel of an array that is a reduced copy). ``target``: a `Template`, a template name or a crop size."""
    target = as_template(target)
    pixels = _pixels(image)
    matrix = alignment_matrix(np.asarray(points, np.float64), target)
    return warp(pixels, matrix @ reduced(scale), target.size)


def reduced(scale: float) -> np.ndarray:
    """3x3: pixel centres of a copy reduced ``scale`` times -> the original's (pixels scaled about the corner)."""
    return np.array([[scale, 0, (scale - 1) / 2], [0, scale, (scale - 1) / 2], [0, 0, 1]])


def _pixels(image) -> np.ndarray:
    """uint8 pixels of a file (upright, RGB, as `Landmarker.predict` reads it), a PIL image or a uint8 array."""
    from PIL import Image

    from rcn_keras.data.formats import decode_image

    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"align_face takes uint8 image arrays (0-255); got {image.dtype}")
        return image[..., :3] if image.ndim == 3 and image.shape[2] == 4 else image
    return decode_image(image, "RGB", upright=True)[0]
