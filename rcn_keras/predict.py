"""Loading trained models and predicting keypoints on user images (face crops or whole images with
face boxes), with results in original-image pixel coordinates."""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib

import keras
import numpy as np

from rcn_keras.data import augment as aug
from rcn_keras.data.formats import DataFormatError, atomic_write_bytes, load_image
from rcn_keras.models.head import KeypointReadout

# Face box -> crop rectangle scale: the 300W stage-B enlargement of a tight landmark box (spec 1.3).
DEFAULT_BOX_SCALE = 1.3
# Face box conventions -> (scale of the box side, centre shift x, y in box widths) of the square crop the
# models were trained on, per keypoint count. "landmarks": the tight box of the face's landmarks.
# "dlib": dlib's HOG face detector box, calibrated (medians) on the 300W training faces by
# `python benchmarks/peer_dlib.py --calibrate`; the 5-point crops follow MTFL's eye/mouth rule.
BOX_FORMATS = {
    "landmarks": {68: (DEFAULT_BOX_SCALE, 0.0, 0.0), 5: (DEFAULT_BOX_SCALE, 0.0, 0.0)},
    "dlib": {68: (1.363, -0.016, 0.093), 5: (1.241, -0.016, -0.016)},
}


def as_map_model(model: keras.Model) -> keras.Model:
    """The pre-softmax map model inside ``model`` (itself, or the "presoftmax" output of a read-out model)."""
    out = model.output
    if isinstance(out, dict):
        if "presoftmax" not in out:
            raise ValueError(f"model {model.name!r} has outputs {sorted(out)} but no 'presoftmax' maps")
        return keras.Model(model.input, out["presoftmax"], name=model.name)
    if len(out.shape) != 4 or tuple(out.shape[1:3]) != (80, 80):
        raise ValueError(f"model {model.name!r} outputs shape {tuple(out.shape)}, not (None, 80, 80, K) maps")
    return model


def load_model(spec: str | os.PathLike) -> keras.Model:
    """Load a `.keras` model file (safe mode: no arbitrary code) and return its map model.

    ``"joint:RCN,DENOISER"`` (two `.keras` files or shipped names) builds the joint RCN + denoiser model.
    Errors are one-line `ValueError`s / `FileNotFoundError`s that name the file.
    """
    if str(spec).startswith("joint:"):
        from rcn_keras.models.denoising import build_joint_model

        parts = [p for p in str(spec)[len("joint:"):].split(",") if p]
        if len(parts) != 2:
            raise ValueError(f"joint model spec must be 'joint:RCN_MODEL,DENOISER_MODEL', got {spec!r}")
        return build_joint_model(load_model(parts[0]), load_model(parts[1]))
    path = pathlib.Path(spec)
    if not path.exists():
        from rcn_keras.pretrained import pretrained_path

        shipped = pretrained_path(str(spec))
        if shipped is None:
            raise FileNotFoundError(f"model not found: {spec} (neither a file nor a shipped model name)")
        path = shipped
    if path.suffix != ".keras":
        raise ValueError(f"{path}: not a .keras model file")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # keras raises many types for bad archives; report them as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: cannot load model ({first[:300]})") from None
    return as_map_model(model)


def crop_rect(image_shape: tuple[int, int], box: tuple[float, float, float, float] | None,
              box_scale: float = DEFAULT_BOX_SCALE, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Square crop rectangle (x, y, side) in edge coordinates: the box (x, y, w, h) enlarged by
    ``box_scale`` about its centre moved by ``shift`` box sides, or, without a box, the centred square
    that holds the whole image."""
    h, w = image_shape
    if box is None:
        side = float(max(h, w))
        return np.array([(w - side) / 2, (h - side) / 2, side], np.float32)
    x, y, bw, bh = (float(v) for v in box)
    if bw <= 0 or bh <= 0:
        raise ValueError(f"face box {box} must have a positive width and height")
    size = max(bw, bh)
    side = size * box_scale
    cx, cy = x + bw / 2 + shift[0] * size, y + bh / 2 + shift[1] * size
    return np.array([cx - side / 2, cy - side / 2, side], np.float32)


def box_convention(box_format: str, num_keypoints: int) -> tuple[float, float, float]:
    """(scale, shift x, shift y) of face boxes of ``box_format`` for a model of ``num_keypoints``."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format={box_format!r} is not allowed; allowed: {sorted(BOX_FORMATS)}")
    table = BOX_FORMATS[box_format]
    return table.get(num_keypoints, table[68])


def warp_to_crop(grey: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """The 80x80 model input for a grey image and its crop rectangle (no jitter)."""
    import tensorflow as tf

    rect_t = tf.constant(rect, tf.float32)
    tl, k, c, s = aug.warp_params(rect_t, tf.constant(1.0), 0.0, 0.0, tf.constant(0.0))
    return aug.warp_image(tf.constant(grey), tl, k, c, s).numpy()


def read_boxes_file(path: str | os.PathLike) -> dict[str, tuple[float, float, float, float]]:
    """Face boxes, one per line: ``image,x,y,w,h`` (commas or spaces); keyed by the image's file name."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataFormatError(path, "boxes file not found")
    boxes = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        fields = raw.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 5:
            raise DataFormatError(path, f"expected 'image,x,y,w,h', got {raw.strip()!r}", lineno)
        try:
            box = tuple(float(v) for v in fields[1:])
        except ValueError:
            raise DataFormatError(path, f"box values must be numbers: {raw.strip()!r}", lineno) from None
        if box[2] <= 0 or box[3] <= 0:
            raise DataFormatError(path, "box width and height must be positive", lineno)
        boxes[pathlib.Path(fields[0]).name] = box
    return boxes


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``x,y,w,h`` from the command line."""
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"--box expects x,y,w,h with positive w and h, got {text!r}")
    return box


def predict(images: list[str | os.PathLike | np.ndarray], model: keras.Model | str,
            boxes: list | dict | None = None, batch_size: int = 64, readout: str | None = None,
            box_scale: float | None = None, box_format: str = "landmarks") -> list[dict]:
    """Keypoints for each image: a list of {"image", "keypoints" (K, 2), "confidence" (K,), "rect"}.

    ``images`` are file paths or arrays (grey or RGB). ``boxes``: one (x, y, w, h) or None per image, or
    a dict keyed by file name; without a box the image is taken as a face crop. Keypoints are in pixels
    of the original image, 0-based, integer = pixel centre. ``box_format`` says what the boxes are:
    "landmarks" (tight landmark boxes) or "dlib" (dlib's HOG detector boxes); ``box_scale`` overrides its
    enlargement. ``readout=None`` uses the shipped model's
    tuned read-out (its model card), else argmax.
    """
    if readout is None:
        from rcn_keras.pretrained import default_readout

        readout = default_readout(model) if isinstance(model, (str, os.PathLike)) else "argmax"
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    model = as_map_model(model)
    head = KeypointReadout(readout)
    scale, sx, sy = box_convention(box_format, model.output.shape[-1])
    scale = scale if box_scale is None else box_scale
    entries = []
    for i, item in enumerate(images):
        name = str(item) if not isinstance(item, np.ndarray) else f"array_{i}"
        if isinstance(item, np.ndarray):
            arr = item if item.ndim == 2 else (item[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.float32)
        else:
            arr = load_image(item, "L")
        if isinstance(boxes, dict):
            box = boxes.get(pathlib.Path(name).name)
        elif boxes is not None:
            box = boxes[i]
        else:
            box = None
        rect = crop_rect(arr.shape[:2], box, scale, (sx, sy))
        entries.append({"image": name, "rect": rect, "input": warp_to_crop(np.asarray(arr, np.float32), rect)})
    results = []
    for start in range(0, len(entries), batch_size):
        chunk = entries[start:start + batch_size]
        out = head(model(np.stack([e["input"] for e in chunk]), training=False))
        for e, kp, conf in zip(chunk, out["keypoints"].numpy(), out["confidence"].numpy()):
            x, y, side = e["rect"]
            pixels = np.stack([x + kp[:, 0] * side, y + kp[:, 1] * side], -1) - 0.5
            results.append({"image": e["image"], "keypoints": pixels, "confidence": conf,
                            "rect": e["rect"], "crop": e["input"][..., 0], "crop_keypoints": kp})
    return results


def write_predictions(results: list[dict], out_dir: str | os.PathLike, overlay: bool = True) -> list[pathlib.Path]:
    """Write keypoints.json and keypoints.csv (image, point, x, y, confidence) and, per image, an overlay PNG."""
    out_dir = pathlib.Path(out_dir)
    payload = [{"image": r["image"], "keypoints": np.round(r["keypoints"], 3).tolist(),
                "confidence": np.round(r["confidence"], 5).tolist(),
                "crop_rect": [round(float(v), 3) for v in r["rect"]]} for r in results]
    meta = {"coordinates": "pixels of the original image, 0-based, integer = pixel centre", "faces": payload}
    written = [out_dir / "keypoints.json", out_dir / "keypoints.csv"]
    atomic_write_bytes(written[0], json.dumps(meta, indent=1).encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "point", "x", "y", "confidence"])
    for r in results:
        for j, ((x, y), c) in enumerate(zip(r["keypoints"], r["confidence"])):
            writer.writerow([r["image"], j, f"{x:.3f}", f"{y:.3f}", f"{c:.5f}"])
    atomic_write_bytes(written[1], buf.getvalue().encode())
    if overlay:
        for r in results:
            written.append(_overlay(r, out_dir))
    return written


def _overlay(result: dict, out_dir: pathlib.Path) -> pathlib.Path:
    from PIL import Image, ImageDraw

    src = result["image"]
    img = Image.open(src).convert("RGB") if os.path.isfile(src) else \
        Image.fromarray(np.clip(result["crop"], 0, 255).astype(np.uint8)).convert("RGB")
    pts = result["keypoints"] if os.path.isfile(src) else result["crop_keypoints"] * 80 - 0.5
    draw = ImageDraw.Draw(img)
    r = max(1.5, min(img.size) / 150)
    x, y, side = result["rect"]
    if os.path.isfile(src):
        draw.rectangle([x, y, x + side, y + side], outline=(255, 200, 0))
    for px, py in pts:
        draw.ellipse([px - r, py - r, px + r, py + r], fill=(255, 40, 40))
    path = out_dir / f"{pathlib.Path(src).stem}_keypoints.png"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
