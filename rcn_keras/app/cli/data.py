"""``rcn data check``: a dataset's layout checked before training: faces per subset against the published
counts, and one line per missing image, unreadable image or bad annotation (exit code 2 if any).
``rcn data pseudo-label``: a 68-point model's points for MTFL's 5-point faces, checked against and anchored
to their true points, as a keypoint CSV that training adds with ``data.extra_train`` (self-training)."""

from __future__ import annotations

import argparse
import shlex

from rcn_keras.app.cli.common import add_overwrite_option, finite_float, positive_int
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
    label = actions.add_parser("pseudo-label", help="a 68-point model's points for MTFL's faces, kept where they "
                                                    "agree with the 5 true points (training adds them with "
                                                    "--set data.extra_train='[\"CSV\"]')")
    label.add_argument("--model", default="rcn-300w", help="the 68-point model: .keras file or shipped name "
                                                            "(its shape prior gives the first crops)")
    label.add_argument("--teacher", choices=("model", "dlib"), default="model",
                       help="who labels the faces: the --model, or dlib's 68-point predictor (the peers extra; "
                            "trained on all of 300-W, research use only), started from --model's mean shape")
    label.add_argument("--root", required=True, help="MTFL folder (datasets/mtfl.md)")
    label.add_argument("--list-file", default="training.txt", help="MTFL list of the faces to label")
    label.add_argument("--out", required=True, help="the keypoint CSV to write (a JSON summary goes beside it): a new "
                                                    "file, or an earlier pseudo-label CSV (replaced)")
    add_overwrite_option(label, "the CSV and its .json summary are replaced")
    label.add_argument("--max-error", type=finite_float, default=None,
                       help="keep faces whose 5 derived points are within this %% of the eye distance of the true "
                            "5 (default 5, picked on 300W validation faces: benchmarks/pseudo_label_threshold.py)")
    label.add_argument("--no-anchor", action="store_true", help="keep the model's points as they are (default: "
                                                                "moved onto the true 5 points)")
    label.add_argument("--no-flip", action="store_true", help="no flip test-time averaging (a --model teacher)")
    label.add_argument("--rounds", type=positive_int, default=2, help="crops: the first from the true points, "
                                                                      "each next from the previous points")
    label.add_argument("--batch-size", type=positive_int, default=64)
    label.set_defaults(func=run_pseudo_label)
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
    for line in report.remarks[:SHOWN_PROBLEMS]:
        print(f"remark: {line}")
    if len(report.remarks) > SHOWN_PROBLEMS:
        print(f"... and {len(report.remarks) - SHOWN_PROBLEMS} more remark(s)")
    if not report.ok:
        print(f"rcn: {len(report.problems) or 'no'} problem(s) in {args.root}" +
              ("" if report.problems else ": no faces found"))
        return 2
    print(f"layout ok; next: {NEXT[args.data].format(root=shlex.quote(str(args.root)))}")
    return 0


def _is_label_summary(path) -> bool:
    import json

    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "per_face" in data and "max_error" in data


def run_pseudo_label(args) -> int:
    import json
    import pathlib

    import keras
    import numpy as np

    from rcn_keras.data.formats import is_keypoint_csv, read_mtfl_list
    from rcn_keras.files import atomic_write_text, check_output
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.pseudo_labels import MAX_ERROR, pseudo_labels, write_pseudo_labels

    if pathlib.Path(args.list_file).name == "testing.txt":
        raise ValueError("--list-file testing.txt is MTFL's test set (AFLW): never train on it; label training.txt")
    max_error = MAX_ERROR if args.max_error is None else args.max_error
    if not max_error > 0:
        raise ValueError(f"--max-error {max_error} must be a positive percentage")
    out = check_output(args.out, "file", "keypoint CSV", is_keypoint_csv, overwrite=args.overwrite)
    summary_path = check_output(out.with_suffix(".json"), "file", "pseudo-label summary", _is_label_summary,
                                overwrite=args.overwrite)
    teacher = None
    if args.teacher == "dlib":  # before the model: a missing extra fails at once
        from rcn_keras.peers import DlibLandmarks

        teacher = DlibLandmarks()
    model = load_landmarker(args.model)
    if model.num_keypoints != 68 or not model.keypoints.is_standard:
        raise ValueError(f"--model {args.model} predicts {model.num_keypoints} points; pseudo-labels need a "
                         f"model of the 68 iBUG points")
    if model.shape_prior is None:
        raise ValueError(f"--model {args.model} has no shape prior (its mean shape places the first crops): "
                         f"train with --set shape_prior=on")
    root = pathlib.Path(args.root)
    records = read_mtfl_list(root / args.list_file)
    images = [str(root / r.image) for r in records]
    points5 = np.stack([r.keypoints for r in records])
    mean = np.asarray(keras.ops.convert_to_numpy(model.shape_prior.mean), np.float64)  # only its shape is used
    if teacher is not None:
        predict = teacher.predict
    else:
        def predict(part, boxes):
            return model.predict(part, boxes, box_format="landmarks", flip=not args.no_flip,
                                 batch_size=args.batch_size)

    def progress(done, total):
        if done == total or done % 2048 < 256:
            print(f"rcn: {done} / {total} crops", flush=True)

    labels = pseudo_labels(predict, images, points5, mean, max_error, not args.no_anchor, args.rounds,
                           progress)
    write_pseudo_labels(out, labels)
    teacher_name = "dlib's 68-point predictor (trained on 300-W: research use only)" if teacher else str(args.model)
    summary = {"model": str(args.model), "teacher": teacher_name, "list": str(root / args.list_file), "anchored": not args.no_anchor,
               "flip": args.teacher == "model" and not args.no_flip, "rounds": args.rounds, **labels.summary(),
               "per_face": [{"image": i, "agreement": round(float(a), 3)} for i, a in zip(labels.images, labels.agreement)]}
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    print(f"kept {summary['kept']} of {summary['faces']} faces within {max_error:g} % of the eye distance "
          f"(median {summary['agreement_median']:.2f} %); wrote {out}")
    if teacher is not None:  # pre-train from scratch on them, then fine-tune on the true faces
        print(f"next: rcn train --preset rcn_300w_real --data 300w --root ROOT --set data.extra_train='[\"{out}\"]' "
              f"--set data.extra_weight=1.0 --out runs/pretrained")
    else:
        print(f"next: rcn train --init {args.model} --data 300w --root ROOT --set data.extra_train='[\"{out}\"]' "
              f"--set data.extra_weight=0.5 --out runs/self_trained")
    return 0
