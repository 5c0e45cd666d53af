"""Face boxes and the crop a model sees: box conventions ("box formats"), the square crop rectangle a
box maps to, and box input from the command line or a file. numpy only.

A box format is ``(scale, shift_x, shift_y)``: the square crop is the box's larger side times
``scale``, centred on the box centre moved by ``shift`` box sides. Each `Landmarker` carries the
formats it accepts; these are the defaults a new one starts from.
"""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np

from rcn_keras.data.formats import DataFormatError
from rcn_keras.detection.registry import DETECTORS, calibrated_box_formats

Box = tuple[float, float, float, float]  # x, y, w, h in pixels of the image
BoxFormat = tuple[float, float, float]   # scale, shift x, shift y (in box sides)

# The training crop of the 300W faces: the tight landmark box enlarged by 1.3 (docs/model.md, 1.3).
LANDMARK_BOX_SCALE = 1.3
# "landmarks": the tight box of the face's landmarks. Each face detector's own box convention comes
# from its calibration on the 300W training faces (`rcn_keras.detection.registry`, per keypoint count:
# 5-point crops follow MTFL's eye / mouth rule) and is accepted under the detector's name.
BOX_FORMAT_NAMES = ("landmarks", *DETECTORS)


def default_box_formats(num_keypoints: int, calibrated: bool = True) -> dict[str, BoxFormat]:
    """The box formats a new model of ``num_keypoints`` accepts: "landmarks" and (``calibrated``: a model of
    the paper's keypoint schemes, whose crops the detectors are calibrated to) every calibrated detector."""
    return {"landmarks": (LANDMARK_BOX_SCALE, 0.0, 0.0), **(calibrated_box_formats(num_keypoints) if calibrated else {})}


def pick_box_format(name: str | None, formats: dict[str, BoxFormat], default: str, num_keypoints: int,
                    standard: bool) -> BoxFormat:
    """The box format ``name`` (``None``: ``default``) among a model's ``formats``: a face detector's name
    gives its calibration for crops of ``num_keypoints`` when the model's keypoint scheme is a
    ``standard`` one (else the one measured when it was trained, if any), other names the model's own."""
    name = name or default
    if name in DETECTORS and standard:
        return calibrated_box_formats(num_keypoints)[name]
    if name in DETECTORS and name not in formats:
        raise ValueError(f"detector {name!r} has no calibration for this model's crops (a keypoint scheme of "
                         f"your own: measured at training when the detector is installed); give face boxes "
                         f"({', '.join(sorted(formats))}) or detector 'none'")
    if name not in formats:
        raise ValueError(f"box format {name!r} is not accepted by this model; allowed: "
                         f"{', '.join(sorted(set(formats) | set(DETECTORS)))}")
    return formats[name]


def check_box(box, where: str = "face box") -> Box:
    """``box`` as four finite floats with positive width and height, else a ValueError naming ``where``."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be four numbers x,y,w,h, got {box!r}") from None
    if len(values) != 4:
        raise ValueError(f"{where} must be four numbers x,y,w,h, got {box!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where} must be finite numbers, got {box!r}")
    if values[2] <= 0 or values[3] <= 0:
        raise ValueError(f"{where} {box!r} must have a positive width and height")
    return values


def crop_rect(image_shape: tuple[int, int], box: Box | None, box_format: BoxFormat = (LANDMARK_BOX_SCALE, 0.0, 0.0)
              ) -> np.ndarray:
    """Square crop rectangle (x, y, side) in edge coordinates for ``box`` under ``box_format``, or,
    without a box, the centred square that holds the whole image (the image is a face crop)."""
    h, w = image_shape
    if box is None:
        side = float(max(h, w))
        return np.array([(w - side) / 2, (h - side) / 2, side], np.float32)
    x, y, bw, bh = check_box(box)
    scale, sx, sy = box_format
    size = max(bw, bh)
    side = size * scale
    cx, cy = x + bw / 2 + sx * size, y + bh / 2 + sy * size
    return np.array([cx - side / 2, cy - side / 2, side], np.float32)


def parse_box(text: str) -> Box:
    """``x,y,w,h`` from the command line."""
    return check_box(text.split(","), f"--box {text!r}")


def read_boxes_file(path: str | os.PathLike) -> dict[str, list[Box]]:
    """Face boxes, one face per line: ``image,x,y,w,h`` (commas or spaces), keyed by the image path as
    written (`boxes_for` also matches by file name). An image may have several lines: one per face."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "boxes file not found")
    boxes: dict[str, list[Box]] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        fields = raw.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 5:
            raise DataFormatError(path, f"expected 'image,x,y,w,h', got {raw.strip()!r}", lineno)
        try:
            boxes.setdefault(fields[0], []).append(check_box(fields[1:], "box"))
        except ValueError as exc:
            raise DataFormatError(path, str(exc), lineno) from None
    return boxes


def boxes_for(images: list, boxes: dict[str, list[Box]]) -> list[list[Box] | None]:
    """The boxes of each image from a `read_boxes_file` dict: by the path as given, else by file name
    when that name is unique among ``images`` (a name shared by two folders must be written in full)."""
    names = [pathlib.Path(str(i)).name for i in images]
    out = []
    for item, name in zip(images, names):
        key = str(item)
        if key in boxes:
            out.append(list(boxes[key]))
        elif names.count(name) == 1 and name in boxes:
            out.append(list(boxes[name]))
        else:
            out.append(None)
    return out
