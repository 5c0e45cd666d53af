"""``rcn export``: SavedModel, TFLite (float32, float16 or int8) or ONNX with a keypoints signature and
the model's read-out."""

from __future__ import annotations

import argparse

from rcn_keras.app.cli.common import add_overwrite_option, positive_int
from rcn_keras.data.sources import DATA_SOURCES
from rcn_keras.export import FORMATS, QUANTIZATIONS
from rcn_keras.models.config import READOUTS

NAME = "export"
REPRESENTATIVE_FACES = 300


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="SavedModel, TFLite or ONNX with a keypoints serving signature")
    p.add_argument("--model", required=True, help=".keras file, shipped model name, or joint:RCN,DENOISER")
    p.add_argument("--format", choices=FORMATS, default="saved_model")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                   help="TFLite only: float16 weights, or int8 weights and activations (needs --data)")
    p.add_argument("--data", choices=DATA_SOURCES,
                   help=f"int8: representative faces ({REPRESENTATIVE_FACES} training faces) to calibrate on")
    p.add_argument("--root", help="dataset folder (300w, mtfl, pts) or annotation file (csv, coco)")
    p.add_argument("--readout", choices=READOUTS, default=None, help="keypoint read-out (default: the model's own)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="fixed batch size (TFLite default 1; SavedModel and ONNX default: any)")
    p.add_argument("--out", required=True,
                   help="the file (tflite, onnx) or folder (saved_model) to write: a new one, or an earlier export "
                        "of the same format (replaced)")
    add_overwrite_option(p, "replaced whole")
    p.set_defaults(func=run)
    return p


def representative_crops(source: str, root: str | None, num_keypoints: int, faces: int = REPRESENTATIVE_FACES,
                         crop_rule: str | None = None, side: int = 80):
    """Un-jittered ``side`` x ``side`` crops (the network's input) of ``faces`` training faces of ``source``
    (the training split only)."""
    import numpy as np

    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.pipeline import make_dataset
    from rcn_keras.data.sources import DataConfig, load_splits

    train = load_splits(DataConfig(source=source, root=root), num_keypoints, crop_rule, crop_side(side)).train
    train = train.take(np.linspace(0, len(train) - 1, min(faces, len(train))).astype(int))
    return np.concatenate([x.numpy() for x, _ in make_dataset(train, "test", 64, out_size=side)])


def run(args) -> int:
    from rcn_keras.export import check_export_path
    from rcn_keras.landmarker import load_landmarker

    if args.quantize != "none" and args.format != "tflite":
        raise ValueError(f"--quantize {args.quantize} is for --format tflite only")
    if args.quantize == "int8" and not args.data:
        raise ValueError("--quantize int8 needs representative faces: --data 300w --root DIR (or --data synthetic)")
    if args.format != "onnx":  # before the model is read (an ONNX file is recognised once its extra is known there)
        check_export_path(args.out, args.format, args.overwrite)
    model = load_landmarker(args.model)
    representative = (representative_crops(args.data, args.root, model.num_keypoints,
                                           crop_rule=model.keypoints.crop, side=model.input_size)
                      if args.quantize == "int8" else None)
    path = model.export(args.out, args.format, args.readout, args.batch_size, quantize=args.quantize,
                        representative=representative, overwrite=args.overwrite)
    quant = f", {args.quantize}" if args.quantize != "none" else ""
    print(f"exported {args.format}{quant} ({args.readout or model.readout} read-out) to {path}")
    return 0
