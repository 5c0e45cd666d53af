"""From user images to model crops and back: which faces to read (given boxes, a detector, or the whole
image), the 80x80 input of each face made as the training crops are made, and keypoints mapped back to
original-image pixels. numpy and Pillow, no TensorFlow: `Landmarker.predict` composes these with the
network; they take no model, so that they are usable (and testable) alone.

The crop of a face is made in the two steps of training (docs/model.md 1.2-1.4): a loose square around
the face resized to 160x160 with Lanczos (antialiased, whatever the photo's resolution), then the
bilinear warp of the face square to 80x80, rotated by the face's roll when the detector gives eyes.
Coordinates: edge coordinates inside (pixel j spans [j, j + 1)), 0-based pixel centres out.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Sequence

import numpy as np

from rcn_keras.boxes import Box, BoxFormat, boxes_for, check_box, crop_rect
from rcn_keras.data.crop import W300_STAGE_A_ENLARGE, W300_STAGE_B_ENLARGE, crop_side
from rcn_keras.data.formats import DataFormatError, decode_image
from rcn_keras.grid import MAP_SIZE

# The loose square around a face square, as in training (1.7 / 1.3 of the 68-point landmark box).
LOOSE_OVER_FACE = W300_STAGE_A_ENLARGE / W300_STAGE_B_ENLARGE
# A photo is first decoded at a JPEG DCT scale whose long side is at least DECODE_SIDE (detectors look
# at 640 pixels); a face is cropped from pixels where its loose square spans at least CROP_SOURCE x 160
# of them, else the photo is decoded again, finer (benchmarks/photo_profile.py: same keypoints).
DECODE_SIDE = 960
CROP_SOURCE = 1.5


def array_to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """An image array read by its dtype's range: uint8 as it is, uint16 0-65535 and float 0-1 scaled to
    0-255; other dtypes, non-finite values and floats outside [0, 1] are refused, naming ``where``."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        values = np.asarray(arr, np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{where} holds NaN or infinite values")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(f"{where} is {arr.dtype} with values {low:g}..{high:g}: float images are read as "
                             f"0-1; divide by 255 (or pass uint8 0-255)")
        return np.round(np.clip(values, 0, 1) * 255.0).astype(np.uint8)
    raise ValueError(f"{where} has dtype {arr.dtype}: pass uint8 (0-255), uint16 (0-65535) or float (0-1)")


@dataclasses.dataclass
class Photo:
    """An image as decoded for reading faces: ``rgb`` uint8 (H, W, 3), possibly a reduced decode of the
    file (``scale`` original pixels per pixel of ``rgb``), the ``width`` and ``height`` of the whole
    image (upright), and the file it came from (``None`` for an array)."""

    name: str
    rgb: np.ndarray
    scale: float
    width: int
    height: int
    path: str | None = None

    def finer(self, max_scale: float) -> "Photo":
        """This photo decoded again with at most ``max_scale`` original pixels per pixel."""
        if self.path is None or self.scale <= max_scale:
            return self
        return read_photo(self.path, min_side=math.ceil(max(self.width, self.height) / max(max_scale, 1.0)))

    def preview(self, side: int | None) -> tuple[np.ndarray, float]:
        """(pixels, original pixels per pixel) with a long side of at most ``side`` (``None``: as decoded)."""
        h, w = self.rgb.shape[:2]
        if side is None or max(h, w) <= side:
            return self.rgb, self.scale
        from PIL import Image

        k = side / max(h, w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        return np.asarray(Image.fromarray(self.rgb).resize(size, Image.BILINEAR, reducing_gap=2.0)), \
            self.scale * w / size[0]


def to_rgb(item, index: int = 0) -> tuple[str, np.ndarray]:
    """(name, uint8 RGB (H, W, 3)) of a path (turned upright by its EXIF orientation, as photos are
    displayed; any bit depth) or an array: grey (H, W) / (H, W, 1), RGB or RGBA, read by its dtype
    (`array_to_uint8`: uint8 0-255, uint16 0-65535, float 0-1)."""
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = arr[..., :3]
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)) or min(arr.shape[:2]) < 1:
            raise ValueError(f"image array {index} has shape {item.shape}; expected (H, W), (H, W, 1), (H, W, 3) "
                             f"or (H, W, 4)")
        arr = array_to_uint8(arr, f"image array {index}")
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        return f"array_{index}", np.ascontiguousarray(arr)
    return str(item), decode_image(item, "RGB", upright=True)[0]


def as_crops(crops, side: int = MAP_SIZE) -> np.ndarray:
    """Crops (N, side, side, 1) float32 of raw grey intensities from (N, side, side) or (N, side, side, 1)
    (``side``: the network's input, 80 or 160); other shapes and non-finite values (NaN, inf) are refused
    with a ValueError naming the first bad crop."""
    try:
        crops = np.asarray(crops, np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"crops must be an array (N, {side}, {side}, 1) of grey intensities") from None
    if crops.ndim == 3:
        crops = crops[..., None]
    if crops.ndim != 4 or crops.shape[1:] != (side, side, 1):
        raise ValueError(f"crops must be (N, {side}, {side}, 1) grey images, got shape {crops.shape}")
    finite = np.isfinite(crops).all(axis=(1, 2, 3))
    if not finite.all():
        raise ValueError(f"crop {int(np.argmin(finite))} holds NaN or infinite values "
                         f"({int((~finite).sum())} of {len(crops)} crops): give finite grey intensities (0-255)")
    return crops


IMAGE_INPUTS = "a file path, a numpy array (H, W), (H, W, 3) or (H, W, 4), or a PIL image"


def _is_pil(item) -> bool:
    from PIL import Image

    return isinstance(item, Image.Image)


def read_photo(item, index: int = 0, min_side: int | None = DECODE_SIDE) -> Photo:
    """A path, an array or a PIL image as a `Photo`: a file decoded upright (EXIF orientation), JPEG at
    the DCT scale whose long side is at least ``min_side`` (``None``: whole); an array as `to_rgb` reads
    it; a PIL image as its RGB pixels."""
    if _is_pil(item):
        item = np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        name, rgb = to_rgb(item, index)
        return Photo(name, rgb, 1.0, rgb.shape[1], rgb.shape[0])
    if not isinstance(item, (str, os.PathLike)):
        raise TypeError(f"image {index}: expected {IMAGE_INPUTS}; got {type(item).__name__}")
    rgb, scale, (w, h) = decode_image(item, "RGB", upright=True, min_side=min_side)
    return Photo(str(item), rgb, scale, w, h, str(item))


@dataclasses.dataclass
class FacePlan:
    """One face to read: the box it came from (``None``: the whole image), the detector's score (or
    ``None``), the crop square (x, y, side) and its rotation in degrees (the face's roll)."""

    box: Box | None
    score: float | None
    rect: np.ndarray
    angle: float = 0.0


def roll_degrees(eyes: np.ndarray) -> float:
    """The in-plane rotation of a face from its eye centres (image-left eye first): 0 when level,
    positive when the eye on the right is lower (image y points down)."""
    (lx, ly), (rx, ry) = np.asarray(eyes, np.float64)
    return math.degrees(math.atan2(ry - ly, rx - lx))


def warp_params(rect: np.ndarray, angle: float, side: int = MAP_SIZE) -> tuple[np.ndarray, float, float, float]:
    """(top-left corner, scale, cos, sin) of the similarity dst = k R(-angle)(p - tl) that maps the square
    ``rect`` rotated by ``angle`` degrees about its centre onto [0, side]^2 (as `data.augment.warp_params`)."""
    x0, y0, s = (float(v) for v in rect)
    t = math.radians(angle)
    c, sn = math.cos(t), math.sin(t)
    h = -s / 2.0
    tl = np.array([x0 + s / 2 + c * h - sn * h, y0 + s / 2 + sn * h + c * h])
    return tl, side / s, c, sn


def _bilinear(images: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample (N, H, W) images at (N, P) pixel-centre coordinates, zero outside (as the training warp)."""
    n, h, w = images.shape
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    out = np.zeros(x.shape, np.float32)
    rows = np.arange(n)[:, None]
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            values = images[rows, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out += np.where(inside, values, 0.0) * wx * wy
    return out


def loose_side(plan: "FacePlan") -> float:
    """The side of the loose square a face's crop is resized from (original-image pixels)."""
    return float(plan.rect[2]) * LOOSE_OVER_FACE


def face_inputs(rgb: np.ndarray, plans: Sequence[FacePlan], scale: float = 1.0, side: int = MAP_SIZE) -> np.ndarray:
    """The (N, side, side, 1) float32 model inputs (``side``: 80, or a 160 network's) of the faces of one
    RGB uint8 image; ``scale``: original pixels per pixel of ``rgb`` (the plans' squares are in original
    pixels)."""
    from PIL import Image

    if not plans:
        return np.zeros((0, side, side, 1), np.float32)
    n = crop_side(side)
    image = Image.fromarray(rgb)
    loose, local = [], []
    for p in plans:
        x, y, s = (float(v) / scale for v in p.rect)
        square = max(1, round(s * LOOSE_OVER_FACE))
        left, top = math.floor(x + s / 2 - square / 2), math.floor(y + s / 2 - square / 2)
        region = image.crop((left, top, left + square, top + square))  # zero outside the image
        # grey first (training converts after the resize: both linear, the same up to rounding; 3x cheaper)
        small = region.convert("L").resize((n, n), Image.LANCZOS, reducing_gap=3.0)
        loose.append(np.asarray(small, np.float32))
        k = n / square
        local.append(((x - left) * k, (y - top) * k, s * k))
    u, v = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64))
    u, v = u.reshape(1, -1), v.reshape(1, -1)
    params = [warp_params(np.array(r), p.angle, side) for r, p in zip(local, plans)]
    tl = np.array([q[0] for q in params])
    inv = 1.0 / np.array([q[1] for q in params])[:, None]
    c, sn = np.array([q[2] for q in params])[:, None], np.array([q[3] for q in params])[:, None]
    # Output pixel centre (u, v) -> 160-frame pixel-centre coordinates (the inverse similarity).
    ue, ve = u + 0.5, v + 0.5
    xs = tl[:, :1] + inv * (c * ue - sn * ve) - 0.5
    ys = tl[:, 1:] + inv * (sn * ue + c * ve) - 0.5
    out = _bilinear(np.stack(loose), xs, ys)
    return out.reshape(-1, side, side, 1)


def crop_to_image(keypoints: np.ndarray, rect: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """(K, 2) keypoints in [0, 1] of a face's crop -> 0-based pixel-centre coordinates of the image."""
    tl, k, c, sn = warp_params(rect, angle)
    q = np.asarray(keypoints, np.float64) * MAP_SIZE / k
    p = tl + np.stack([c * q[:, 0] - sn * q[:, 1], sn * q[:, 0] + c * q[:, 1]], axis=-1)
    return p - 0.5


def plan_faces(shape: tuple[int, int], name: str, box: Box | Sequence[Box] | None, box_format: BoxFormat,
               detections=None, detector_format: BoxFormat | None = None, level: bool = True,
               max_faces: int | None = None) -> list[FacePlan]:
    """The faces to read in an image of ``shape`` (H, W): the given ``box`` (or list of boxes, one face
    each), else every detection (``detector_format`` maps its box to the crop; ``level`` rotates the
    crop by the eyes' roll where there are eyes), else, when ``box`` is ``None`` and there are no
    ``detections``, the whole image."""
    h, w = shape
    if box is not None:
        given = list(box) if is_box_list(box) else [box]
        plans = []
        for b in given:
            b = check_box(b, f"face box of {name}")
            if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
                raise ValueError(f"face box {tuple(b)} of {name} lies outside the {w}x{h} image")
            plans.append(FacePlan(b, None, crop_rect(shape, b, box_format)))
        return plans
    if detections is None:
        return [FacePlan(None, None, crop_rect(shape, None))]
    plans = []
    for i in range(len(detections) if max_faces is None else min(max_faces, len(detections))):
        det_box = tuple(float(v) for v in detections.boxes[i])
        eyes = None if detections.eyes is None else detections.eyes[i]
        angle = roll_degrees(eyes) if (level and eyes is not None) else 0.0
        plans.append(FacePlan(det_box, float(detections.scores[i]), crop_rect(shape, det_box, detector_format),
                              angle))
    return plans


def is_box_list(box) -> bool:
    """Whether ``box`` is a list of boxes (several faces of one image) rather than one x, y, w, h box."""
    if isinstance(box, np.ndarray):
        return box.ndim == 2
    return isinstance(box, (list, tuple)) and len(box) > 0 and all(
        isinstance(b, (list, tuple, np.ndarray)) for b in box)


def boxes_per_image(images: list, boxes: Sequence[Box | None] | dict | None) -> list:
    """Per image: a box, a list of boxes (one per face) or ``None``, from a list, a `read_boxes_file`
    dict, or ``None``."""
    if isinstance(boxes, dict):
        return boxes_for(images, boxes)
    if boxes is None:
        return [None] * len(images)
    per_image = list(boxes)
    if len(per_image) != len(images):
        raise ValueError(f"{len(per_image)} boxes for {len(images)} images: give one box (or None) per image")
    return per_image


def read_photo_or_error(item, index: int, on_error: str, min_side: int | None = DECODE_SIDE
                        ) -> tuple[Photo | None, str | None]:
    """(photo, None), or with ``on_error="skip"`` (None, error line) for an image that cannot be read."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r} is not allowed; allowed: raise, skip")
    try:
        return read_photo(item, index, min_side), None
    except DataFormatError as exc:
        if on_error == "raise":
            raise
        return None, str(exc)


def face_result(plan: FacePlan, crop: np.ndarray, keypoints: np.ndarray, confidence: np.ndarray) -> dict:
    """One face of `Landmarker.predict`'s results (see there)."""
    return {"box": plan.box, "score": plan.score, "keypoints": crop_to_image(keypoints, plan.rect, plan.angle),
            "confidence": confidence, "rect": plan.rect, "angle": plan.angle, "crop": crop[..., 0],
            "crop_keypoints": keypoints}


def add_alignment_and_pose(faces: list[dict], photo: Photo | None, size: tuple[int, int], align=None,
                           pose: bool = False) -> None:
    """Add to each face of one image its aligned crop (``"aligned"``: uint8 RGB, ``align`` an
    `align.Template`; warped from ``photo``, decoded again finer when its pixels are coarser than the
    crop's) and its head pose (``"pose"``: `pose.head_pose` with ``size`` = (width, height))."""
    from rcn_keras.align import alignment_matrix, reduced, warp
    from rcn_keras.pose import head_pose

    for face in faces:
        if pose:
            fit = head_pose(face["keypoints"], size)
            face["pose"] = {k: fit[k] for k in ("yaw", "pitch", "roll", "error")}
        if align is not None:
            matrix = alignment_matrix(face["keypoints"], align)
            zoom = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # crop pixels per original pixel
            photo = photo.finer(1.0 / zoom) if photo.scale * zoom > 1.0 else photo
            face["aligned"] = warp(photo.rgb, matrix @ reduced(photo.scale), align.size)


def prefetch(fn, items, ahead: int = 2):
    """``fn(item)`` for each item, in order, computed up to ``ahead`` items in advance on a worker thread:
    decoding and detection of the next images overlap the network's work on the current ones."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [pool.submit(fn, it) for it in items[:ahead]]
        for i in range(len(items)):
            if i + ahead < len(items):
                futures.append(pool.submit(fn, items[i + ahead]))
            yield futures[i].result()
            futures[i] = None


def scaled_detections(found, scale: float):
    """Detections on a reduced decode mapped to original-image pixels."""
    if found is None or scale == 1.0:
        return found
    from rcn_keras.detection.base import Detections

    eyes = None if found.eyes is None else found.eyes * np.float32(scale)
    return Detections(found.boxes * np.float32(scale), found.scores, eyes)


def prepare_photo(photo: Photo, box, box_format: BoxFormat, finder=None, found_format: BoxFormat | None = None,
                  level: bool = True, max_faces: int | None = None, side: int = MAP_SIZE
                  ) -> tuple[Photo, list[FacePlan], np.ndarray]:
    """The faces of one photo and their model inputs: ``box`` (or boxes) when given, else ``finder``'s
    detections (on the reduced decode), else the whole image; each face cropped from pixels fine enough
    for it (`CROP_SOURCE`; the photo is decoded again, finer, when a face needs it). Returns the photo
    (as finally decoded), the plans (original pixels) and the crops (N, side, side, 1)."""
    found = finder.detect(photo.rgb) if (box is None and finder is not None) else None
    plans = plan_faces((photo.height, photo.width), photo.name, box, box_format,
                       scaled_detections(found, photo.scale), found_format, level, max_faces)
    if plans:
        photo = photo.finer(min(loose_side(p) for p in plans) / (CROP_SOURCE * crop_side(side)))
    return photo, plans, face_inputs(photo.rgb, plans, photo.scale, side)


def predict_images(run_crops, images, boxes, box_format: BoxFormat, finder=None, found_format=None,
                   batch_size: int = 64, on_error: str = "raise", level: bool = True, max_faces: int | None = None,
                   progress=None, on_result=None, preview_side: int | None = None, align=None,
                   pose: bool = False, side: int = MAP_SIZE) -> list[dict]:
    """The photo pipeline of `Landmarker.predict` and `ExportedLandmarker.predict`: each image read (a
    worker thread decodes and detects ahead), its faces planned and cropped, the crops of about
    ``batch_size`` faces at a time run by ``run_crops`` (crops -> {"keypoints", "confidence"}), and
    the keypoints mapped back to image pixels. ``on_result(result, preview)``: called as each image is
    done, with its pixels as decoded for it, at most ``preview_side`` long (``(rgb, scale)``; ``None``
    for an image that could not be read). ``images``: one path or array, or a list of them. ``align``
    (a crop size, template name or `align.Template`) adds each face's aligned crop, ``pose`` its head
    pose (`add_alignment_and_pose`). ``side``: the network's input side (80, or 160)."""
    if align is not None:
        from rcn_keras.align import as_template

        align = as_template(align)  # a bad template fails before any image is read
    if max_faces is not None and (isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1):
        raise ValueError(f"max_faces={max_faces!r} must be a positive integer or None")
    single = isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim <= 3) \
        or _is_pil(images)
    if not single and not isinstance(images, (list, tuple, np.ndarray)):
        raise TypeError(f"images: expected {IMAGE_INPUTS}, or a list of them; got {type(images).__name__}")
    images = [images] if single else list(images)
    per_image = boxes_per_image(images, boxes)

    def prepare(i):
        photo, error = read_photo_or_error(images[i], i, on_error)
        if error:
            return {"image": str(images[i]), "error": error}, [], None, None, None
        photo, plans, crops = prepare_photo(photo, per_image[i], box_format, finder, found_format, level, max_faces,
                                            side)
        head = {"image": photo.name, "width": int(photo.width), "height": int(photo.height)}
        return (head, plans, crops, photo.preview(preview_side) if on_result is not None else None,
                photo if align is not None else None)

    results, pending = [], []  # pending: (result, plans, crops, preview, photo) waiting for the network

    def flush():
        crops = [item[2] for item in pending if item[2] is not None and len(item[2])]
        out = run_crops(np.concatenate(crops) if crops else np.zeros((0, side, side, 1), np.float32))
        row = 0
        for head, plans, c, preview, photo in pending:
            faces = []
            for j, plan in enumerate(plans):
                faces.append(face_result(plan, c[j], out["keypoints"][row], out["confidence"][row]))
                row += 1
            if "error" not in head and (align is not None or pose):
                add_alignment_and_pose(faces, photo, (head["width"], head["height"]), align, pose)
            result = head if "error" in head else {**head, "faces": faces}
            results.append(result)
            if on_result is not None:
                on_result(result, preview)
        pending.clear()

    for done, item in enumerate(prefetch(prepare, range(len(images))), start=1):
        pending.append(item)
        if sum(len(item[1]) for item in pending) >= batch_size:
            flush()
        if progress is not None:
            progress(done, len(images))
    flush()
    return results
