"""The files `rcn predict` writes, each atomically: ``keypoints.json`` (schema below), ``keypoints.csv``
(one row per face and point) and one overlay PNG per image showing every face.

keypoints.json, schema 2::

    {"schema": 2, "coordinates": "...", "model": str | null, "detector": str | null,
     "images": [{"image": path, "width": W, "height": H,
                 "overlay": file name | null,                # its overlay picture in the same folder
                 "faces": [{"box": [x, y, w, h] | null,     # detector or given box; null: the whole image
                            "score": float | null,          # the detector's confidence
                            "keypoints": [[x, y], ...],     # K points, original-image pixels
                            "confidence": [c, ...],         # K peak probabilities
                            "crop_rect": [x, y, side], "angle": degrees}]}],
     "no_face": [path, ...],                                # images where the detector found none
     "failed": [{"image": path, "error": one line}, ...]}   # images that could not be read

Schema 1 (before detection) had one face per image and no "images" list.

A new run into the same folder replaces keypoints.json and keypoints.csv and removes the overlays the
previous keypoints.json listed (or, for files written before "overlay" was listed, named by the same
rule) that the new run does not write: the folder describes one run. Other files are left alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib

import numpy as np

from rcn_keras.files import atomic_write_bytes
from rcn_keras.grid import MAP_SIZE

SCHEMA_VERSION = 2
COORDINATES = "pixels of the original image as displayed (EXIF orientation applied), 0-based, integer = pixel centre"


def _number(v, digits: int):
    return None if v is None or not math.isfinite(float(v)) else round(float(v), digits)


def face_json(face: dict) -> dict:
    """One face of `Landmarker.predict` as keypoints.json writes it (rounded, JSON types)."""
    return {"box": None if face["box"] is None else [_number(v, 2) for v in face["box"]],
            "score": _number(face["score"], 4),
            "keypoints": [[_number(v, 3) for v in p] for p in face["keypoints"]],
            "confidence": [_number(c, 5) for c in face["confidence"]],
            "crop_rect": [_number(v, 3) for v in face["rect"]], "angle": _number(face["angle"], 2)}


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


def overlay_names(results: list[dict]) -> dict[str, str]:
    """Image name -> overlay file name, for the images of ``results`` that have a face."""
    with_faces = [r["image"] for r in results if "error" not in r and r["faces"]]
    return {name: f"{stem}_keypoints.png" for name, stem in zip(with_faces, output_stems(with_faces))}


def predictions_json(results: list[dict], model: str | None = None, detector: str | None = None,
                     overlays: dict[str, str] | None = None) -> dict:
    """The keypoints.json document of `Landmarker.predict` results (``overlays``: image -> overlay file)."""
    images = [r for r in results if "error" not in r]
    overlays = overlays or {}
    return {"schema": SCHEMA_VERSION, "coordinates": COORDINATES, "model": model, "detector": detector,
            "images": [{"image": r["image"], "width": r["width"], "height": r["height"],
                        "overlay": overlays.get(r["image"]),
                        "faces": [face_json(f) for f in r["faces"]]} for r in images],
            "no_face": [r["image"] for r in images if not r["faces"]],
            "failed": [{"image": r["image"], "error": r["error"]} for r in results if "error" in r]}


def previous_overlays(out_dir: pathlib.Path) -> set[str]:
    """The overlay files an earlier run's keypoints.json in ``out_dir`` lists (or implies, schema 1 and
    files without "overlay"); empty when there is none or it cannot be read."""
    try:
        doc = json.loads((out_dir / "keypoints.json").read_text())
        images = doc.get("images") if isinstance(doc, dict) else None
        if not isinstance(images, list):
            return set()
        listed = {i["overlay"] for i in images if isinstance(i, dict) and isinstance(i.get("overlay"), str)}
        if listed or any(isinstance(i, dict) and "overlay" in i for i in images):
            return listed
        with_faces = [i["image"] for i in images if isinstance(i, dict) and i.get("faces")]
        return {f"{stem}_keypoints.png" for stem in output_stems([str(n) for n in with_faces])}
    except (OSError, ValueError, TypeError, KeyError):
        return set()


def write_predictions(results: list[dict], out_dir: str | os.PathLike, overlay: bool = True,
                      model: str | None = None, detector: str | None = None) -> list[pathlib.Path]:
    """Write keypoints.json, keypoints.csv (image, face, point, x, y, confidence) and, per image with a
    face, an overlay PNG; remove the earlier run's overlays that are not rewritten. Returns the paths
    written."""
    out_dir = pathlib.Path(out_dir)
    written = [out_dir / "keypoints.json", out_dir / "keypoints.csv"]
    overlays = overlay_names(results) if overlay else {}
    stale = previous_overlays(out_dir) - set(overlays.values())
    images = [r for r in results if "error" not in r]
    for r in images:
        if r["image"] in overlays:
            written.append(write_overlay(r, out_dir / overlays[r["image"]]))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "face", "point", "x", "y", "confidence"])
    for r in images:
        for i, face in enumerate(r["faces"]):
            for j, ((x, y), c) in enumerate(zip(face["keypoints"], face["confidence"])):
                writer.writerow([r["image"], i, j, f"{x:.3f}", f"{y:.3f}", f"{c:.5f}"])
    atomic_write_bytes(written[1], buf.getvalue().encode())
    doc = predictions_json(results, model, detector, overlays)
    atomic_write_bytes(written[0], json.dumps(doc, indent=1, allow_nan=False).encode())
    for name in stale:  # only names of the form <stem>_keypoints.png, in this folder
        if pathlib.PurePath(name).name == name and name.endswith("_keypoints.png"):
            (out_dir / name).unlink(missing_ok=True)
    return written


def overlay_image(result: dict, rgb: np.ndarray | None = None):
    """A PIL image of one image's result: every face's box (green), crop square (yellow) and points
    (red). Without the image file (an array input) and ``rgb``, the first face's crop is drawn instead."""
    from PIL import Image, ImageDraw

    from rcn_keras.data.formats import load_image

    src = result["image"]
    faces = result["faces"]
    if rgb is None and os.path.isfile(src):
        rgb = load_image(src, "RGB", upright=True)
    if rgb is None:
        img = Image.fromarray(np.clip(faces[0]["crop"], 0, 255).astype(np.uint8)).convert("RGB")
        draw = ImageDraw.Draw(img)
        for px, py in faces[0]["crop_keypoints"] * MAP_SIZE - 0.5:
            draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=(255, 40, 40))
        return img
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for face in faces:
        x, y, side = (float(v) for v in face["rect"])
        r = max(1.5, side / 120)
        t = math.radians(face["angle"])
        c, s = math.cos(t), math.sin(t)
        corners = [(x + side / 2 + c * dx - s * dy, y + side / 2 + s * dx + c * dy)
                   for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
                   for dx, dy in [(dx * side / 2, dy * side / 2)]]
        line = max(1, round(side / 200))
        draw.polygon(corners, outline=(255, 200, 0), width=line)
        if face["box"] is not None:
            bx, by, bw, bh = face["box"]
            draw.rectangle([bx, by, bx + bw, by + bh], outline=(40, 220, 40), width=line)
        for px, py in face["keypoints"]:
            draw.ellipse([px - r, py - r, px + r, py + r], fill=(255, 40, 40))
    return img


def write_overlay(result: dict, path: pathlib.Path, rgb: np.ndarray | None = None) -> pathlib.Path:
    """`overlay_image` written atomically as PNG."""
    buf = io.BytesIO()
    overlay_image(result, rgb).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
