"""68-point models side by side on the validation faces: each model on the 300W validation split
(the seed-7345 10 % of AFW + HELEN train, which no shipped 68-point model trained on), read four ways:
the read-out alone, with its shape prior (one fitted on the 1,087 training faces where the model has
none), flip-averaged with the prior, and from detector-like boxes with the prior; beside its parameters,
training faces and time, and where the error sits (NME per face region with the shape prior; the jaw's error
along and across its contour); with --mean, a last row for the mean of the models' points (an ensemble); with
--split train, the same on the training faces (how well each fits what it learned). Writes
results/self_training.{json,md} (--results NAME: results/NAME.*, for other comparisons beside the
committed one).

    python benchmarks/self_training.py rcn-300w runs/st1 rcn-300w-fast runs/fast_st1
    python benchmarks/self_training.py rcn-300w runs/s1c --mean --results independent_seed
    python benchmarks/self_training.py rcn-300w-fast rcn-300w-hr --split train --results fit_train
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import RESULTS, data_missing, environment, print_table, write_results  # noqa: E402
from real_faces import jittered  # noqa: E402
from rcn_keras.evaluation.regions import REGION_COLUMNS  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
COLUMNS = ["model", "params", "train faces", "train min", "read-out alone", "shape prior", "flip + prior",
           "detector-like box + prior"]
PRIOR = 1  # the reading (index into COLUMNS[4:]) whose errors are split by region


def describe(spec: str) -> tuple[str, dict]:
    """The model file of ``spec`` (a shipped name or a run folder) and what is known of its training."""
    folder = pathlib.Path(spec)
    if folder.suffix == ".keras" and folder.is_file():  # a model file (e.g. a shipped model's earlier version)
        return spec, {"train faces": None, "train min": None}
    if (folder / "best.keras").is_file():
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
        return str(folder / "best.keras"), {"train faces": summary.get("train_faces"),
                                            "train min": (summary.get("train_seconds") or 0) / 60 or None}
    from rcn_keras.presets import get_preset

    card = get_preset(spec).card() or {}
    faces = re.search(r"(\d[\d,]*) training faces", card.get("data", ""))  # e.g. "(1087 training faces; ..."
    return spec, {"train faces": int(faces.group(1).replace(",", "")) if faces else None,
                  "train min": card.get("train_minutes")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="shipped model names, training run folders or .keras files")
    p.add_argument("--root", default=str(SHARED))
    p.add_argument("--results", default="self_training", metavar="NAME", help="write results/NAME.{md,json}")
    p.add_argument("--split", choices=("validation", "train"), default="validation",
                   help="the faces scored: the validation split, or the 1,087 training faces (how well a model "
                        "fits what it learned; the fitted shape prior has seen them)")
    p.add_argument("--mean", action="store_true",
                   help="a last row for the mean of the models' points (an ensemble), each reading as above")
    args = p.parse_args(argv)
    if data_missing(args.root):
        return 0
    from rcn_keras.app.training.fit import training_shapes
    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.sources import DataConfig, load_splits
    from rcn_keras.evaluation.report import headline_nme, headline_regions, predict_faceset
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.models.shape_prior import ShapePrior

    split_at = {}  # crop side -> (splits, validation, jittered validation): a 160 network's faces at 320

    def faces_for(side):
        if side not in split_at:
            splits = load_splits(DataConfig(source="300w", root=args.root), 68, crop_size=crop_side(side))
            faces = getattr(splits, args.split)
            split_at[side] = splits, faces, jittered(faces)
        return split_at[side]

    splits, scored, moved = faces_for(80)
    sides = set()
    fitted = None
    rows, regions, points = [], [], []  # points: per model, the predicted points of each reading (COLUMNS[4:])
    for spec in args.models:
        path, info = describe(spec)
        model = load_landmarker(path)
        _, scored, moved = faces_for(model.input_size)
        sides.add(model.input_size)
        prior = model.shape_prior
        if prior is None:
            fitted = fitted or ShapePrior.from_shapes(training_shapes(splits.train))
            prior = fitted
        plain, with_prior = model.with_shape_prior(None), model.with_shape_prior(prior)
        readings = [(plain, scored, False), (with_prior, scored, False), (with_prior, scored, True),
                    (with_prior, moved, False)]
        predicted = [predict_faceset(m, faces, flip=flip)[:2] for m, faces, flip in readings]
        points.append([pred for pred, _ in predicted])
        truths = [(gt, faces) for (_, gt), (_, faces, _) in zip(predicted, readings)]  # the same for every model
        rows.append({"model": spec, "params": int(model.backbone.count_params()), **info,
                     "own prior": model.shape_prior is not None,
                     **{column: headline_nme(pred, *truth)
                        for column, pred, truth in zip(COLUMNS[4:], points[-1], truths)}})
        regions.append({"model": spec, **headline_regions(points[-1][PRIOR], *truths[PRIOR])})
    if args.mean and len(sides) > 1:
        raise SystemExit("--mean: the models must take crops of one side (their points are in the crop's frame)")
    if args.mean and len(points) > 1:
        name = "mean of the points of " + " + ".join(args.models)
        rows.append({"model": name, "params": None, "train faces": None, "train min": None, "own prior": None,
                     **{column: headline_nme(np.mean([p[i] for p in points], axis=0), *truths[i])
                        for i, column in enumerate(COLUMNS[4:])}})
        regions.append({"model": name, **headline_regions(np.mean([p[PRIOR] for p in points], axis=0),
                                                          *truths[PRIOR])})
    print(f"300W {args.split}, {len(scored)} faces, NME % by the eye-corner midpoints")
    table = print_table(rows, COLUMNS)
    print(f"\nPer face region, {COLUMNS[4 + PRIOR]}")
    region_table = print_table(regions, ["model", *REGION_COLUMNS])
    from rcn_keras.files import atomic_write_text

    command = " ".join(["python benchmarks/self_training.py", *(argv if argv is not None else sys.argv[1:])])
    atomic_write_text(RESULTS / f"{args.results}.md", f"# 68-point models on the {args.split} split\n\n"
                      f"300W {args.split}, {len(scored)} faces, NME % by the eye-corner midpoints "
                      f"(`{command}`).\n\n" + table + f"\n\nWhere the error sits ({COLUMNS[4 + PRIOR]}): NME % per "
                      "face region, and the jaw's mean error along and across its true contour:\n\n"
                      + region_table + "\n")
    print(f"wrote {write_results(args.results, {'rows': rows, 'regions': regions, 'environment': environment()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
