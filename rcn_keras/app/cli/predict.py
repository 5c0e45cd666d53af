"""``rcn predict``: keypoints of every face in photos, folders, globs and videos (JSON, CSV, overlay PNGs;
per-frame JSON and an overlay video). Faces come from ``--box`` / ``--boxes``, else a face detector
(``--detector auto``), else the whole image (``--detector none``). Images with no face are reported;
unreadable images are reported and skipped, the others are still written (exit code 2 says some failed)."""

from __future__ import annotations

import argparse
import glob
import pathlib
import sys
import time

from rcn_keras.app.cli.common import finite_float, positive_int
from rcn_keras.boxes import BOX_FORMAT_NAMES
from rcn_keras.data.datasets import IMAGE_SUFFIXES
from rcn_keras.detection.registry import DETECTOR_CHOICES
from rcn_keras.models.config import READOUTS

NAME = "predict"
EXIT_SOME_FAILED = 2


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="keypoints of the faces in images, folders or globs (JSON, CSV, overlay PNGs)")
    p.add_argument("images", nargs="+", help="image or video files, folders (their images) or glob patterns")
    p.add_argument("--model", required=True, help=".keras file, shipped model name, or joint:RCN,DENOISER")
    p.add_argument("--detector", choices=DETECTOR_CHOICES, default="auto",
                   help="how faces are found in images without a box: auto (the best installed), a detector, "
                        "or none (each image is one face crop)")
    p.add_argument("--max-faces", type=positive_int, default=None, help="at most this many faces per image")
    p.add_argument("--min-score", type=finite_float, default=None, help="detector score threshold (default: its own)")
    p.add_argument("--no-level", action="store_true", help="do not rotate crops by the eye line (mtcnn)")
    p.add_argument("--box", help="face box x,y,w,h for every image (no detection)")
    p.add_argument("--boxes", help="file of 'image,x,y,w,h' lines, one per face (image as given on the command "
                                   "line, or its file name when unique); images not in it go to the detector")
    p.add_argument("--box-format", default=None,
                   help=f"what the boxes are (default: the model's; built-in: {', '.join(BOX_FORMAT_NAMES)})")
    p.add_argument("--readout", choices=READOUTS, default=None, help="keypoint read-out (default: the model's own)")
    p.add_argument("--flip", action="store_true",
                   help="flip test-time averaging: each face crop and its mirror image (twice the network time)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    p.add_argument("--no-smooth", action="store_true", help="videos: no One Euro smoothing of the points")
    p.add_argument("--max-frames", type=positive_int, default=None, help="videos: read at most this many frames")
    p.add_argument("--out", default="predictions",
                   help="output folder (locked while a run writes it; a new run replaces the keypoint files and "
                        "the earlier run's overlays, nothing else)")
    p.set_defaults(func=run)
    return p


def expand_images(items: list[str]) -> list[str]:
    """Files as given; a folder -> its image files (sorted, not recursive); a pattern that is not a
    file -> its matches (sorted). A name that is none of these is kept, to be reported as unreadable."""
    out = []
    for item in items:
        path = pathlib.Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise ValueError(f"{item}: folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif not path.exists() and glob.has_magic(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if pathlib.Path(p).is_file())
            if not found:
                raise ValueError(f"{item}: no file matches this pattern")
            out.extend(found)
        else:
            out.append(item)
    return out


class ProgressBar:
    """``[#####-----] 12/40 images, 3.1 images/s`` on one stderr line, redrawn in place."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        filled = int(30 * done / max(total, 1))
        end = "\n" if done == total else ""
        print(f"\r[{'#' * filled}{'-' * (30 - filled)}] {done}/{total} images, {rate:.1f} images/s", end=end,
              file=sys.stderr, flush=True)


def run(args) -> int:
    from rcn_keras.app.lock import FolderLock
    from rcn_keras.boxes import parse_box, read_boxes_file
    from rcn_keras.detection.registry import make_detector
    from rcn_keras.files import ensure_folder
    from rcn_keras.landmarker import load_landmarker

    images = expand_images(args.images)
    boxes = None
    if args.box:
        boxes = [parse_box(args.box)] * len(images)
    elif args.boxes:
        boxes = read_boxes_file(args.boxes)
    detector = None if args.box else make_detector(args.detector, min_score=args.min_score)
    model = load_landmarker(args.model)
    out = pathlib.Path(args.out)
    created = not out.exists()
    ensure_folder(out)
    try:
        with FolderLock(out, "another rcn predict"):
            return _predict(args, images, boxes, detector, model)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty folder behind


def _predict(args, images: list[str], boxes, detector, model) -> int:
    import warnings

    from rcn_keras.boxes import parse_box
    from rcn_keras.prediction_files import output_stems, write_predictions
    from rcn_keras.video import is_video, predict_video

    bar = ProgressBar(args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty()))
    videos = [i for i in images if is_video(i)]
    images = [i for i in images if not is_video(i)]
    for video, stem in zip(videos, output_stems(videos)):  # two videos of one name get distinct outputs
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a truncated video: said below, from the document
            doc = predict_video(model, video, args.out, smooth=not args.no_smooth, overlay=not args.no_overlay,
                                max_frames=args.max_frames, box=parse_box(args.box) if args.box else None,
                                box_format=args.box_format, batch_size=args.batch_size,
                                detector=detector or "none", max_faces=args.max_faces, level=not args.no_level,
                                readout=args.readout, flip=args.flip, stem=stem)
        if doc.get("warning"):
            print(f"rcn: warning: {doc['warning']}", file=sys.stderr)
        frames = len(doc["frames"])
        print(f"{video}: {frames} frame(s), {sum(len(f['faces']) for f in doc['frames'])} face(s), "
              f"{frames / (time.perf_counter() - start):.1f} frames/s -> {args.out}")
    if not images:
        return 0
    start = time.perf_counter()
    results = model.predict(images, boxes=boxes, box_format=args.box_format, readout=args.readout,
                            batch_size=args.batch_size, on_error="skip", detector=detector or "none",
                            max_faces=args.max_faces, level=not args.no_level, progress=bar, flip=args.flip)
    seconds = time.perf_counter() - start
    failed = [r for r in results if "error" in r]
    if len(failed) == len(results):
        raise ValueError(failed[0]["error"] + (f" (and {len(failed) - 1} more unreadable image(s))"
                                               if len(failed) > 1 else ""))
    written = write_predictions(results, args.out, overlay=not args.no_overlay, model=args.model,
                                detector=detector.name if detector is not None else None)
    faces = 0
    for r in results:
        if "error" in r:
            print(f"rcn: skipped {r['error']}", file=sys.stderr)
        elif not r["faces"]:
            print(f"{r['image']}: no face found")
        else:
            faces += len(r["faces"])
            confidence = ", ".join(f"{f['confidence'].mean():.3f}" for f in r["faces"])
            print(f"{r['image']}: {len(r['faces'])} face(s), mean confidence {confidence}")
    read = len(results) - len(failed)
    overlays = len(written) - 2
    print(f"{faces} face(s) in {read} image(s), {read / seconds:.1f} images/s, {faces / seconds:.1f} faces/s; "
          f"wrote {len(written)} file(s) to {args.out} (keypoints.json, keypoints.csv"
          f"{f', {overlays} overlay(s)' if overlays else ''})")
    if failed:
        print(f"rcn: {len(failed)} of {len(results)} image(s) could not be read", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0
