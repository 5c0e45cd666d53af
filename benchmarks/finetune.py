"""Fine-tuning vs training from scratch on a keypoint set of the user's own (issue 19).

Writes a COCO keypoints file with a subset of the 68 points (default: 19) of the 300W AFW + HELEN
training faces (image paths point into the dataset; nothing is copied), in the order `load_300w` reads
them, so that the seed-7345 validation split is the very one `rcn-300w` was selected on and never
trained on. Then trains the same network (rcn-300w's) with the same recipe and epochs twice: from
scratch and from `rcn-300w` (`--init`: trunk and decoder kept, new output layer), and compares
validation NME per epoch and per minute.

    python benchmarks/finetune.py --root ../shared/data/300w --epochs 12

Writes results/finetune.{json,md,csv,png}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _common import RESULTS, environment, print_table, write_results  # noqa: E402

SUBSETS = {
    # brows (ends and inner), eye corners, nose bridge / tip / wings, mouth corners and centres, chin, jaw ends
    "19": [17, 21, 22, 26, 36, 39, 42, 45, 27, 30, 31, 35, 48, 54, 51, 57, 8, 0, 16],
    "49": None,  # the 49 inner points (rcn_keras.keypoints.POINTS_49)
}
THRESHOLDS = (10.0, 8.0, 7.0, 6.0)


def write_coco_subset(root: pathlib.Path, points: list[int], out: pathlib.Path) -> pathlib.Path:
    """A COCO keypoints JSON of the 300W AFW + HELEN train faces with the 68-point indices ``points``."""
    from rcn_keras.data.datasets import SUBSETS_300W, image_beside, list_pts
    from rcn_keras.data.formats import read_pts
    from rcn_keras.files import atomic_write_bytes

    images, anns = [], []
    for subset in ("afw", "helen_train"):
        for pts in list_pts(root / SUBSETS_300W[subset]):
            p = read_pts(pts, n_points=68) - 1.0  # 1-based .pts -> 0-based pixel centres (COCO)
            i = len(images) + 1
            images.append({"id": i, "file_name": str(image_beside(pts).resolve())})
            kp = [v for x, y in p[points] for v in (round(float(x), 3), round(float(y), 3), 2)]
            anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "keypoints": kp})
    path = out / f"300w_{len(points)}pt.json"
    cats = [{"id": 1, "name": "face", "keypoints": [f"ibug{j + 1}" for j in points]}]
    atomic_write_bytes(path, json.dumps({"images": images, "annotations": anns, "categories": cats}).encode())
    return path


def curve(run: pathlib.Path) -> list[dict]:
    with open(run / "log.csv") as f:
        return [{"epoch": int(r["epoch"]), "val_nme": float(r["val_nme"]), "minutes": float(r["train_minutes"])}
                for r in csv.DictReader(f)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data/300w")
    p.add_argument("--points", choices=sorted(SUBSETS), default="19")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--init", default="rcn-300w", help="the shipped model to fine-tune from")
    p.add_argument("--out", default="runs/finetune")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rcn_keras.app.training.config import preset_train_config
    from rcn_keras.app.training.fit import train
    from rcn_keras.keypoints import FACE_68, POINTS_49
    from rcn_keras.presets import get_preset

    root, out = pathlib.Path(args.root), pathlib.Path(args.out)
    if not (root / "afw").is_dir():
        print(f"no 300W dataset at {root}: pass --root", file=sys.stderr)
        return 2
    points = SUBSETS[args.points] or POINTS_49
    scheme = FACE_68.subset(points, f"face{len(points)}")
    coco = write_coco_subset(root, points, out)
    # the validation split must be the one the model fine-tuned from was selected on
    from rcn_keras.data.datasets import load_coco

    val = load_coco(coco, len(points), cache_dir=str(out / "cache")).split(0.1)[1]
    expected = (pathlib.Path(__file__).resolve().parent / "splits" / "300w_afw+helen_train_68pt_validation.txt")
    if sorted(pathlib.Path(n).stem for n in val.names) != sorted(
            line.split("/")[-1] for line in expected.read_text().split()):
        print("the validation split differs from rcn-300w's: the comparison would not be fair", file=sys.stderr)
        return 1
    # the network of the model fine-tuned from, trained from scratch with the same recipe and epochs
    recipe_preset = get_preset(args.init).name  # a shipped model: its recipe
    common = {"data.source": "coco", "data.root": str(coco), "data.cache_dir": str(out / "cache"),
              "keypoints": scheme.to_dict(), "epochs": args.epochs, "visualize_every": 0, "warmup_epochs": 1}
    rows, curves = [], {}
    variants = (("from scratch", "scratch", {}),
                (f"fine-tuned from {args.init}, new output layer", "finetune", {"init_from": args.init}),
                (f"fine-tuned from {args.init}, output channels of the same points", "finetune_points",
                 {"init_from": args.init, "init_points": list(points)}))
    for name, tag, init in variants:
        folder = out / tag
        config = preset_train_config(recipe_preset, **common, **init, output_dir=str(folder))
        done = (folder / "summary.json").is_file()
        summary = json.loads((folder / "summary.json").read_text()) if done else train(config, verbose=2).summary
        curves[name] = curve(folder)
        best = min(curves[name], key=lambda r: r["val_nme"])
        row = {"start": name, "epochs": args.epochs, "minutes": curves[name][-1]["minutes"],
               "best val NME %": best["val_nme"], "val NME % (read-out)": summary["test_nme"],
               "readout": summary["readout"]}
        for t in THRESHOLDS:
            hit = next((r for r in curves[name] if r["val_nme"] <= t), None)
            row[f"epochs to {t:g} %"] = hit["epoch"] if hit else "-"
        rows.append(row)
    columns = list(rows[0])
    table = print_table(rows, columns)
    speedups = {}
    for row in rows[1:]:
        for t in THRESHOLDS:
            a, b = rows[0][f"epochs to {t:g} %"], row[f"epochs to {t:g} %"]
            if isinstance(b, int):
                speedups[f"{row['start']} / {t:g} %"] = (a / b) if isinstance(a, int) else f">{args.epochs / b:.1f}x"
    note = (f"{len(points)} of the 68 points ({scheme.name}: flip and eye-corner normalisers kept by "
            f"`KeypointScheme.subset`) on the 300W AFW + HELEN training faces; validation = the seed-7345 "
            f"split that {args.init} was selected on (never trained on). Same network and recipe "
            f"({recipe_preset}, {args.epochs} epochs, cosine decay), validation NME with the arg-max read-out per "
            f"epoch (jittered validation crops); the last column with the read-out picked on validation.")
    saved = "\n".join(f"* {k}: {v if isinstance(v, str) else f'{v:.1f}x'}" for k, v in speedups.items())
    md = (f"# Fine-tuning vs from scratch\n\n{note}\n\n{table}\n\nFewer epochs than from scratch to reach "
          f"a validation NME (ratio of epochs; '>' where scratch never reached it):\n\n{saved}\n")
    (RESULTS / "finetune.md").write_text(md)
    with open(RESULTS / "finetune.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", "epoch", "minutes", "val_nme"])
        for name, c in curves.items():
            for r in c:
                w.writerow([name, r["epoch"], f"{r['minutes']:.3f}", f"{r['val_nme']:.3f}"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, c in curves.items():
        axes[0].plot([r["epoch"] for r in c], [r["val_nme"] for r in c], marker="o", ms=3, label=name)
        axes[1].plot([r["minutes"] for r in c], [r["val_nme"] for r in c], marker="o", ms=3, label=name)
    for ax, xl in zip(axes, ("epoch", "training minutes")):
        ax.set_xlabel(xl)
        ax.set_ylabel("validation NME % (arg-max)")
        ax.set_ylim(0, min(40, max(r["val_nme"] for c in curves.values() for r in c) * 1.05))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{len(points)} custom points: fine-tuning vs from scratch")
    fig.tight_layout()
    fig.savefig(RESULTS / "finetune.png", dpi=110)
    write_results("finetune", {"environment": environment(), "note": note, "points": points, "rows": rows,
                               "curves": curves, "epochs_saved": speedups})
    print(f"wrote {RESULTS / 'finetune.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
