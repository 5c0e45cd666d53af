"""Training images/s (oneDNN on/off x XLA on/off in float32, and each compute precision with oneDNN)
for rcn_mtfl and rcn_300w, and inference latency at batch 1 / throughput at batch 64 for Keras,
SavedModel and TFLite, with peak memory (max RSS). Speed-ups are ratios within one run.

Each configuration runs in its own process (oneDNN must be chosen before TensorFlow is imported).

    python benchmarks/speed.py [--train-steps 5] [--models rcn_mtfl rcn_300w rcn_300w_real]
    python benchmarks/speed.py --parts train --precisions float32 mixed_bfloat16 --models rcn_300w_real
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(task: dict) -> dict:
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if task["onednn"] else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import resource
    import tempfile

    import keras
    import numpy as np
    import tensorflow as tf

    import rcn_keras

    rng = np.random.default_rng(0)
    keras.mixed_precision.set_global_policy(task.get("precision", "float32"))
    model = rcn_keras.build_model(task["model"])
    k = model.output.shape[-1]
    result = {}
    if task["kind"] == "train":
        b = task["batch"]
        x = rng.uniform(0, 255, (b, 80, 80, 1)).astype("float32")
        y = np.concatenate([rng.uniform(0.2, 0.8, (b, k, 2)), np.ones((b, k, 1))], -1).astype("float32")
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        model.compile(keras.optimizers.Adadelta(1.0, rho=0.95, epsilon=1e-8), loss=rcn_keras.PixelNLL(),
                      jit_compile=task["xla"])
        model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace / compile
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=task["steps"], epochs=1, verbose=0)
        result["img_per_s"] = task["steps"] * b / (time.perf_counter() - start)
    else:
        infer = rcn_keras.with_readout(model)
        x1 = rng.uniform(0, 255, (1, 80, 80, 1)).astype("float32")
        x64 = rng.uniform(0, 255, (64, 80, 80, 1)).astype("float32")
        with tempfile.TemporaryDirectory() as tmp:
            if task["runtime"] == "keras":
                fn = tf.function(lambda t: infer(t, training=False)["keypoints"])
                run1, run64 = (lambda: fn(x1).numpy()), (lambda: fn(x64).numpy())
            elif task["runtime"] == "saved_model":
                sm = tf.saved_model.load(str(rcn_keras.export_saved_model(model, os.path.join(tmp, "sm"))))
                run1 = lambda: sm.serve(tf.constant(x1))["keypoints"].numpy()  # noqa: E731
                run64 = lambda: sm.serve(tf.constant(x64))["keypoints"].numpy()  # noqa: E731
            else:
                runners = {}
                for b in (1, 64):
                    path = rcn_keras.export_tflite(model, os.path.join(tmp, f"m{b}.tflite"), batch_size=b)
                    runners[b] = tf.lite.Interpreter(model_path=str(path), num_threads=os.cpu_count()
                                                     ).get_signature_runner("serve")
                run1 = lambda: runners[1](image=x1)["keypoints"]  # noqa: E731
                run64 = lambda: runners[64](image=x64)["keypoints"]  # noqa: E731
            for _ in range(3):
                run1()
            run64()
            n1 = task["reps"]
            start = time.perf_counter()
            for _ in range(n1):
                run1()
            result["latency_ms_b1"] = 1000 * (time.perf_counter() - start) / n1
            n64 = max(2, task["reps"] // 10)
            start = time.perf_counter()
            for _ in range(n64):
                run64()
            result["faces_per_s_b64"] = 64 * n64 / (time.perf_counter() - start)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_task(task: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], capture_output=True,
                          text=True, timeout=1800, cwd=HERE)
    if proc.returncode != 0:
        return {**task, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return {**task, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["rcn_mtfl", "rcn_300w"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--parts", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        help="compute precisions to train with (oneDNN on, no XLA)")
    parser.add_argument("--no-onednn-grid", action="store_true", help="skip the oneDNN x XLA float32 grid")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    sys.path.insert(0, HERE)
    from _common import environment, print_table, write_results

    train_rows, infer_rows = [], []
    for model in args.models:
        steps = args.train_steps if model.endswith("mtfl") else max(2, args.train_steps // 2)
        grid = [] if args.no_onednn_grid else [(o, x, "float32") for o in (True, False) for x in (False, True)]
        grid += [(True, False, p) for p in args.precisions if p != "float32" or args.no_onednn_grid]
        for onednn, xla, precision in grid if "train" in args.parts else ():
            row = run_task({"kind": "train", "model": model, "onednn": onednn, "xla": xla, "precision": precision,
                            "batch": args.batch, "steps": steps})
            train_rows.append(row)
            print(row, flush=True)
        base = next((r for r in train_rows if r["model"] == model and r["onednn"] and not r["xla"]
                     and r["precision"] == "float32" and "img_per_s" in r), None)
        for r in train_rows:
            if r["model"] == model and base is not None and "img_per_s" in r:
                r["vs_float32"] = r["img_per_s"] / base["img_per_s"]
        for runtime in ("keras", "saved_model", "tflite") if "infer" in args.parts else ():
            row = run_task({"kind": "infer", "model": model, "onednn": True, "runtime": runtime,
                            "reps": args.reps})
            infer_rows.append(row)
            print(row, flush=True)
    for rows in (train_rows, infer_rows):
        for r in rows:
            r.setdefault("img_per_s", float("nan"))
            r.setdefault("latency_ms_b1", float("nan"))
            r.setdefault("faces_per_s_b64", float("nan"))
            r.setdefault("peak_rss_mb", float("nan"))
            r.setdefault("vs_float32", float("nan"))
    t1 = print_table(train_rows, ["model", "onednn", "xla", "precision", "img_per_s", "vs_float32", "peak_rss_mb"])
    t2 = print_table(infer_rows, ["model", "runtime", "latency_ms_b1", "faces_per_s_b64", "peak_rss_mb"])
    name = "speed" if len(args.parts) == 2 else f"speed_{args.parts[0]}"
    path = write_results(name, {"env": environment(), "args": vars(args), "train": train_rows,
                                   "inference": infer_rows, "tables": [t1, t2]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
