"""``rcn evaluate``: NME report (every normaliser, subsets, FR, AUC, CED) of a model on a dataset."""

from __future__ import annotations

import argparse
import pathlib

from rcn_keras.app.cli.common import add_overwrite_option, positive_int
from rcn_keras.data.sources import EVAL_SOURCES
from rcn_keras.models.config import READOUTS

NAME = "evaluate"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="NME report of a model on a dataset")
    p.add_argument("--model", required=True, help=".keras file, shipped model name, or joint:RCN,DENOISER")
    p.add_argument("--data", choices=EVAL_SOURCES, default="synthetic")
    p.add_argument("--root", help="dataset folder (300w, mtfl, afw, pts) or annotation file (csv, coco)")
    p.add_argument("--subsets", nargs="+", default=["afw", "helen_train"], help="300W subsets or groups")
    p.add_argument("--list-file", default="testing.txt", help="MTFL list (testing.txt = AFLW)")
    p.add_argument("--faces", type=positive_int, default=300, help="synthetic faces to evaluate on")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--mode", choices=("continuous", "paper"), default="continuous")
    p.add_argument("--readout", choices=READOUTS, default=None, help="keypoint read-out (default: the model's own)")
    p.add_argument("--flip", action="store_true",
                   help="flip test-time averaging: each crop and its mirror image (twice the network time)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    p.add_argument("--out", default="evaluation",
                   help="report folder: a new or empty one, or an earlier rcn evaluate report (replaced)")
    add_overwrite_option(p, "report.md, report.json and ced.png are replaced")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.sources import load_faces
    from rcn_keras.evaluation.report import (REPORT_COLUMNS, evaluate_predictions, headline_rows, predict_faceset,
                                             region_table, write_report)
    from rcn_keras.app.output_folder import check_folder, claim_folder
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.markdown import markdown_table

    check_folder(args.out, NAME, args.overwrite)  # before the model and the faces are read
    model = load_landmarker(args.model)
    readout = args.readout or model.readout
    model.mirror_permutation(args.flip)  # a scheme without a mirror fails before the data is read
    faces = load_faces(args.data, args.root, model.num_keypoints, args.subsets, args.list_file, args.faces,
                       args.seed, args.on_error, crop_rule=model.keypoints.crop,
                       crop_size=crop_side(model.input_size))
    pred, gt, _ = predict_faceset(model, faces, args.batch_size, readout, flip=args.flip)
    result = evaluate_predictions(pred, gt, faces, mode=args.mode, scheme=model.keypoints)
    claim_folder(args.out, NAME, args.overwrite)
    write_report(args.out, {str(args.model): result}, {"data": args.data, "faces": len(faces), "readout": readout,
                                                       "flip_averaged": args.flip})
    print(markdown_table(headline_rows(result["rows"]), REPORT_COLUMNS))
    if result.get("regions"):
        print(region_table(result["regions"], f"NME % per face region ({result['rows'][0]['normaliser']})"))
    print(f"read-out {readout}{', flip-averaged' if args.flip else ''}; report: {pathlib.Path(args.out) / 'report.md'}")
    return 0
