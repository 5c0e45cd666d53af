"""From user images to model crops and back: grey conversion, the 80x80 warp of each face box, keypoints
mapped to original-image pixels, and the prediction files (JSON, CSV, overlay PNGs).

`Landmarker.predict` composes these; they take no model, so that they are usable (and testable)
alone. Coordinates: edge coordinates inside (pixel j spans [j, j + 1)), 0-based pixel centres out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
from typing import Sequence

import numpy as np

from rcn_keras.boxes import Box, BoxFormat, boxes_for, check_box, crop_rect
from rcn_keras.data import augment as aug
from rcn_keras.data.formats import DataFormatError, load_image
from rcn_keras.files import atomic_write_bytes
from rcn_keras.grid import MAP_SIZE

RGB_TO_GREY = np.array([0.299, 0.587, 0.114])
SCHEMA_VERSION = 1


def to_grey(item, index: int = 0) -> tuple[str, np.ndarray]:
    """(name, float32 grey (H, W) 0-255) of a path or an array (grey, RGB or RGBA)."""
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = arr[..., :3] @ RGB_TO_GREY
        elif arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise ValueError(f"image array {index} has shape {item.shape}; expected (H, W), (H, W, 1), (H, W, 3) "
                             f"or (H, W, 4)")
        return f"array_{index}", np.asarray(arr, np.float32)
    return str(item), np.asarray(load_image(item, "L"), np.float32)


def warp_to_crop(grey: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """The (80, 80, 1) model input for a grey image and its crop rectangle (x, y, side), no jitter."""
    import tensorflow as tf

    tl, k, c, s = aug.warp_params(tf.constant(rect, tf.float32), tf.constant(1.0), 0.0, 0.0, tf.constant(0.0))
    return aug.warp_image(tf.constant(grey), tl, k, c, s).numpy()


def prepare_crops(images: Sequence, boxes: Sequence[Box | None] | dict | None,
                  box_format: BoxFormat, on_error: str = "raise") -> list[dict]:
    """One entry per image: ``{"image": name, "rect": (x, y, side), "input": (80, 80, 1) crop}``.

    ``boxes``: one box or ``None`` per image, a `read_boxes_file` dict, or ``None`` (every image is a
    face crop). ``on_error="skip"``: an image that cannot be read becomes ``{"image", "error"}``
    instead of stopping the batch."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r} is not allowed; allowed: raise, skip")
    if isinstance(boxes, dict):
        per_image = boxes_for(images, boxes)
    elif boxes is None:
        per_image = [None] * len(images)
    else:
        per_image = list(boxes)
        if len(per_image) != len(images):
            raise ValueError(f"{len(per_image)} boxes for {len(images)} images: give one box (or None) per image")
    entries = []
    for i, (item, box) in enumerate(zip(images, per_image)):
        try:
            name, grey = to_grey(item, i)
        except DataFormatError as exc:
            if on_error == "raise":
                raise
            entries.append({"image": str(item), "error": str(exc)})
            continue
        if box is not None:
            box = check_box(box, f"face box of {name}")
            h, w = grey.shape[:2]
            if box[0] >= w or box[1] >= h or box[0] + box[2] <= 0 or box[1] + box[3] <= 0:
                raise ValueError(f"face box {tuple(box)} of {name} lies outside the {w}x{h} image")
        rect = crop_rect(grey.shape[:2], box, box_format)
        entries.append({"image": name, "rect": rect, "input": warp_to_crop(grey, rect)})
    return entries


def crop_to_image(keypoints: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """(K, 2) keypoints in [0, 1] of a crop -> 0-based pixel-centre coordinates of the original image."""
    x, y, side = (float(v) for v in rect)
    return np.stack([x + keypoints[:, 0] * side, y + keypoints[:, 1] * side], -1) - 0.5


def to_image_results(entries: list[dict], keypoints: np.ndarray, confidence: np.ndarray) -> list[dict]:
    """Per-image results: ``image``, ``keypoints`` (image pixels), ``confidence``, ``rect``, ``crop``,
    ``crop_keypoints`` ([0, 1] of the crop); ``keypoints`` / ``confidence`` hold one row per entry that
    has a crop, and entries with an ``error`` pass through as they are."""
    rows = iter(zip(keypoints, confidence))
    results = []
    for e in entries:
        if "error" in e:
            results.append(dict(e))
            continue
        kp, conf = next(rows)
        results.append({"image": e["image"], "keypoints": crop_to_image(kp, e["rect"]), "confidence": conf,
                        "rect": e["rect"], "crop": e["input"][..., 0], "crop_keypoints": kp})
    return results


def _json_number(v: float, digits: int):
    return round(float(v), digits) if math.isfinite(v) else None


def output_stems(names: list[str]) -> list[str]:
    """A distinct file stem per image for its overlay: the file name's stem, prefixed by as many parent
    folders as it takes to tell apart images of the same name in different folders."""
    parts = [[q for q in pathlib.PurePath(n).parts[:-1] if q != pathlib.PurePath(n).anchor] for n in names]
    bare = [pathlib.PurePath(n).stem for n in names]
    for depth in range(max((len(p) for p in parts), default=0) + 1):
        stems = ["_".join(p[len(p) - min(depth, len(p)):] + [b]) for p, b in zip(parts, bare)]
        if len(set(stems)) == len(stems):
            return stems
    return [f"{s}_{i}" for i, s in enumerate(stems)]


def write_predictions(results: list[dict], out_dir: str | os.PathLike, overlay: bool = True) -> list[pathlib.Path]:
    """Write keypoints.json (versioned schema), keypoints.csv (image, point, x, y, confidence) and, per
    image, an overlay PNG; every file atomically. Returns the paths written."""
    out_dir = pathlib.Path(out_dir)
    failed = [{"image": r["image"], "error": r["error"]} for r in results if "error" in r]
    results = [r for r in results if "error" not in r]
    payload = [{"image": r["image"], "keypoints": [[_json_number(v, 3) for v in p] for p in r["keypoints"]],
                "confidence": [_json_number(c, 5) for c in r["confidence"]],
                "crop_rect": [_json_number(v, 3) for v in r["rect"]]} for r in results]
    meta = {"schema": SCHEMA_VERSION, "coordinates": "pixels of the original image, 0-based, integer = pixel centre",
            "faces": payload, "failed": failed}
    written = [out_dir / "keypoints.json", out_dir / "keypoints.csv"]
    atomic_write_bytes(written[0], json.dumps(meta, indent=1, allow_nan=False).encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "point", "x", "y", "confidence"])
    for r in results:
        for j, ((x, y), c) in enumerate(zip(r["keypoints"], r["confidence"])):
            writer.writerow([r["image"], j, f"{x:.3f}", f"{y:.3f}", f"{c:.5f}"])
    atomic_write_bytes(written[1], buf.getvalue().encode())
    if overlay:
        for r, stem in zip(results, output_stems([r["image"] for r in results])):
            written.append(_overlay(r, out_dir / f"{stem}_keypoints.png"))
    return written


def _overlay(result: dict, path: pathlib.Path) -> pathlib.Path:
    from PIL import Image, ImageDraw

    src = result["image"]
    if os.path.isfile(src):
        img = Image.fromarray(load_image(src, "RGB"))
        pts = result["keypoints"]
    else:
        img = Image.fromarray(np.clip(result["crop"], 0, 255).astype(np.uint8)).convert("RGB")
        pts = result["crop_keypoints"] * MAP_SIZE - 0.5
    draw = ImageDraw.Draw(img)
    r = max(1.5, min(img.size) / 150)
    x, y, side = result["rect"]
    if os.path.isfile(src):
        draw.rectangle([x, y, x + side, y + side], outline=(255, 200, 0))
    for px, py in pts:
        draw.ellipse([px - r, py - r, px + r, py + r], fill=(255, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
