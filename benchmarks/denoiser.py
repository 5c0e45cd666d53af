"""Denoiser measurements (issue: denoising keypoint model).

(a) The denoiser alone on held-out 300W shapes (the seed-7345 10 % validation split of AFW + HELEN train
    from ../shared/data/300w; synthetic shapes where that folder is absent): NME of the k corrupted
    points before (random positions) and after denoising, for several k.
(b) With ``--rcn MODEL.keras`` (a 68-point RCN), joint RCN + denoiser vs RCN alone on the same
    validation faces, overall and on the hardest 20 % (by RCN's own error).

    python benchmarks/denoiser.py --epochs 30 [--rcn runs/r300w/best.keras] [--out runs/denoiser_bench]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras  # noqa: E402
from rcn_keras.evaluation.denoiser import denoiser_table, evaluate_denoiser  # noqa: E402
from rcn_keras.evaluation.nme import per_sample_nme  # noqa: E402
from rcn_keras.evaluation.report import predict_faceset  # noqa: E402
from rcn_keras.models.denoising import build_joint_model  # noqa: E402
from rcn_keras.app.training import preset_train_config, train  # noqa: E402
from rcn_keras.data.sources import load_splits  # noqa: E402
from rcn_keras.landmarker import load_landmarker  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import environment, print_table, write_results  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="denoiser_300w_cpu")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rcn", help="a trained 68-point RCN .keras for the joint comparison")
    parser.add_argument("--denoiser", help="skip training: evaluate this denoiser .keras")
    parser.add_argument("--out", default="runs/denoiser_bench")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    real = SHARED.is_dir()
    data = {"data.source": "300w", "data.root": str(SHARED)} if real else {"data.synthetic_train": 2000}
    config = preset_train_config(args.preset, epochs=args.epochs, output_dir=args.out, **data)
    start = time.perf_counter()
    if args.denoiser:
        denoiser = keras.saving.load_model(args.denoiser)
    else:
        denoiser = train(config, resume=args.resume, verbose=2).model
    train_s = time.perf_counter() - start
    val = load_splits(config.data, config.num_keypoints).validation
    rows = evaluate_denoiser(denoiser, val)
    print(denoiser_table(rows))
    payload = {"env": environment(), "args": vars(args), "data": "300w validation" if real else "synthetic",
               "train_seconds": train_s, "denoiser": rows}
    if args.rcn:
        rcn = load_landmarker(args.rcn)
        joint = rcn.__class__(build_joint_model(rcn.backbone, denoiser), rcn.readout)
        errs = {}
        for name, model in (("rcn", rcn), ("joint", joint)):
            pred, gt, _ = predict_faceset(model, val)
            errs[name] = per_sample_nme(pred, gt)
        hard = errs["rcn"] >= np.quantile(errs["rcn"], 0.8)
        table = [{"model": name, "all_nme": 100 * e.mean(), "hardest20_nme": 100 * e[hard].mean()}
                 for name, e in errs.items()]
        payload["joint"] = table
        payload["joint_table"] = print_table(table, ["model", "all_nme", "hardest20_nme"])
    path = write_results("denoiser", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
