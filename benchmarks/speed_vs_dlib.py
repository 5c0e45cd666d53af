"""Speed and accuracy of every shipped model in every runtime, next to dlib's ERT predictor (issue 17).

For each model x runtime (Keras, SavedModel, LiteRT float32 / float16 / int8, ONNX Runtime), in its own
process: ms per face at batch 1 on one thread, faces/s at batch 64 on two threads, peak memory (max
RSS of the process), and the NME on the 300W validation split (120 faces, eye-corner midpoints) of the
same file. dlib's 68-point ERT predictor runs on the same faces (160x160 stage-A crops, the stage-B
square as its box) in the same run, interleaved, one thread. int8 files are calibrated on 300 training
faces (never the validation split). Writes results/speed_vs_dlib.{json,md} and a speed / accuracy plot
(--results NAME: results/NAME.*, for variants beside the shipped models' grid).

    pip install -e ".[litert,onnx,peers]"
    python benchmarks/speed_vs_dlib.py [--models rcn-300w rcn-300w-fast rcn-afw5] [--runtimes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, print_table, write_results  # noqa: E402

SHARED = HERE.parents[1] / "shared" / "data" / "300w"
RUNTIMES = ("keras", "saved_model", "litert_fp32", "litert_fp16", "litert_int8", "onnxruntime")
CACHE = "runs/cache"


def _faces(root: str, k: int, side: int = 80):
    """(representative training crops, validation FaceSet, validation crops) for a k-point model of
    ``side`` x ``side`` crops (its loose crops at `crop_side`)."""
    import numpy as np

    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.datasets import load_300w
    from rcn_keras.data.pipeline import make_dataset

    common = dict(cache_dir=CACHE, crop_size=crop_side(side))
    if k == 68:
        train, val = load_300w(root, ("afw", "helen_train"), 68, **common).split(0.1)
    else:  # the 5-point model trains on HELEN and is tested on AFW
        train = load_300w(root, ("helen_train",), 5, **common).split(0.1)[0]
        val = load_300w(root, ("afw",), 5, **common)
    crops = lambda faces: np.concatenate([x.numpy() for x, _ in make_dataset(faces, "test", 64, out_size=side)])  # noqa: E731
    return crops(train.take(range(0, min(300, len(train))))), val, crops(val)


def _worker(task: dict) -> dict:
    """One model x runtime in this process: threads are fixed before TensorFlow starts."""
    threads = task["threads"]
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import resource

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from rcn_keras.evaluation.report import headline_nme
    from rcn_keras.export import export_model
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.runtimes import ExportedLandmarker

    model = load_landmarker(task["model"])
    rep, val, crops = _faces(task["root"], model.num_keypoints, model.input_size)
    batch = task["batch"]
    runtime = task["runtime"]
    with tempfile.TemporaryDirectory() as tmp:
        if runtime == "keras":
            fn = tf.function(lambda x: model(x, training=False))
            run = lambda x: {k: v.numpy() for k, v in fn(tf.constant(x)).items() if k != "presoftmax"}  # noqa: E731
        elif runtime == "saved_model":
            sm = tf.saved_model.load(str(export_model(model, os.path.join(tmp, "sm"), "saved_model")))
            run = lambda x: {k: v.numpy() for k, v in sm.serve(tf.constant(x)).items()}  # noqa: E731
        else:
            if runtime == "onnxruntime":
                path = export_model(model, os.path.join(tmp, "m.onnx"), "onnx")
            else:
                quantize = {"litert_fp32": "none", "litert_fp16": "float16", "litert_int8": "int8"}[runtime]
                path = export_model(model, os.path.join(tmp, "m.tflite"), "tflite", batch_size=batch,
                                    quantize=quantize, representative=rep)
            task["file_kb"] = round(os.path.getsize(path) / 1024)
            runner = ExportedLandmarker(path, threads=threads)
            run = runner
        x = np.ascontiguousarray(crops[:batch]) if len(crops) >= batch else np.resize(crops, (batch,) + crops.shape[1:])
        for _ in range(5):
            run(x)
        reps = task["reps"]
        start = time.perf_counter()
        for _ in range(reps):
            run(x)
        seconds = (time.perf_counter() - start) / reps
        out = {"ms_per_face": 1000 * seconds / batch, "faces_per_s": batch / seconds}
        if task["score"]:
            pred = np.concatenate([run(crops[i:i + batch])["keypoints"] if len(crops[i:i + batch]) == batch else
                                   run(np.resize(crops[i:i + batch], (batch,) + crops.shape[1:]))["keypoints"]
                                   [:len(crops[i:i + batch])] for i in range(0, len(crops), batch)])
            out["nme"] = headline_nme(pred, _normalised(val), val)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["file_kb"] = task.get("file_kb")
    return out


def _normalised(faces):
    """Ground truth of ``faces`` in the normalised [0, 1] frame of the crop (as the predictions)."""
    import numpy as np

    from rcn_keras.data.pipeline import make_dataset

    return np.concatenate([y.numpy()[..., :2] for _, y in make_dataset(faces, "test", 64)])


def _run_task(task: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1][len("RESULT "):])


def _dlib(root: str, reps: int) -> dict:
    """dlib's ERT on the 68-point validation faces, one thread: ms per face and NME with the same scoring,
    from its own HOG detector's box (the box it was trained with; the face square where it finds none)."""
    import numpy as np

    from peer_dlib import detector_boxes, dlib_points, load_dlib
    from rcn_keras.data.datasets import load_300w
    from rcn_keras.evaluation.report import headline_nme

    parts = load_dlib()
    if parts is None:
        return {"error": "dlib not installed (pip install -e '.[peers]')"}
    val = load_300w(root, ("afw", "helen_train"), 68, cache_dir=CACHE).split(0.1)[1]
    boxes = detector_boxes(parts, val)
    times = []
    for _ in range(reps):
        pts, seconds, detected = dlib_points(parts, val, boxes)
        times.append(seconds)
    nme = headline_nme(pts, _normalised(val), val)
    return {"ms_per_face": 1000 * float(np.median(times)), "nme": nme, "detected": f"{detected}/{len(val)}"}


def predict_throughput(root: str, model_name: str, rounds: int = 3) -> dict:
    """Faces/s of `Landmarker.predict` on the 120 validation photos with their landmark boxes (two
    threads), against crops made as before issue 17 (one eager TensorFlow warp per image, then
    `predict_crops`), interleaved in one process."""
    import numpy as np
    import tensorflow as tf

    from rcn_keras.boxes import crop_rect
    from rcn_keras.data import augment as aug
    from rcn_keras.data.formats import load_image
    from rcn_keras.landmarker import load_landmarker

    model = load_landmarker(model_name)
    from rcn_keras.data.datasets import SUBSETS_300W, image_beside, load_300w
    from rcn_keras.data.formats import read_pts

    val = load_300w(root, ("afw", "helen_train"), 68, cache_dir=CACHE).split(0.1)[1]
    photos, boxes = [], []
    for name, group in zip(val.names, val.groups):
        pts_path = pathlib.Path(root) / SUBSETS_300W[group] / f"{name}.pts"
        pts = read_pts(pts_path, n_points=68) - 0.5
        photos.append(load_image(image_beside(pts_path), "RGB"))
        lo, hi = pts.min(0), pts.max(0)
        boxes.append((float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])))

    def before():
        crops = []
        for rgb, box in zip(photos, boxes):
            grey = tf.constant(rgb @ np.array([0.299, 0.587, 0.114], np.float32))
            rect = crop_rect(rgb.shape[:2], box)
            tl, k, c, sn = aug.warp_params(tf.constant(rect, tf.float32), tf.constant(1.0), 0.0, 0.0, tf.constant(0.0))
            crops.append(aug.warp_image(grey, tl, k, c, sn).numpy())
        return model.predict_crops(np.stack(crops))

    def now():
        return model.predict(photos, boxes=boxes)

    times = {"before": [], "now": []}
    now(), before()
    for _ in range(rounds):
        for name, fn in (("before", before), ("now", now)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    out = {name: len(photos) / min(t) for name, t in times.items()}
    return {"faces_per_s_before": out["before"], "faces_per_s_now": out["now"], "speedup": out["now"] / out["before"],
            "photos": len(photos)}


def plot(rows: list[dict], path: pathlib.Path) -> None:
    """Speed (ms per face, batch 1, one thread) against validation NME: colour = model, marker = runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rcn_keras.visualize import figure_to_png

    markers = dict(zip(RUNTIMES, "osD^vP"))
    models = list(dict.fromkeys(r["model"] for r in rows if r["model"] != "dlib ERT"))
    colours = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in rows:
        if r.get("nme") is None or r.get("ms b1") is None:
            continue
        if r["model"] == "dlib ERT":
            ax.scatter(r["ms b1"], r["nme"], marker="*", s=220, color="black", label="dlib ERT (C++)")
        else:
            ax.scatter(r["ms b1"], r["nme"], marker=markers.get(r["runtime"], "o"), s=55, color=colours[r["model"]],
                       label=f"{r['model']}, {r['runtime']}", alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel("ms per face (batch 1, one thread, log scale)")
    ax.set_ylabel("validation NME % (eye-corner midpoints)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    figure_to_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", default=str(SHARED))
    parser.add_argument("--models", nargs="+", default=["rcn-300w", "rcn-300w-fast", "rcn-afw5"])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--reps", type=int, default=200, help="timed calls at batch 1 (batch 64: a tenth)")
    parser.add_argument("--replot", action="store_true", help="redraw the plot from the stored JSON and stop")
    parser.add_argument("--results", default="speed_vs_dlib", metavar="NAME",
                        help="write results/NAME.{md,json,png} (another name keeps the shipped models' grid)")
    args = parser.parse_args()
    if args.replot:
        stored = json.loads((RESULTS / f"{args.results}.json").read_text())["rows"]
        plot([r for r in stored if r["model"] != "rcn-afw5"], RESULTS / f"{args.results}.png")
        return
    if args.worker:
        print("RESULT " + json.dumps(_worker(json.loads(args.worker))))
        return
    if not (pathlib.Path(args.root) / "afw").is_dir():
        print(f"skipped: no 300W data at {args.root}")
        return
    rows = []
    dlib_before = _dlib(args.root, 3)
    for model in args.models:
        for runtime in args.runtimes:
            common = {"model": model, "runtime": runtime, "root": args.root}
            b1 = _run_task({**common, "batch": 1, "threads": 1, "reps": args.reps, "score": True})
            b64 = _run_task({**common, "batch": 64, "threads": 2, "reps": max(3, args.reps // 20), "score": False})
            row = {"model": model, "runtime": runtime, "ms b1": b1.get("ms_per_face"),
                   "faces/s b64": b64.get("faces_per_s"), "peak MB": b1.get("peak_mb"), "file KB": b1.get("file_kb"),
                   "nme": b1.get("nme"), "error": b1.get("error") or b64.get("error") or ""}
            rows.append(row)
            print(f"{model} {runtime}: {row}", flush=True)
    dlib_after = _dlib(args.root, 3)
    dlib_ms = (dlib_before.get("ms_per_face", float("nan")) + dlib_after.get("ms_per_face", float("nan"))) / 2
    rows.append({"model": "dlib ERT", "runtime": "dlib 20 (C++)", "ms b1": dlib_ms, "faces/s b64": 1000 / dlib_ms,
                 "nme": dlib_before.get("nme"), "error": dlib_before.get("error", "")})
    for r in rows:
        r["x dlib"] = r["ms b1"] / dlib_ms if r.get("ms b1") else None
    columns = ["model", "runtime", "ms b1", "x dlib", "faces/s b64", "peak MB", "file KB", "nme", "error"]
    text = print_table(rows, columns)
    throughput = predict_throughput(args.root, args.models[0])
    line = (f"Landmarker.predict on {throughput['photos']} photos with face boxes ({args.models[0]}, two threads): "
            f"{throughput['faces_per_s_now']:.0f} faces/s; with one eager TensorFlow warp per image as before: "
            f"{throughput['faces_per_s_before']:.0f} faces/s ({throughput['speedup']:.1f}x).")
    print(line)
    from rcn_keras.files import atomic_write_text

    atomic_write_text(RESULTS / f"{args.results}.md",
                      "# Speed and accuracy vs dlib\n\nms b1: ms per face at batch 1 on one thread; faces/s b64: "
                      "batch 64 on two threads; nme: 300W validation split (5 points: AFW), eye-corner "
                      "midpoints (5 points: eye centres); x dlib: ms b1 / dlib's ms per face in the same run.\n\n"
                      + text + "\n\n" + line + "\n")
    write_results(args.results, {"rows": rows, "dlib_before": dlib_before, "dlib_after": dlib_after,
                                 "predict_throughput": throughput})
    plot([r for r in rows if r["model"] != "rcn-afw5"], RESULTS / f"{args.results}.png")


if __name__ == "__main__":
    main()
