"""Peer comparison on the same faces: RCN models vs dlib's 68-point ERT predictor.

Faces: the shared 300W subset (../shared/data/300w, research use only; skipped where absent).
* 68 points: the seed-7345 10 % validation split of AFW + HELEN train (the split our models select on;
  its file names are in benchmarks/splits/300w_validation_68.txt).
* 5 points: AFW (our 5-point models train on HELEN train only); dlib's 68 points are reduced to the 5
  with the same rule as the ground truth (`afw5_from_68`).
Both run on the same 160x160 stage-A grey crops (RCN then sees its 80x80 stage-B warp). dlib gets
(a) the same face box RCN crops (the stage-B square) and (b) its own HOG detector's box (the box it was
trained with), falling back to (a) where the detector finds no face. All scores come from
`rcn_keras.evaluation.report.evaluate_predictions`, the code that scores our models.

    pip install -e ".[peers]"      # dlib-bin + face-recognition-models (the 68-point ERT model)
    python benchmarks/peer_dlib.py --model68 rcn-300w --model5 rcn-afw5
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import environment, print_table, write_results  # noqa: E402
from rcn_keras.evaluation.regions import REGION_COLUMNS  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"


def load_dlib():
    """dlib's HOG face detector and 68-point predictor, or ``None`` when the optional extra is absent."""
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(
        face_recognition_models.pose_predictor_model_location())


def detector_boxes(dlib_parts, faces) -> list:
    """dlib's HOG detection (x, y, w, h) best overlapping each face's stage-B square, or ``None``."""
    dlib, detector, _ = dlib_parts
    boxes = []
    for image, (x, y, side) in zip(faces.images, faces.rects):
        ref = dlib.rectangle(int(round(x)), int(round(y)), int(round(x + side)), int(round(y + side)))
        dets = [d for d in detector(image, 1) if d.intersect(ref).area() > 0]
        d = max(dets, key=lambda d: d.intersect(ref).area()) if dets else None
        boxes.append(None if d is None else (d.left(), d.top(), d.width(), d.height()))
    return boxes


def dlib_points(dlib_parts, faces, boxes: list | None = None) -> tuple[np.ndarray, float, int]:
    """dlib's 68 points per face in the normalised stage-B frame, seconds per face, faces given a
    detector box (``boxes``; others, and all without ``boxes``, get the stage-B square)."""
    dlib, detector, predictor = dlib_parts
    out, detected, start = [], 0, time.perf_counter()
    for i, (image, (x, y, side)) in enumerate(zip(faces.images, faces.rects)):
        box = dlib.rectangle(int(round(x)), int(round(y)), int(round(x + side)), int(round(y + side)))
        if boxes is not None and boxes[i] is not None:
            bx, by, bw, bh = boxes[i]
            box = dlib.rectangle(bx, by, bx + bw, by + bh)
            detected += 1
        shape = predictor(image, box)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64) + 0.5  # pixel centres -> edges
        out.append((pts - [x, y]) / side)
    return np.stack(out), (time.perf_counter() - start) / len(faces), detected


def rcn_timing(model, readout: str, batch: int, repeats: int = 5) -> float:
    """Milliseconds per face of a compiled forward pass + read-out at ``batch``."""
    import tensorflow as tf

    from rcn_keras.models.head import KeypointReadout

    head = KeypointReadout(readout)
    maps = model.backbone
    fn = tf.function(lambda x: head(maps(x, training=False))["keypoints"])
    x = tf.random.uniform((batch, model.input_size, model.input_size, 1), 0, 255)
    fn(x)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x).numpy()
        best = min(best, time.perf_counter() - t)
    return 1000 * best / batch


def score(pred, gt, faces, name: str, extra: dict) -> dict:
    from rcn_keras.evaluation.report import evaluate_predictions, headline_rows

    res = evaluate_predictions(pred, gt, faces)
    row = {"method": name, **extra}
    # per-face NME (%) with the default normaliser, for CED curves (tools/render_docs.py)
    row["errors"] = [round(100 * float(e), 4) for e in next(iter(res["errors"].values()))]
    if "regions" in res:  # 68 points: NME % per face region, the jaw along and across its contour
        row.update(res["regions"])
    for r in headline_rows(res["rows"]):
        row[f"NME % {r['normaliser']}"] = r["nme"]
        if r["normaliser"] in ("corner_midpoints", "eye_centres"):
            row.update({"FR@8 %": r["fr8"], "FR@10 %": r["fr10"], "AUC@8": r["auc8"]})
    return row


def run_set(faces, k: int, model_spec: str | None, dlib_parts, extra_models: tuple[str, ...] = (),
            faces_for=None) -> list[dict]:
    """The rows of one face set; ``faces_for(side)``: the same faces cut for a network of another input side
    (a 160x160 network sees them at twice the pixels, as in its training), else ``faces`` for every model."""
    from rcn_keras.evaluation.report import predict_faceset
    from rcn_keras.keypoints import afw5_from_68
    from rcn_keras.landmarker import load_landmarker

    rows, gt = [], None
    for spec in extra_models:  # more models on the same faces (scores and timing only)
        other = load_landmarker(spec)
        own = faces_for(other.input_size) if faces_for is not None else faces
        pred, gt, _ = predict_faceset(other, own, 64)
        rows.append(score(pred, gt, faces, f"RCN {spec} ({other.readout})",
                          {"ms/face b1": rcn_timing(other, other.readout, 1),
                           "ms/face b64": rcn_timing(other, other.readout, 64)}))
    if model_spec:
        model = load_landmarker(model_spec)
        readout = model.readout
        pred, gt, _ = predict_faceset(model, faces, 64)
        rows.append(score(pred, gt, faces, f"RCN {model_spec} ({readout})",
                          {"ms/face b1": rcn_timing(model, readout, 1), "ms/face b64": rcn_timing(model, readout, 64)}))
    if gt is None:
        gt = (faces.keypoints - faces.rects[:, None, :2]) / faces.rects[:, None, 2:]
    if dlib_parts is not None:
        t = time.perf_counter()
        boxes = detector_boxes(dlib_parts, faces)
        detect_ms = 1000 * (time.perf_counter() - t) / len(faces)
        found = [i for i, b in enumerate(boxes) if b is not None]
        for with_detector in (False, True):
            pts, sec, detected = dlib_points(dlib_parts, faces, boxes if with_detector else None)
            if k == 5:
                pts = afw5_from_68(pts)
            name = "dlib ERT, its HOG detector's box" if with_detector else "dlib ERT, same box as RCN"
            extra = {"ms/face b1": 1000 * sec + (detect_ms if with_detector else 0.0), "ms/face b64": None}
            if with_detector:
                extra["detected"] = f"{detected}/{len(faces)}"
            rows.append(score(pts, gt, faces, name, extra))
        if model_spec and found:
            # the whole pipeline a user runs: detector box -> `Landmarker.predict` crop -> RCN
            sub = faces.take(found)
            for box_format in ("landmarks", "dlib"):
                pred = rcn_from_boxes(model, readout, sub, [boxes[i] for i in found], box_format)
                rows.append(score(pred, gt[found], sub, f"RCN from the detector's box (box_format={box_format}), "
                                  f"detected faces only", {"detected": f"{len(found)}/{len(faces)}"}))
            rows.append(score(pts[found], gt[found], sub, "dlib ERT, its detector's box, detected faces only",
                              {"detected": f"{len(found)}/{len(faces)}"}))
    return rows


def rcn_from_boxes(model, readout: str, faces, boxes: list, box_format: str) -> np.ndarray:
    """RCN keypoints via `Landmarker.predict` given face boxes, in the normalised stage-B frame."""
    results = model.predict(list(faces.images), boxes=boxes, readout=readout, box_format=box_format)
    pixels = np.stack([r["faces"][0]["keypoints"] for r in results]) + 0.5  # pixel centres -> edges
    return (pixels - faces.rects[:, None, :2]) / faces.rects[:, None, 2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED), help="300W-layout folder")
    parser.add_argument("--model68", default="rcn-300w", help="68-point model (.keras or shipped name)")
    parser.add_argument("--model5", default="rcn-afw5", help="5-point model (.keras or shipped name)")
    parser.add_argument("--extra68", nargs="*", default=["rcn-300w-hr", "rcn-300w-fast"],
                        help="more 68-point models to score")
    parser.add_argument("--extra5", nargs="*", default=["sumnet-afw5"], help="more 5-point models to score")
    parser.add_argument("--cache-dir", default="runs/cache")
    args = parser.parse_args()
    if not (pathlib.Path(args.root) / "afw").is_dir():
        print(f"skipped: no 300W data at {args.root}")
        return
    dlib_parts = load_dlib()
    if dlib_parts is None:
        print("dlib not installed (pip install -e '.[peers]'): scoring the RCN models only")
    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.datasets import load_300w

    @functools.cache  # one load per input side: the 80x80 models share val68
    def val68_for(side: int):
        return load_300w(args.root, ("afw", "helen_train"), 68, cache_dir=args.cache_dir,
                         crop_size=crop_side(side)).split(0.1)[1]

    val68 = val68_for(80)
    afw5 = load_300w(args.root, ("afw",), 5, cache_dir=args.cache_dir)
    payload = {"environment": environment(), "faces": {"68": len(val68), "5": len(afw5)}}
    cols = ["method", "NME % corner_midpoints", "NME % outer_corners", "FR@8 %", "FR@10 %", "AUC@8",
            "ms/face b1", "ms/face b64", "detected"]
    for tag, faces, k, spec, extra in (("68-point validation (120 faces)", val68, 68, args.model68, args.extra68),
                                       (f"5-point AFW ({len(afw5)} faces)", afw5, 5, args.model5, args.extra5)):
        rows = run_set(faces, k, spec, dlib_parts, tuple(extra), val68_for if k == 68 else None)
        print(f"\n### {tag}\n")
        shown = [c if k == 68 else c.replace("corner_midpoints", "eye_centres") for c in cols]
        shown = [c for c in shown if any(c in r for r in rows)]
        print_table([{c: ("" if r.get(c) is None else r[c]) for c in shown} for r in rows], shown)
        if k == 68:
            print_table(rows, ["method", *REGION_COLUMNS])
        payload[f"{k}pt"] = rows
    print(f"\nwrote {write_results('peer_dlib', payload)}")


if __name__ == "__main__":
    main()
