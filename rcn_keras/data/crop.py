"""Stages A and B of the paper's preprocessing (docs/model.md 1.2, 1.3): keypoint-driven square boxes, the
loose 160x160 grey crop, the inner face rectangle, and 300W border codes / pad ratios.

Coordinates here are **continuous edge coordinates**: pixel j spans [j, j + 1), so a 0-based
pixel-centre coordinate c is c + 0.5 and a 1-based 300W `.pts` value v is v - 0.5. With this
convention resizing and warping move points exactly, and floor() gives the pixel that holds a point.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from rcn_keras.grid import MAP_SIZE

STAGE_A_SIZE = 160
MTFL_STAGE_A_RATIO = 1.25
MTFL_STAGE_B_RATIO = 3.8 / 4.0
W300_STAGE_A_ENLARGE = 1.7
W300_STAGE_B_ENLARGE = 1.3


def crop_side(input_size: int = MAP_SIZE) -> int:
    """The side of the loose (stage-A) crop a network of ``input_size`` pixels is cut from, in training and
    on photos: the paper's 160 for 80x80 crops, proportionally more for a larger input (the face keeps its
    share of the pixels)."""
    return STAGE_A_SIZE * input_size // MAP_SIZE


def _fit_axis(start: int, end: int, size: int) -> tuple[int, int, int]:
    """Shift [start, end) into [0, size) along one axis; returns (start, end, excess that did not fit)."""
    if start < 0:
        start, end = 0, end - start
    extra = 0
    if end > size:
        extra = end - size
        if extra <= start:
            start, extra = start - extra, 0
        else:
            extra, start = extra - start, 0
        end = size
    return start, end, extra


def _fit_square_in_image(xs: int, ys: int, xe: int, ye: int, width: int, height: int):
    """Shift a square box into the image; if it is larger than an axis, shrink it to stay square."""
    xs, xe, x_extra = _fit_axis(xs, xe, width)
    ys, ye, y_extra = _fit_axis(ys, ye, height)
    if x_extra > 0 and y_extra > 0:
        m = min(x_extra, y_extra)
        x_extra, y_extra = x_extra - m, y_extra - m
    if x_extra > 0:
        ys, ye = ys + math.ceil(x_extra / 2), ye - x_extra // 2
    if y_extra > 0:
        xs, xe = xs + math.ceil(y_extra / 2), xe - y_extra // 2
    return xs, ys, xe - xs


def box_from_5_points(points5: np.ndarray, width: int, height: int, dist_ratio: float) -> tuple[int, int, int]:
    """`detect_face_by_kpt` (docs/model.md 1.2): square box (x, y, side) from eyes and mouth corners, kept inside
    the image. The nose (index 2) is not used."""
    p = np.asarray(points5, dtype=np.float64)
    le, re, lm, rm = p[0], p[1], p[3], p[4]
    eye_dist = np.hypot(*(re - le))
    mouth_eye = np.hypot(*((le + re) / 2 - (lm + rm) / 2))
    four = np.stack([le, re, lm, rm])
    min_x, max_x = int(four[:, 0].min()), int(four[:, 0].max())
    min_y, max_y = int(four[:, 1].min()), int(four[:, 1].max())
    dx, dy = max_x - min_x, max_y - min_y
    if dy < dx:
        min_y, max_y = min_y - math.ceil((dx - dy) / 2), max_y + (dx - dy) // 2
    else:
        min_x, max_x = min_x - math.ceil((dy - dx) / 2), max_x + (dy - dx) // 2
    d = int(max(eye_dist, mouth_eye) * dist_ratio)
    return _fit_square_in_image(min_x - d, min_y - d, max_x + d, max_y + d, width, height)


def box_from_all_points(points: np.ndarray, enlarge: float) -> tuple[int, int, int]:
    """300W box (docs/model.md 1.2 steps 2-4): tight integer box, made square, enlarged by ``enlarge``.

    The result may leave the image; the crop then zero-pads.
    """
    p = np.asarray(points, dtype=np.float64)
    xs, xe = math.floor(p[:, 0].min()), math.ceil(p[:, 0].max())
    ys, ye = math.floor(p[:, 1].min()), math.ceil(p[:, 1].max())
    w, h = xe - xs, ye - ys
    if w < h:
        xs, xe = xs - math.ceil((h - w) / 2), xe + (h - w) // 2
    elif w > h:
        ys, ye = ys - math.ceil((w - h) / 2), ye + (w - h) // 2
    shift = (enlarge - 1.0) / 2.0 * (xe - xs)
    nxs, nxe = math.floor(xs - shift), math.ceil(xe + shift)
    nys = math.floor(ys - shift)
    return nxs, nys, nxe - nxs


def border_codes(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """`get_border_mask` (docs/model.md 1.2 step 6): per point +1 left, +2 top, +3 right, +4 bottom, summed.

    The sum is the authors' quirk (left + top reads as "right"); we keep it for faithful scoring.
    """
    p = np.asarray(points, dtype=np.float64)
    codes = (p[:, 0] < 10) * 1 + (p[:, 1] < 10) * 2 + (width - p[:, 0] <= 3) * 3 + (height - p[:, 1] <= 3) * 4
    return codes.astype(np.int32)


def crop_square(image: np.ndarray, box: tuple[int, int, int], size: int = STAGE_A_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box`` = (x, y, side) out of an RGB or grey image (zero padding outside it), resize to
    ``size`` with Lanczos, convert to grey (0.299 R + 0.587 G + 0.114 B).

    Returns the uint8 (size, size) crop and the pad ratios [left, top, right, bottom] / side.
    """
    x, y, side = box
    if side <= 0:
        raise ValueError(f"empty crop box {box}")
    h, w = image.shape[:2]
    canvas = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y: sy1 - y, sx0 - x: sx1 - x] = image[sy0:sy1, sx0:sx1]
    pad = np.array([sx0 - x, sy0 - y, x + side - sx1, y + side - sy1], dtype=np.float64).clip(0, side) / side
    im = Image.fromarray(canvas).resize((size, size), Image.LANCZOS).convert("L")
    return np.asarray(im, dtype=np.uint8), pad


def to_crop_frame(points: np.ndarray, box: tuple[int, int, int], size: int = STAGE_A_SIZE) -> np.ndarray:
    """Edge coordinates in the original image -> edge coordinates in the ``size`` x ``size`` crop."""
    x, y, side = box
    return (np.asarray(points, dtype=np.float64) - [x, y]) * (size / side)


def crop_rule(rule: str | None, num_points: int) -> str:
    """``rule``, or for ``None`` the paper's: "eyes_mouth" for 5 points, else "points"."""
    return rule or ("eyes_mouth" if num_points == 5 else "points")


def stage_b_rect(points160: np.ndarray, rule: str | None = None, size: int = STAGE_A_SIZE) -> np.ndarray:
    """Inner face rectangle (x, y, side) on the ``size`` (160) crop (docs/model.md 1.3) by the keypoint
    scheme's crop ``rule`` (`crop_rule`): "eyes_mouth" (the 5-point rule with ratio 0.95) or "points" (the
    tight box enlarged by 1.3)."""
    p = np.asarray(points160)
    if crop_rule(rule, p.shape[0]) == "eyes_mouth":
        box = box_from_5_points(p, size, size, MTFL_STAGE_B_RATIO)
    else:
        box = box_from_all_points(p, W300_STAGE_B_ENLARGE)
    return np.asarray(box, dtype=np.float32)


def box_corners(box) -> np.ndarray:
    """The 4 corners (edge coordinates) of a face box (x, y, w, h): cropping them by the "points" rule
    treats the box as the tight box of the face's landmarks."""
    x, y, w, h = (float(v) for v in box)
    return np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]])


def stage_b_pad(pad_a: np.ndarray, rect: np.ndarray, size: int = STAGE_A_SIZE) -> np.ndarray:
    """Re-express the stage-A pad (ratios of the ``size`` (160) crop) as ratios of the stage-B rectangle
    (`get_padded_region`, docs/model.md 1.3): the part of each side of ``rect`` that lies in the padding."""
    x, y, s = (float(v) for v in rect)
    n = size
    l, t, r, b = (float(v) * n for v in pad_a)
    pads = [min(max(l - x, 0.0), s), min(max(t - y, 0.0), s),
            min(max((x + s) - (n - r), 0.0), s), min(max((y + s) - (n - b), 0.0), s)]
    return np.asarray(pads, dtype=np.float32) / s


def clear_unpadded_codes(codes: np.ndarray, pad_b: np.ndarray) -> np.ndarray:
    """Clear border codes 1-4 whose side of the stage-B rectangle is not padded (docs/model.md 1.3)."""
    codes = np.asarray(codes).copy()
    for side in range(4):
        if pad_b[side] <= 0:
            codes[codes == side + 1] = 0
    return codes


def border_pixels(pad_b: np.ndarray, size: int = 80) -> np.ndarray:
    """First valid column/row and the column/row where right/bottom padding starts (docs/model.md 1.7)."""
    l, t, r, b = (float(v) for v in pad_b)
    return np.array([round(l * size), round(t * size), size - round(r * size), size - round(b * size)],
                    dtype=np.int32)
