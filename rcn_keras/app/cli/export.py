"""``rcn export``: SavedModel or TFLite with a keypoints serving signature and the model's read-out."""

from __future__ import annotations

import argparse

from rcn_keras.app.cli.common import positive_int
from rcn_keras.export import FORMATS
from rcn_keras.models.config import READOUTS

NAME = "export"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="SavedModel or TFLite with a keypoints serving signature")
    p.add_argument("--model", required=True, help=".keras file, shipped model name, or joint:RCN,DENOISER")
    p.add_argument("--format", choices=FORMATS, default="saved_model")
    p.add_argument("--readout", choices=READOUTS, default=None, help="keypoint read-out (default: the model's own)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="fixed batch size (TFLite default 1; SavedModel default: any)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from rcn_keras.landmarker import load_landmarker

    model = load_landmarker(args.model)
    path = model.export(args.out, args.format, args.readout, args.batch_size)
    print(f"exported {args.format} ({args.readout or model.readout} read-out) to {path}")
    return 0
