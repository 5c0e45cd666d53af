"""How far a 68-point model's 5 derived points may be from the true 5 before its other points are not to be
trusted: the threshold of `rcn data pseudo-label --max-error`, picked on the 300W validation faces (issue 32).

On the validation faces (the seed-7345 10 % split of AFW + HELEN train, never trained on) the model's points
are scored twice: the 5-point agreement `rcn data pseudo-label` computes (against the 5 points derived from
the true 68) and the 68-point NME. Per threshold: the faces kept and the 68-point NME of the kept and the
dropped ones; with ``--labels`` (the JSON `rcn data pseudo-label` writes) also the share of MTFL faces kept.

    python benchmarks/pseudo_label_threshold.py --model rcn-300w --labels runs/pseudo/mtfl68.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import data_missing, environment, print_table, write_results  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
THRESHOLDS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, float("inf"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="rcn-300w")
    p.add_argument("--root", default=str(SHARED))
    p.add_argument("--labels", help="the JSON beside a pseudo-label CSV (per-face agreement on MTFL)")
    args = p.parse_args(argv)
    if data_missing(args.root):
        return 0
    from rcn_keras.data.sources import DataConfig, load_splits
    from rcn_keras.evaluation.nme import per_sample_nme
    from rcn_keras.evaluation.report import predict_faceset
    from rcn_keras.keypoints import afw5_from_68
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.pseudo_labels import agreement

    model = load_landmarker(args.model)
    faces = load_splits(DataConfig(source="300w", root=args.root), 68).validation
    pred, gt, _ = predict_faceset(model, faces, flip=True)
    nme = per_sample_nme(pred, gt, "corner_midpoints") * 100.0
    agree = agreement(pred, afw5_from_68(gt))[0]
    mtfl = None
    if args.labels:
        mtfl = np.array([f["agreement"] for f in json.loads(pathlib.Path(args.labels).read_text())["per_face"]])
    rows = []
    for t in THRESHOLDS:
        kept = agree <= t
        rows.append({"max_error": "none" if np.isinf(t) else f"{t:g}", "validation kept %": 100.0 * kept.mean(),
                     "NME kept %": float(nme[kept].mean()) if kept.any() else None,
                     "NME dropped %": float(nme[~kept].mean()) if (~kept).any() else None,
                     "MTFL kept %": None if mtfl is None else 100.0 * float((mtfl <= t).mean())})
    print(f"{args.model}, flip-averaged, on {len(faces)} validation faces: 68-point NME {nme.mean():.2f} %, "
          f"5-point agreement median {np.median(agree):.2f} %; correlation {np.corrcoef(agree, nme)[0, 1]:.2f}")
    print_table(rows, list(rows[0]))
    payload = {"model": args.model, "faces": len(faces), "nme": float(nme.mean()),
               "correlation": float(np.corrcoef(agree, nme)[0, 1]), "rows": rows,
               "per_face": [{"agreement": float(a), "nme": float(n)} for a, n in zip(agree, nme)],
               "environment": environment()}
    print(f"wrote {write_results('pseudo_label_threshold', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
