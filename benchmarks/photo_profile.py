"""Big photos through `rcn predict`: where the time goes per photo, and the whole process against dlib
(issue 30).

Photos of 3, 6 and 12 megapixels (2048x1536, 3000x2000, 4000x3000) are made from the 300W validation
faces (never trained on): each face (a loose 300W crop) is enlarged with Lanczos to 25-45 % of the
photo's short side and pasted on a noisy background, saved as JPEG (quality 92), as a phone would.

1. **Stages per photo** (ms, one process, the two pipelines interleaved photo by photo):
   *before*: the whole JPEG decoded, detection on it, crops, Keras, and the overlay as `rcn predict`
   wrote it until issue 30 (the photo decoded again, a full-size PNG);
   *after*: the photo decoded at the DCT scale its faces need, detection, crops, the shipped model's
   TFLite twin (LiteRT), and the overlay drawn on the pixels already read (JPEG, at most 1600 px).
2. **Whole process**: wall time of `rcn predict FOLDER --model M` (default options) of this checkout
   and of an earlier revision (``--before REV``, run from a git worktree), with and without overlays,
   and of dlib's HOG + ERT script on the same folder, each run twice, interleaved (the best of two
   is kept); faces found and NME (%, eye-corner midpoints, original pixels) of each from its output.
3. **Start-up**: `rcn models` and `rcn predict` of one photo, before and after.

Writes results/photo_profile.{json,md}.

    pip install -e ".[dev,peers]"
    python benchmarks/photo_profile.py --before cc35c30 [--photos 24] [--model rcn-300w]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, environment, print_table, write_results  # noqa: E402
from _photos import SHARED, make_photos, run_cli, whole_process  # noqa: E402

REPO = HERE.parent


def stage_profile(paths: list[str], model_name: str) -> list[dict]:
    """Median ms per photo of each stage, before and after (see the module docstring)."""
    import io

    from rcn_keras.data.formats import load_image
    from rcn_keras.detection.registry import make_detector
    from rcn_keras.data.crop import STAGE_A_SIZE
    from rcn_keras.inference import (CROP_SOURCE, face_inputs, loose_side, plan_faces, read_photo,
                                     scaled_detections)
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.prediction_files import overlay_image
    from rcn_keras.presets import PRESETS
    from rcn_keras.runtimes import ExportedLandmarker

    keras_model = load_landmarker(model_name)
    lite = ExportedLandmarker(PRESETS[model_name].weights_path.with_suffix(".tflite"))
    detector = make_detector("auto")
    found_format = keras_model.box_format(detector.name)
    keras_model.predict_crops(np.zeros((1, 80, 80, 1), np.float32))  # traced once, as in a run
    times = {k: [] for k in ("before", "after")}

    def clock(fn):
        start = time.perf_counter()
        value = fn()
        return value, 1000 * (time.perf_counter() - start)

    for path in paths:
        row = {}
        rgb, row["decode"] = clock(lambda: load_image(path, "RGB", upright=True))
        found, row["detect"] = clock(lambda: detector.detect(rgb))
        (plans, crops), row["crops"] = clock(lambda: (lambda p: (p, face_inputs(rgb, p)))(
            plan_faces(rgb.shape[:2], path, None, keras_model.box_format(), found, found_format)))
        out, row["network"] = clock(lambda: keras_model.predict_crops(crops))
        result = {"image": path, "faces": [{"box": pl.box, "rect": pl.rect, "angle": pl.angle,
                                            "keypoints": np.zeros((68, 2))} for pl in plans]}

        def old_overlay():
            buf = io.BytesIO()
            overlay_image(result, load_image(path, "RGB", upright=True)).save(buf, format="PNG")
            return buf

        _, row["overlay"] = clock(old_overlay)
        times["before"].append(row)
        row = {}
        photo, row["decode"] = clock(lambda: read_photo(path))
        found, row["detect"] = clock(lambda: scaled_detections(detector.detect(photo.rgb), photo.scale))
        plans = plan_faces((photo.height, photo.width), path, None, keras_model.box_format(), found, found_format)

        def crops_after():  # what prepare_photo does once the faces are found
            finer = photo.finer(min(loose_side(p) for p in plans) / (CROP_SOURCE * STAGE_A_SIZE)) if plans else photo
            return finer, face_inputs(finer.rgb, plans, finer.scale)

        (photo2, crops), row["crops"] = clock(crops_after)
        out, row["network"] = clock(lambda: lite(crops))
        result = {"image": path, "faces": [{"box": pl.box, "rect": pl.rect, "angle": pl.angle,
                                            "keypoints": np.zeros((68, 2))} for pl in plans]}

        def new_overlay():
            buf = io.BytesIO()
            rgb_small, scale = photo2.preview(1600)
            overlay_image(result, rgb_small, scale).save(buf, format="JPEG", quality=90)
            return buf

        _, row["overlay"] = clock(new_overlay)
        times["after"].append(row)
    rows = []
    for variant, measured in times.items():
        med = {k: float(np.median([m[k] for m in measured])) for k in measured[0]}
        rows.append({"pipeline": variant, **{f"{k} ms": v for k, v in med.items()},
                     "total ms": sum(med.values())})
    return rows


def start_up(photo: str, model: str, before: pathlib.Path | None, rounds: int = 2) -> list[dict]:
    """Best-of-``rounds`` wall seconds of `rcn models` and of `rcn predict` of one photo."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, rev in (("after", None), ("before", before)):
            if label == "before" and rev is None:
                continue
            models = min(run_cli(["models"], rev) for _ in range(rounds))
            predict = min(run_cli(["predict", photo, "--model", model, "--out", str(pathlib.Path(tmp) / label)], rev)
                          for _ in range(rounds))
            rows.append({"code": label, "rcn models s": models, "rcn predict 1 photo s": predict})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rcn-300w")
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--before", help="an earlier revision to compare with (run from a git worktree)")
    args = parser.parse_args()
    if not (SHARED / "afw").is_dir():
        print(f"skipped: no 300W data at {SHARED}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        before = None
        if args.before:
            before = tmp / "before"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(before), args.before],
                           check=True, capture_output=True)
        try:
            folder = tmp / "photos"
            folder.mkdir()
            truth = make_photos(folder, args.photos)
            megapixels = float(np.mean([int(w) * int(h) / 1e6 for p in truth
                                        for w, h in [pathlib.Path(p).stem.split("_")[-1].split("x")]]))
            stages = stage_profile(sorted(truth), args.model)
            print_table(stages, list(stages[0]))
            whole = whole_process(folder, truth, args.model, before)
            print_table(whole, ["pipeline", "seconds", "x dlib", "found %", "NME %"])
            start = start_up(sorted(truth)[0], args.model, before)
            print_table(start, ["code", "rcn models s", "rcn predict 1 photo s"])
        finally:
            if before is not None:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)],
                               capture_output=True)
    from rcn_keras.files import atomic_write_text
    from rcn_keras.markdown import markdown_table

    def fmt(rows):
        return [{k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]

    atomic_write_text(RESULTS / "photo_profile.md", "\n".join([
        "# Big photos through `rcn predict`", "",
        f"{args.photos} JPEG photos of 3-12 megapixels (mean {megapixels:.1f} MP), one 300W validation face each; "
        f"model {args.model}, detector auto, 2 shared cores. Before: revision {args.before or '-'}.", "",
        "## Stages, median ms per photo", "", markdown_table(fmt(stages), list(stages[0])), "",
        "## Whole process on the folder (best of 2, interleaved)", "",
        markdown_table(fmt(whole), ["pipeline", "seconds", "x dlib", "found %", "NME %"]), "",
        "## Start-up (best of 2)", "", markdown_table(fmt(start), list(start[0])), ""]))
    write_results("photo_profile", {"stages": stages, "whole": whole, "start_up": start, "photos": args.photos,
                                    "megapixels": megapixels, "model": args.model, "before": args.before,
                                    "environment": environment()})


if __name__ == "__main__":
    main()
