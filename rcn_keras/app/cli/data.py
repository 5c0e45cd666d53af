"""``rcn data check``: a dataset's layout checked before training: faces per subset against the published
counts, and one line per missing image, unreadable image or bad annotation (exit code 2 if any)."""

from __future__ import annotations

import argparse

from rcn_keras.data.check import CHECK_SOURCES

NAME = "data"
SHOWN_PROBLEMS = 30
# What to run once a layout checks out (datasets/*.md explain each).
NEXT = {"mtfl": "rcn train --preset rcn_mtfl_real --data mtfl --root {root} --out runs/mtfl",
        "300w": "rcn train --preset rcn_300w_real --data 300w --root {root} --out runs/300w",
        "afw": "rcn evaluate --model rcn-mtfl --data afw --root {root}",
        "pts": "rcn train --data pts --root {root} --keypoints SCHEME.json --out runs/mine",
        "csv": "rcn train --data csv --root {root} --keypoints SCHEME.json --out runs/mine",
        "coco": "rcn train --data coco --root {root} --keypoints SCHEME.json --out runs/mine"}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="check a dataset's layout before training (rcn data check)")
    actions = p.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="count faces per subset against the published counts and list every "
                                             "missing image, unreadable image and bad annotation")
    check.add_argument("--data", required=True, choices=CHECK_SOURCES, help="dataset format (datasets/README.md)")
    check.add_argument("--root", required=True, help="dataset folder (mtfl, 300w, afw, pts) or annotation file "
                                                     "(csv, coco)")
    check.set_defaults(func=run, needs_tensorflow=False)
    return p


def run(args) -> int:
    from rcn_keras.data.check import check_dataset

    report = check_dataset(args.data, args.root)
    print(f"{args.data} at {args.root}")
    print(report.table())
    for line in report.problems[:SHOWN_PROBLEMS]:
        print(f"problem: {line}")
    if len(report.problems) > SHOWN_PROBLEMS:
        print(f"... and {len(report.problems) - SHOWN_PROBLEMS} more problem(s)")
    if not report.ok:
        print(f"rcn: {len(report.problems) or 'no'} problem(s) in {args.root}" +
              ("" if report.problems else ": no faces found"))
        return 2
    print(f"layout ok; next: {NEXT[args.data].format(root=args.root)}")
    return 0
