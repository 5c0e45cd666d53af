"""``rcn predict``: keypoints of every face in photos, folders, globs and videos (JSON, CSV, overlay PNGs;
per-frame JSON and an overlay video). Faces come from ``--box`` / ``--boxes``, else a face detector
(``--detector auto``), else the whole image (``--detector none``). Images with no face are reported;
unreadable images are reported and skipped, the others are still written (exit code 2 says some failed)."""

from __future__ import annotations

import argparse
import contextlib
import glob
import pathlib
import shutil
import sys
import time

from rcn_keras.align import TEMPLATES
from rcn_keras.app.cli.common import add_overwrite_option, finite_float, positive_int
from rcn_keras.boxes import BOX_FORMAT_NAMES
from rcn_keras.data.datasets import IMAGE_SUFFIXES
from rcn_keras.detection.registry import DETECTOR_CHOICES
from rcn_keras.models.config import READOUTS
from rcn_keras.video import DETECT_EVERY

NAME = "predict"
EXIT_SOME_FAILED = 2
RUNTIMES = ("auto", "keras", "litert")
EXPORTED_SUFFIXES = (".tflite", ".onnx")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="keypoints of the faces in images, folders or globs (JSON, CSV, overlay PNGs)")
    p.add_argument("images", nargs="+", help="image or video files, folders (their images) or glob patterns")
    p.add_argument("--model", required=True,
                   help=".keras file, shipped model name, joint:RCN,DENOISER, or an exported .tflite / .onnx file")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="what runs the network: keras (TensorFlow), or litert (a shipped model's TFLite twin, "
                        "starts without TensorFlow); auto: litert when it is installed and the options allow "
                        "(no --flip, no --readout), else keras")
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
    p.add_argument("--overlay-size", type=int, default=1600, metavar="PIXELS",
                   help="long side of the overlay pictures (JPEG for JPEG photos, else PNG), at most the photo's; "
                        "0: the photo's full size (decoded again, slower)")
    p.add_argument("--align", type=positive_int, default=None, metavar="PIXELS",
                   help="also write each face's aligned crop, PIXELS square (<image>_face<i>_aligned.png, listed in "
                        "keypoints.json), e.g. 112 for InsightFace / ArcFace recognisers")
    p.add_argument("--align-template", choices=TEMPLATES, default="arcface",
                   help="where the points go in the aligned crop: arcface (InsightFace's 5 points), mean68 (our "
                        "68-point mean shape with dlib's 25 %% padding) or mean5 (its 5 points)")
    p.add_argument("--pose", action="store_true",
                   help="add each face's head pose (yaw, pitch, roll in degrees) to keypoints.json and the CSV")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    p.add_argument("--no-smooth", action="store_true", help="videos: no One Euro smoothing of the points")
    p.add_argument("--max-frames", type=positive_int, default=None, help="videos: read at most this many frames")
    p.add_argument("--detect-every", type=positive_int, default=DETECT_EVERY, metavar="N",
                   help=f"videos: run the face detector every N frames (default {DETECT_EVERY}; 1: every frame) and "
                        f"follow the faces by their points in between")
    p.add_argument("--out", default="predictions",
                   help="output folder: a new or empty one, or an earlier rcn predict output (locked while a run "
                        "writes it; a new run replaces the keypoint files and the earlier run's overlays, nothing else)")
    add_overwrite_option(p, "keypoints.json, keypoints.csv and overlays of the same names are replaced")
    p.set_defaults(func=run, needs_tensorflow=False)  # imported only when Keras runs the network
    return p


def choose_runtime(args) -> str:
    """"keras", "litert" or "exported" (a .tflite / .onnx file given) for ``args``; one line when the
    choice cannot serve them."""
    import importlib.util

    from rcn_keras.presets import PRESETS

    spec = str(args.model)
    keras_only = [flag for flag, on in (("--flip", args.flip), ("--readout", args.readout)) if on]
    if pathlib.Path(spec).suffix.lower() in EXPORTED_SUFFIXES:
        if args.runtime == "keras":
            raise ValueError(f"--runtime keras runs .keras models; {spec} is an exported file (use --runtime auto)")
        if keras_only:
            raise ValueError(f"{' and '.join(keras_only)}: fixed in the exported file {spec}; give a .keras model")
        return "exported"
    twin = PRESETS[spec].weights_path.with_suffix(".tflite") if spec in PRESETS and PRESETS[spec].weights else None
    can_litert = twin is not None and twin.is_file() and importlib.util.find_spec("ai_edge_litert") is not None
    if args.runtime == "litert":
        if not can_litert:
            raise ValueError(f"--runtime litert runs a shipped model's TFLite twin with the litert extra "
                             f"(pip install 'rcn-keras[litert]'); {spec} has none here")
        if keras_only:
            raise ValueError(f"{' and '.join(keras_only)} need --runtime keras")
        return "litert"
    return "litert" if args.runtime == "auto" and can_litert and not keras_only else "keras"


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
    from rcn_keras.app.output_folder import check_folder, claim_folder, is_unused
    from rcn_keras.boxes import parse_box, read_boxes_file
    from rcn_keras.detection.registry import make_detector

    if args.overlay_size < 0:
        raise ValueError(f"--overlay-size {args.overlay_size}: give a number of pixels (0: full size)")
    check_folder(args.out, NAME, args.overwrite)
    images = expand_images(args.images)
    boxes = None
    if args.box:
        boxes = [parse_box(args.box)] * len(images)
    elif args.boxes:
        boxes = read_boxes_file(args.boxes)
    detector = None if args.box else make_detector(args.detector, min_score=args.min_score)
    runtime = choose_runtime(args)
    from rcn_keras.runtime import import_tensorflow_quietly

    if not args.verbose and (runtime == "keras" or getattr(detector, "name", None) == "mtcnn"):
        import_tensorflow_quietly()  # Keras, or MTCNN (a TensorFlow model), without TensorFlow's log lines
    if runtime == "keras":
        from rcn_keras.landmarker import load_landmarker

        model = load_landmarker(args.model)
    else:
        from rcn_keras.presets import PRESETS
        from rcn_keras.runtimes import ExportedLandmarker

        path = args.model if runtime == "exported" else PRESETS[args.model].weights_path.with_suffix(".tflite")
        model = ExportedLandmarker(path)
    wanted = [flag for flag, on in (("--align", args.align is not None), ("--pose", args.pose)) if on]
    if wanted and getattr(model, "num_keypoints", 68) not in (5, 68):
        raise ValueError(f"{' and '.join(wanted)} need a 5- or 68-point model; {args.model} predicts "
                         f"{model.num_keypoints} points")
    out = pathlib.Path(args.out)
    created = not out.exists()
    try:
        with FolderLock(out, "another rcn predict"):
            claim_folder(out, NAME, args.overwrite)
            return _predict(args, images, boxes, detector, model)
    finally:
        if created and out.is_dir() and is_unused(out):
            shutil.rmtree(out, ignore_errors=True)  # nothing was written: leave no folder behind


def _drawn_so_far(overlays) -> dict[str, str]:
    """The overlays an interrupted run finished drawing (waiting for the one being drawn)."""
    if overlays is None:
        return {}
    with contextlib.suppress(Exception):
        overlays.close()
    return overlays.done


def _predict(args, images: list[str], boxes, detector, model) -> int:
    import warnings

    from rcn_keras.boxes import parse_box
    from rcn_keras.errors import os_error_line
    from rcn_keras.prediction_files import (OverlayWriter, aligned_name, output_stems, overlay_staging, write_png,
                                            write_predictions)
    from rcn_keras.video import is_video, predict_video

    bar = ProgressBar(args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty()))
    options = dict(box_format=args.box_format, batch_size=args.batch_size, detector=detector or "none",
                   max_faces=args.max_faces, level=not args.no_level)
    align = None
    if args.align is not None:
        from rcn_keras.align import template

        align = template(args.align_template, args.align)
    if args.readout or args.flip:  # Keras only (`choose_runtime`)
        options.update(readout=args.readout, flip=args.flip)
    videos = [i for i in images if is_video(i)]
    images = [i for i in images if not is_video(i)]
    for video, stem in zip(videos, output_stems(videos)):  # two videos of one name get distinct outputs
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a truncated video: said below, from the document
            doc = predict_video(model, video, args.out, smooth=not args.no_smooth, overlay=not args.no_overlay,
                                max_frames=args.max_frames, box=parse_box(args.box) if args.box else None,
                                detect_every=args.detect_every,
                                stem=stem, **options)
        if doc.get("warning"):
            print(f"rcn: warning: {doc['warning']}", file=sys.stderr)
        frames = len(doc["frames"])
        print(f"{video}: {frames} frame(s), {sum(len(f['faces']) for f in doc['frames'])} face(s), "
              f"{frames / (time.perf_counter() - start):.1f} frames/s -> {args.out}")
    if not images:
        return 0
    start = time.perf_counter()
    side = args.overlay_size or None
    staging = overlay_staging(args.out)
    overlays = None if args.no_overlay else OverlayWriter(staging, images, side)
    finished = []  # the results of the images done so far: written even when the run stops early

    stems = dict(zip(images, output_stems(images)))

    def on_result(result, preview):
        for i, face in enumerate(result.get("faces", [])):  # aligned crops: staged with the overlays
            if "aligned" in face:
                name = aligned_name(stems.get(result["image"], pathlib.PurePath(result["image"]).stem), i)
                write_png(face.pop("aligned"), staging / name)
                face["aligned_file"] = name
        finished.append(result)
        if overlays is not None:
            overlays.add(result, preview)

    def listing(stopped=None, drawn=None):
        return write_predictions(finished, args.out, model=args.model, overlays=drawn or {}, staging=staging,
                                 detector=detector.name if detector is not None else None, stopped=stopped)

    try:
        try:
            results = model.predict(images, boxes=boxes, on_error="skip", progress=bar, on_result=on_result,
                                    preview_side=side, align=align, pose=args.pose, **options)
            drawn = overlays.close() if overlays else {}
        except KeyboardInterrupt:
            drawn = _drawn_so_far(overlays)
            if finished:
                listing(f"interrupted after {len(finished)} of {len(images)} images", drawn)
                print(f"\nrcn: the points of the {len(finished)} finished image(s) are in "
                      f"{pathlib.Path(args.out) / 'keypoints.json'} (\"complete\": false)", file=sys.stderr)
            raise
        except OSError as exc:  # e.g. a full disk: the staged overlays go, the finished images' points stay
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for face in (f for r in finished for f in r.get("faces", [])):
                face.pop("aligned_file", None)  # its crop went with the staging folder
            if exc.filename and pathlib.Path(exc.filename).parent == staging:  # named as the user knows it
                exc = type(exc)(exc.errno, exc.strerror, str(pathlib.Path(args.out) / pathlib.Path(exc.filename).name))
            if finished:
                with contextlib.suppress(OSError):  # else the earlier run's complete output stays as it was
                    listing(f"stopped after {len(finished)} of {len(images)} images: {os_error_line(exc)}")
            raise exc from None
        seconds = time.perf_counter() - start
        failed = [r for r in results if "error" in r]
        if len(failed) == len(results):
            raise ValueError(failed[0]["error"] + (f" (and {len(failed) - 1} more unreadable image(s))"
                                                   if len(failed) > 1 else ""))
        written = listing(drawn=drawn)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
