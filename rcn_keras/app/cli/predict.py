"""``rcn predict``: keypoints for images (JSON, CSV, overlay PNGs); unreadable images are reported and
skipped, the others are still written."""

from __future__ import annotations

import argparse
import sys

from rcn_keras.app.cli.common import positive_int
from rcn_keras.boxes import BOX_FORMAT_NAMES
from rcn_keras.models.config import READOUTS

NAME = "predict"
EXIT_SOME_FAILED = 2


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="keypoints for images (JSON, CSV, overlay PNGs)")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", required=True, help=".keras file, shipped model name, or joint:RCN,DENOISER")
    p.add_argument("--box", help="face box x,y,w,h for every image (default: each image is a face crop)")
    p.add_argument("--boxes", help="file of 'image,x,y,w,h' lines (image as given on the command line, or its "
                                   "file name when unique)")
    p.add_argument("--box-format", default=None,
                   help=f"what the boxes are (default: the model's; built-in: {', '.join(BOX_FORMAT_NAMES)})")
    p.add_argument("--readout", choices=READOUTS, default=None, help="keypoint read-out (default: the model's own)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--out", default="predictions")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from rcn_keras.boxes import parse_box, read_boxes_file
    from rcn_keras.inference import write_predictions
    from rcn_keras.landmarker import load_landmarker

    boxes = None
    if args.box:
        boxes = [parse_box(args.box)] * len(args.images)
    elif args.boxes:
        boxes = read_boxes_file(args.boxes)
    model = load_landmarker(args.model)
    results = model.predict(args.images, boxes=boxes, box_format=args.box_format, readout=args.readout,
                            batch_size=args.batch_size, on_error="skip")
    failed = [r for r in results if "error" in r]
    if len(failed) == len(results):
        raise ValueError(failed[0]["error"] + (f" (and {len(failed) - 1} more unreadable image(s))"
                                               if len(failed) > 1 else ""))
    written = write_predictions(results, args.out, overlay=not args.no_overlay)
    for r in results:
        if "error" in r:
            print(f"rcn: skipped {r['error']}", file=sys.stderr)
        else:
            print(f"{r['image']}: {len(r['keypoints'])} keypoints, mean confidence {r['confidence'].mean():.3f}")
    print(f"wrote {len(written)} file(s) to {args.out} (keypoints.json, keypoints.csv"
          f"{', overlays' if not args.no_overlay else ''})")
    if failed:
        print(f"rcn: {len(failed)} of {len(results)} image(s) could not be read", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0
