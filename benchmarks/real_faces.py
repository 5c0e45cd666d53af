"""Real-face recipe report (issue 15): learning curves of training runs and, for each run's best model,
validation NME with every normaliser and read-out, from landmark boxes and from boxes jittered the way
face detectors leave them, and the cost and gain of flip test-time averaging.

Only the validation split is used (the seed-7345 10 % split of AFW + HELEN train for 68 points,
of HELEN train for 5 points), beside the training faces without augmentation (to see under-fitting).
Writes ``results/real_faces.json``, ``results/real_faces.md``, ``results/learning_curves.csv`` and
``results/learning_curves.png``.

    python benchmarks/real_faces.py runs/real_v2_68 runs/real_rcn300w_w05 --root ../shared/data/300w
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import pathlib
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import RESULTS, cpu_name, environment, print_table, write_results  # noqa: E402

DETECTOR_JITTER = {"scale": 0.05, "centre": 0.04}  # sigma of log-scale and of centre shift (docs: detectors)


def jittered(faces, seed: int = 0, scale: float = DETECTOR_JITTER["scale"], centre: float = DETECTOR_JITTER["centre"]):
    """The same faces with their crop rectangles moved as a face detector's calibrated box would be:
    side x exp(N(0, scale)), centre + N(0, centre) x side (a fixed draw per seed)."""
    rng = np.random.default_rng(seed)
    rects = faces.rects.astype(np.float64).copy()
    s = rects[:, 2]
    new_s = s * np.exp(rng.normal(0, scale, len(s)))
    cx = rects[:, 0] + s / 2 + rng.normal(0, centre, len(s)) * s
    cy = rects[:, 1] + s / 2 + rng.normal(0, centre, len(s)) * s
    rects[:, 0], rects[:, 1], rects[:, 2] = cx - new_s / 2, cy - new_s / 2, new_s
    return dataclasses.replace(faces, rects=rects.astype(np.float32))


def seconds_per_face(fn, faces, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / len(faces)


def score_run(folder: pathlib.Path, root: str) -> tuple[list[dict], dict]:
    from rcn_keras.app.training.config import TrainConfig
    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.sources import load_splits
    from rcn_keras.evaluation.report import evaluate_predictions, headline_rows, predict_faceset
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.models.config import READOUTS

    config = TrainConfig.load(folder / "config.json").with_overrides({"data.root": root, "data.test_subsets": []})
    model = load_landmarker(folder / "best.keras")
    splits = load_splits(config.data, config.num_keypoints, crop_size=crop_side(model.input_size))
    val = splits.validation
    rows, headline = [], {}

    def add(label, pred, gt, faces, readout):
        scored = headline_rows(evaluate_predictions(pred, gt, faces)["rows"])
        for r in scored:
            rows.append({"run": folder.name, "input": label, "readout": readout, "normaliser": r["normaliser"],
                         "faces": r["faces"], "nme": r["nme"], "fr10": r["fr10"], "auc8": r["auc8"]})
        return scored[0]["nme"]

    for readout in READOUTS:
        pred, gt, _ = predict_faceset(model, val, 64, readout)
        headline[f"landmark box/{readout}"] = add("landmark box", pred, gt, val, readout)
    # The training faces without augmentation: near the validation figure = the model underfits.
    pred, gt, _ = predict_faceset(model, splits.train, 64)
    headline["training faces"] = add("training faces, landmark box", pred, gt, splits.train, model.readout)
    moved = jittered(val)
    pred, gt, _ = predict_faceset(model, moved, 64)
    headline["jittered box"] = add("detector-like jittered box", pred, gt, moved, model.readout)
    pred, gt, _ = predict_faceset(model, val, 64, flip=True)
    headline["flip averaged"] = add("landmark box, flip-averaged", pred, gt, val, model.readout)
    plain = seconds_per_face(lambda: predict_faceset(model, val, 64), val)
    both = seconds_per_face(lambda: predict_faceset(model, val, 64, flip=True), val)
    headline.update(readout=model.readout, ms_per_face=1000 * plain, flip_cost=both / plain,
                    params=int(model.backbone.count_params()), faces=len(val))
    return rows, headline


def ensemble_nme(folders: list[pathlib.Path], root: str) -> float:
    """Validation NME of the mean of the runs' predicted points (each best model with its own read-out):
    what the runs' disagreement is worth; near the single runs' figures = they share their errors."""
    from rcn_keras.app.training.config import TrainConfig
    from rcn_keras.data.sources import load_splits
    from rcn_keras.evaluation.report import headline_nme, predict_faceset
    from rcn_keras.landmarker import load_landmarker

    configs = [TrainConfig.load(f / "config.json").with_overrides({"data.root": root, "data.test_subsets": []})
               for f in folders]
    if len({json.dumps(c.to_dict()["data"], sort_keys=True) for c in configs}) != 1:
        raise SystemExit("--ensemble: the runs must share their data and validation split")
    val = load_splits(configs[0].data, configs[0].num_keypoints).validation
    preds = [predict_faceset(load_landmarker(f / "best.keras"), val, 64) for f in folders]
    mean = np.mean([pred for pred, _, _ in preds], axis=0)
    return headline_nme(mean, preds[0][1], val)


def learning_curves(folders: list[pathlib.Path]) -> list[dict]:
    from rcn_keras.app.training.callbacks import read_log

    from rcn_keras.app.training.config import TrainConfig

    out = []
    for folder in folders:
        # The validation crops carry the run's own jitter and occlusion: curves of runs that differ in
        # occlusion are not on one scale (the clean figures are in the scoring table).
        config = TrainConfig.load(folder / "config.json")
        # the read-out of the in-training NME (summary.json; runs before it was recorded used the arg-max)
        summary = folder / "summary.json"
        readout = json.loads(summary.read_text()).get("val_readout", "argmax") if summary.is_file() else "argmax"
        for r in read_log(folder / "log.csv"):
            out.append({"run": folder.name, "epoch": int(r["epoch"]), "train_minutes": r.get("train_minutes"),
                        "val_nme": r.get("val_nme"), "loss": r.get("loss"), "val_occluded": config.augment.occlusion,
                        "val_readout": readout})
    return out


def merged(old: list[dict], new: list[dict]) -> list[dict]:
    """Rows of earlier measurements (``old``) of runs not measured now, then ``new``: the results files keep
    the record of runs whose folders are gone (training runs are not committed)."""
    now = {r["run"] for r in new}
    return [r for r in old if r["run"] not in now] + new


def read_curves(path: pathlib.Path) -> list[dict]:
    """The learning curves CSV written before (numbers as floats; missing read-out = the arg-max)."""
    if not path.is_file():
        return []
    rows = []
    for r in csv.DictReader(io.StringIO(path.read_text())):
        numbers = {k: float(r[k]) if r.get(k) else None for k in ("train_minutes", "val_nme", "loss")}
        rows.append({**r, **numbers, "epoch": int(r["epoch"]), "val_occluded": r["val_occluded"] == "True",
                     "val_readout": r.get("val_readout") or "argmax"})
    return rows


def plot_curves(curves: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in dict.fromkeys(c["run"] for c in curves):
        sel = [c for c in curves if c["run"] == run and c["val_nme"] is not None]
        label = (f"{run} ({'occluded' if sel and sel[0]['val_occluded'] else 'unoccluded'} val. crops, "
                 f"{sel[0]['val_readout'] if sel else 'argmax'})")
        axes[0].plot([c["epoch"] for c in sel], [c["val_nme"] for c in sel], label=label)
        timed = [c for c in sel if c["train_minutes"] is not None]
        if timed:
            axes[1].plot([c["train_minutes"] for c in timed], [c["val_nme"] for c in timed], label=label)
    for ax, xlabel in zip(axes, ("epoch", "training minutes (2 cores)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("val. NME % (in training: jittered crops)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from rcn_keras.files import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="training run folders (config.json, log.csv, best.keras)")
    parser.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared/data/300w"))
    parser.add_argument("--curves-only", action="store_true")
    parser.add_argument("--ensemble", action="store_true",
                        help="also score the mean of the runs' predicted points (same keypoints and split)")
    args = parser.parse_args()
    folders = [pathlib.Path(r) for r in args.runs]
    curves = merged(read_curves(RESULTS / "learning_curves.csv"), learning_curves(folders))
    from rcn_keras.files import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["run", "epoch", "train_minutes", "val_nme", "loss", "val_occluded", "val_readout"])
    writer.writeheader()
    writer.writerows(curves)
    atomic_write_text(RESULTS / "learning_curves.csv", buf.getvalue())
    plot_curves(curves, RESULTS / "learning_curves.png")
    print(f"wrote {RESULTS / 'learning_curves.csv'} and learning_curves.png")
    if args.curves_only:
        return
    previous = json.loads((RESULTS / "real_faces.json").read_text()) if (RESULTS / "real_faces.json").is_file() else {}
    payload = {"env": environment(), "runs": [str(f) for f in folders], "jitter": DETECTOR_JITTER}
    if not (pathlib.Path(args.root) / "afw").is_dir():
        print(f"skipped scoring: no 300W data at {args.root}")
    else:
        rows, headlines = [], {}
        for folder in folders:
            r, h = score_run(folder, args.root)
            rows += r
            headlines[folder.name] = {**h, "cpu": cpu_name()}
        rows = merged(previous.get("rows", []), rows)
        if args.ensemble:
            name = "ensemble(" + "+".join(f.name for f in folders) + ")"
            headlines[name] = {"landmark box/soft_argmax": ensemble_nme(folders, args.root), "cpu": cpu_name()}
            print(f"{name}: {headlines[name]['landmark box/soft_argmax']:.2f} % (landmark box, each run's read-out)")
        headlines = {**{k: v for k, v in previous.get("headline", {}).items() if k not in headlines}, **headlines}
        payload["runs"] = list(dict.fromkeys(previous.get("runs", []) + payload["runs"]))
        table = print_table(rows, ["run", "input", "readout", "normaliser", "faces", "nme", "fr10", "auc8"])
        summary = print_table([{"run": k, **v} for k, v in headlines.items()],
                              ["run", "readout", "params", "faces", "landmark box/" + "soft_argmax",
                               "training faces", "jittered box", "flip averaged", "ms_per_face", "flip_cost"])
        payload.update(rows=rows, headline=headlines)
        atomic_write_text(RESULTS / "real_faces.md", "# Real faces: validation split\n\n" + summary
                          + "\n\n" + table + "\n")
    print(f"wrote {write_results('real_faces', payload)}")


if __name__ == "__main__":
    main()
