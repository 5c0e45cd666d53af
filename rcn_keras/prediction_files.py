"""The files `rcn predict` writes, each atomically: ``keypoints.json`` (schema below), ``keypoints.csv``
(one row per face and point) and one overlay PNG per image showing every face.

keypoints.json, schema 2::

    {"schema": 2, "coordinates": "...", "model": str | null, "detector": str | null,
     "complete": bool, "stopped": why the run ended early (only when "complete" is false),
     "images": [{"image": path, "width": W, "height": H,
                 "overlay": file name | null,                # its overlay picture in the same folder
                 "faces": [{"box": [x, y, w, h] | null,     # detector or given box; null: the whole image
                            "score": float | null,          # the detector's confidence
                            "keypoints": [[x, y], ...],     # K points, original-image pixels
                            "confidence": [c, ...],         # K peak probabilities (below)
                            "crop_rect": [x, y, side], "angle": degrees,
                            "pose": {"yaw", "pitch", "roll", "error"},   # with --pose (rcn_keras.pose)
                            "aligned": file name}]}],      # with --align: its aligned crop (PNG)
     "no_face": [path, ...],                                # images where the detector found none
     "failed": [{"image": path, "error": one line}, ...]}   # images that could not be read

"confidence" of a point is the softmax probability at the peak pixel of its 80x80 map (one of 6,400
pixels: a flat map gives 0.0002). It is not the probability that the point is right, and it reads low:
with rcn-300w, real faces average about 0.15-0.30 over their 68 points (AFW: 5th-95th percentile 0.16-0.27,
single points 0.05-0.43), a crop of noise 0.03, a blank one 0.01. A face averaging below about 0.08 is
most likely not a face the model recognises; compare points of one face with each other to find the
doubtful ones (an occluded jaw point reads lower than an eye corner).

Schema 1 (before detection) had one face per image and no "images" list.

A new run into the same folder replaces keypoints.json and keypoints.csv and removes the overlays the
previous keypoints.json listed (or, for files written before "overlay" was listed, named by the same
rule) that the new run does not write: the folder describes one run. Other files are left alone.
Overlays are drawn into a hidden staging folder (`overlay_staging`) and moved in after keypoints.json is
written, so a run that stops early leaves no overlay that its keypoints.json does not list. A run stopped
before its last image (``stopped``: Ctrl-C, SIGTERM, a full disk) writes the finished images' points with
``"complete": false`` and the reason in ``"stopped"``.

Overlays are drawn on the pixels the photo was read with (no second decode), at most `OVERLAY_SIDE`
pixels long (``None``: the whole image), as JPEG for JPEG photos and PNG otherwise, by `OverlayWriter`
on a worker thread while the next photos are read.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pathlib
import shutil
import tempfile

import numpy as np

from rcn_keras.files import atomic_write_bytes, atomic_write_with, remove_stale_temporaries, temporary_prefix

SCHEMA_VERSION = 2
OVERLAY_SIDE = 1600
JPEG_SUFFIXES = (".jpg", ".jpeg")
COORDINATES = "pixels of the original image as displayed (EXIF orientation applied), 0-based, integer = pixel centre"


def _number(v, digits: int):
    return None if v is None or not math.isfinite(float(v)) else round(float(v), digits)


def face_json(face: dict) -> dict:
    """One face of `Landmarker.predict` as keypoints.json writes it (rounded, JSON types)."""
    return {"box": None if face["box"] is None else [_number(v, 2) for v in face["box"]],
            "score": _number(face["score"], 4),
            "keypoints": [[_number(v, 3) for v in p] for p in face["keypoints"]],
            "confidence": [_number(c, 5) for c in face["confidence"]],
            "crop_rect": [_number(v, 3) for v in face["rect"]], "angle": _number(face["angle"], 2),
            **({"pose": {k: _number(v, 2 if k != "error" else 4) for k, v in face["pose"].items()}}
               if "pose" in face else {}),
            **({"aligned": face["aligned_file"]} if "aligned_file" in face else {})}


def aligned_name(stem: str, face: int) -> str:
    """The aligned crop file of face ``face`` (0-based) of the image with overlay stem ``stem``."""
    return f"{stem}_face{face}_aligned.png"


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


def overlay_name(stem: str, image: str) -> str:
    """The overlay file of an image: ``<stem>_keypoints.jpg`` for a JPEG photo, else ``.png``."""
    return f"{stem}_keypoints{'.jpg' if pathlib.PurePath(str(image)).suffix.lower() in JPEG_SUFFIXES else '.png'}"


def is_overlay_name(name: str) -> bool:
    """Whether a file name (no folder) is one `overlay_name` or `aligned_name` gives."""
    return pathlib.PurePath(name).name == name and name.endswith(("_keypoints.png", "_keypoints.jpg", "_aligned.png"))


def predictions_json(results: list[dict], model: str | None = None, detector: str | None = None,
                     overlays: dict[str, str] | None = None, stopped: str | None = None) -> dict:
    """The keypoints.json document of `Landmarker.predict` results (``overlays``: image -> overlay file;
    ``stopped``: why the run ended before its last image, for a partial document)."""
    images = [r for r in results if "error" not in r]
    overlays = overlays or {}
    return {"schema": SCHEMA_VERSION, "coordinates": COORDINATES, "model": model, "detector": detector,
            "complete": stopped is None, **({"stopped": stopped} if stopped else {}),
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
        listed |= {f["aligned"] for i in images if isinstance(i, dict) for f in i.get("faces") or []
                   if isinstance(f, dict) and isinstance(f.get("aligned"), str)}
        if listed or any(isinstance(i, dict) and "overlay" in i for i in images):
            return listed
        with_faces = [str(i["image"]) for i in images if isinstance(i, dict) and i.get("faces")]
        return {f"{stem}_keypoints.png" for stem in output_stems(with_faces)}
    except (OSError, ValueError, TypeError, KeyError):
        return set()


def overlay_staging(out_dir: str | os.PathLike) -> pathlib.Path:
    """A new hidden folder in ``out_dir`` to draw overlays into before they are listed (stale ones of
    killed runs are removed first)."""
    anchor = pathlib.Path(out_dir) / "overlays"
    anchor.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(anchor)
    return pathlib.Path(tempfile.mkdtemp(prefix=temporary_prefix(anchor), dir=out_dir))


class OverlayWriter:
    """Writes the overlay of each image with a face into ``out_dir`` on a worker thread, named by
    `overlay_name` over the stems of all ``names`` (distinct for images of one name in two folders),
    at most ``side`` pixels long (``None``: whole). `close` waits, re-raises the first write error, and
    returns image name -> overlay file name; `done` then holds the overlays that were written."""

    def __init__(self, out_dir: str | os.PathLike, names: list[str], side: int | None = OVERLAY_SIDE):
        from concurrent.futures import ThreadPoolExecutor

        self.out_dir, self.side = pathlib.Path(out_dir), side
        self.files = {n: overlay_name(stem, n) for n, stem in zip(names, output_stems([str(n) for n in names]))}
        self.done: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._futures = []  # (image, overlay file, future)

    def add(self, result: dict, preview: tuple[np.ndarray, float] | None = None) -> None:
        """Queue the overlay of ``result`` (a `Landmarker.predict` result) drawn on ``preview``."""
        if "error" in result or not result["faces"]:
            return
        name = self.files.get(result["image"]) or overlay_name(pathlib.PurePath(str(result["image"])).stem,
                                                                result["image"])
        if preview is not None and self.side is None and preview[1] > 1:
            preview = None  # full size asked: the photo was read reduced, so it is decoded again whole
        rgb, scale = preview if preview is not None else (None, 1.0)
        future = self._pool.submit(write_overlay, result, self.out_dir / name, rgb, scale, self.side)
        self._futures.append((result["image"], name, future))

    def close(self) -> dict[str, str]:
        error = None
        try:
            for image, name, future in self._futures:
                try:
                    future.result()
                    self.done[image] = name
                except Exception as exc:  # noqa: BLE001 - the first one is re-raised below
                    error = error or exc
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if error is not None:
            raise error
        return dict(self.done)


def write_predictions(results: list[dict], out_dir: str | os.PathLike, overlay: bool = True,
                      model: str | None = None, detector: str | None = None,
                      overlays: dict[str, str] | None = None, overlay_side: int | None = OVERLAY_SIDE,
                      staging: pathlib.Path | None = None, stopped: str | None = None) -> list[pathlib.Path]:
    """Write keypoints.json, keypoints.csv (image, face, point, x, y, confidence) and, per image with a
    face, an overlay (``overlays``: already written by an `OverlayWriter`, image -> file, into
    ``staging`` when given, else into ``out_dir``; else, with ``overlay``, drawn here from the image
    files); then move the staged overlays in and remove the earlier run's overlays that are not rewritten.
    ``stopped``: why the run ended early (a partial document). Returns the paths written."""
    out_dir = pathlib.Path(out_dir)
    written = [out_dir / "keypoints.json", out_dir / "keypoints.csv"]
    stale = previous_overlays(out_dir)
    own_staging = None
    try:
        if overlays is None:
            own_staging = staging = overlay_staging(out_dir)
            writer = OverlayWriter(staging, [r["image"] for r in results if "error" not in r], overlay_side)
            for r in results if overlay else []:
                writer.add(r)
            overlays = writer.close()
        _write_listing(results, written, model, detector, overlays, stopped)
        files = list(overlays.values()) + [f["aligned_file"] for r in results for f in r.get("faces", [])
                                           if "aligned_file" in f]
        for name in files:  # listed first, then moved in: no file is ever unlisted
            if staging is not None:
                os.replace(staging / name, out_dir / name)
    finally:
        if own_staging is not None:
            shutil.rmtree(own_staging, ignore_errors=True)
    written += [out_dir / name for name in files]
    for name in stale - set(files):  # only names of the forms <stem>_keypoints.png / .jpg, _aligned.png, here
        if is_overlay_name(name):
            (out_dir / name).unlink(missing_ok=True)
    return written


def _write_listing(results: list[dict], written: list[pathlib.Path], model, detector, overlays, stopped) -> None:
    """keypoints.csv and keypoints.json, both or neither: the JSON's bytes are on disk before the CSV is
    renamed in, and the JSON (the file that says what the folder holds) is renamed in last."""
    images = [r for r in results if "error" not in r]
    buf = io.StringIO()
    writer = csv.writer(buf)
    posed = any("pose" in f for r in images for f in r["faces"])
    writer.writerow(["image", "face", "point", "x", "y", "confidence"] + (["yaw", "pitch", "roll"] if posed else []))
    for r in images:
        for i, face in enumerate(r["faces"]):
            angles = [f"{face['pose'][k]:.2f}" for k in ("yaw", "pitch", "roll")] if posed else []
            for j, ((x, y), c) in enumerate(zip(face["keypoints"], face["confidence"])):
                writer.writerow([r["image"], i, j, f"{x:.3f}", f"{y:.3f}", f"{c:.5f}"] + angles)
    doc = json.dumps(predictions_json(results, model, detector, overlays, stopped), indent=1, allow_nan=False)

    def write_json(tmp: pathlib.Path) -> None:
        tmp.write_bytes(doc.encode())
        atomic_write_bytes(written[1], buf.getvalue().encode())

    atomic_write_with(written[0], write_json)


def overlay_image(result: dict, rgb: np.ndarray | None = None, scale: float = 1.0, side: int | None = None):
    """A PIL image of one image's result: every face's box (green), crop square (yellow) and points
    (red), drawn on ``rgb`` (``scale`` original pixels per pixel of it), else on the image file (decoded
    at most ``side`` pixels long). Without either (an array input), the first face's crop is drawn."""
    from PIL import Image, ImageDraw

    from rcn_keras.inference import read_photo

    src = result["image"]
    faces = result["faces"]
    if rgb is None and os.path.isfile(src):
        photo = read_photo(src, min_side=side)
        rgb, scale = photo.preview(side)
    if rgb is None:
        img = Image.fromarray(np.clip(faces[0]["crop"], 0, 255).astype(np.uint8)).convert("RGB")
        draw = ImageDraw.Draw(img)
        for px, py in faces[0]["crop_keypoints"] * img.width - 0.5:
            draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=(255, 40, 40))
        return img
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for face in faces:
        x, y, side_px = (float(v) / scale for v in face["rect"])
        r = max(1.5, side_px / 120)
        t = math.radians(face["angle"])
        c, s = math.cos(t), math.sin(t)
        corners = [(x + side_px / 2 + c * dx - s * dy, y + side_px / 2 + s * dx + c * dy)
                   for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
                   for dx, dy in [(dx * side_px / 2, dy * side_px / 2)]]
        line = max(1, round(side_px / 200))
        draw.polygon(corners, outline=(255, 200, 0), width=line)
        if face["box"] is not None:
            bx, by, bw, bh = (float(v) / scale for v in face["box"])
            draw.rectangle([bx, by, bx + bw, by + bh], outline=(40, 220, 40), width=line)
        for px, py in (np.asarray(face["keypoints"], np.float64) + 0.5) / scale - 0.5:
            draw.ellipse([px - r, py - r, px + r, py + r], fill=(255, 40, 40))
    return img


def write_png(pixels: np.ndarray, path: pathlib.Path) -> pathlib.Path:
    """uint8 pixels (H, W[, 3]) as a PNG file."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_overlay(result: dict, path: pathlib.Path, rgb: np.ndarray | None = None, scale: float = 1.0,
                  side: int | None = OVERLAY_SIDE) -> pathlib.Path:
    """`overlay_image` written atomically: JPEG (quality 90) for a ``.jpg`` path, else PNG."""
    buf = io.BytesIO()
    image = overlay_image(result, rgb, scale, side)
    if path.suffix.lower() in JPEG_SUFFIXES:
        image.save(buf, format="JPEG", quality=90)
    else:
        image.save(buf, format="PNG", compress_level=1)
    atomic_write_bytes(path, buf.getvalue())
    return path
