"""The `rcn` command: train / evaluate / predict / export / models.

Every user error (unknown preset, missing path, unreadable model, bad image) ends in one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _prepare_tensorflow_env() -> None:
    """oneDNN roughly doubles CPU speed here but is off unless set before TensorFlow is imported."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cmd_models(args) -> int:
    import rcn_keras
    from rcn_keras.pretrained import list_pretrained, pretrained_info

    print(f"{'preset':<20} {'family':<7} {'K':>3} {'branches':>8} {'params':>11}")
    for name in rcn_keras.list_models():
        cfg = rcn_keras.get_config(name)
        params = rcn_keras.build_model(name).count_params()
        print(f"{name:<20} {cfg.family:<7} {cfg.num_keypoints:>3} {cfg.branches:>8} {params:>11,}")
    shipped = list_pretrained()
    print("shipped pretrained models: " + ("" if shipped else "none"))
    for name in shipped:
        info = pretrained_info(name) or {}
        val = (info.get("validation") or [{}])[0]
        score = f"validation NME {val['nme']:.2f} % ({val['normaliser']})" if "nme" in val else ""
        print(f"  {name:<12} {info.get('keypoints', '?')} points, read-out {info.get('readout', 'argmax')}, {score}")
    return 0


def _train_config(args):
    from rcn_keras.training.config import TrainConfig, parse_override, preset_train_config

    overrides = dict(parse_override(s) for s in args.set or [])
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("out", "output_dir"),
                      ("data", "data.source"), ("root", "data.root"), ("xla", "jit_compile"),
                      ("precision", "precision"), ("steps_per_epoch", "steps_per_epoch"),
                      ("strategy", "strategy")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.config:
        return TrainConfig.load(args.config).with_overrides(overrides)
    return preset_train_config(args.preset, **overrides)


def _cmd_train(args) -> int:
    from rcn_keras.training.fit import train

    config = _train_config(args)
    if args.resume and not (pathlib.Path(config.output_dir) / "state" / "state.json").exists():
        print(f"rcn: nothing to resume in {config.output_dir}; starting a new run", file=sys.stderr)
    try:
        summary = train(config, resume=args.resume, verbose=args.verbose)
    except KeyboardInterrupt:
        print(f"\nrcn: interrupted; the last finished epoch is saved. Continue with: "
              f"rcn train ... --out {config.output_dir} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    out = pathlib.Path(config.output_dir)
    print(f"\nbest validation NME {summary['best_val_nme']:.2f}% at epoch {summary['best_epoch'] + 1}"
          if summary["best_epoch"] is not None else "\nno epoch improved the validation NME")
    if "denoiser" in summary:
        print(f"corrupted-point NME on test shapes: {summary['mean_shape_nme']:.2f}% noisy input -> "
              f"{summary['test_nme']:.2f}% denoised")
    else:
        print(f"test NME {summary['test_nme']:.2f}%  (mean-shape baseline {summary['mean_shape_nme']:.2f}%)")
    print(f"report: {out / 'report.md'}   maps: {out / 'maps'}   best model: {out / 'best.keras'}")
    return 0


def _cmd_evaluate(args) -> int:
    from rcn_keras.data import datasets
    from rcn_keras.data.synthetic import synthetic_faces
    from rcn_keras.evaluation.report import evaluate_predictions, markdown_table, predict_faceset, write_report
    from rcn_keras.predict import load_model

    model = load_model(args.model)
    k = model.output.shape[-1]
    if args.data == "synthetic":
        faces = synthetic_faces(args.faces, k, seed=args.seed)
    elif args.data == "300w":
        faces = datasets.load_300w(args.root, tuple(args.subsets), k, on_error=args.on_error)
    elif args.data == "mtfl":
        faces = datasets.load_mtfl(args.root, args.list_file, on_error=args.on_error)
    else:
        faces = datasets.load_afw(args.root, on_error=args.on_error)
    pred, gt, _ = predict_faceset(model, faces, args.batch_size, _readout(args))
    result = evaluate_predictions(pred, gt, faces, mode=args.mode)
    write_report(args.out, {str(args.model): result}, {"data": args.data, "faces": len(faces)})
    print(markdown_table([r for r in result["rows"] if r["subset"] == "all"]))
    print(f"report: {pathlib.Path(args.out) / 'report.md'}")
    return 0


def _readout(args) -> str:
    from rcn_keras.pretrained import default_readout

    return args.readout or default_readout(str(args.model).split(",")[0].removeprefix("joint:"))


def _cmd_predict(args) -> int:
    from rcn_keras.predict import parse_box, predict, read_boxes_file, write_predictions

    boxes = None
    if args.box:
        boxes = [parse_box(args.box)] * len(args.images)
    elif args.boxes:
        boxes = read_boxes_file(args.boxes)
    results = predict(args.images, args.model, boxes=boxes, batch_size=args.batch_size, readout=_readout(args),
                      box_format=args.box_format)
    written = write_predictions(results, args.out, overlay=not args.no_overlay)
    for r in results:
        print(f"{r['image']}: {len(r['keypoints'])} keypoints, mean confidence {r['confidence'].mean():.3f}")
    print(f"wrote {written[0]} and {len(written) - 1} more file(s)")
    return 0


def _cmd_experiment(args) -> int:
    from rcn_keras.experiments import get_experiment, run_experiment, write_results
    from rcn_keras.experiments.runner import expand_rows

    out = args.out or f"runs/experiments/{args.name}"
    if args.report_only:
        exp = get_experiment(args.name)
        chosen = expand_rows(exp, args.rows, tuple(args.seeds or ()) or None) if args.rows or args.seeds else None
        path = write_results(exp, out, chosen)
    else:
        from rcn_keras.training.config import parse_override

        overrides = dict(parse_override(s) for s in args.set or [])
        path = run_experiment(args.name, args.root, out, args.rows, tuple(args.seeds or ()) or None,
                              args.budget_minutes, args.epochs, args.cache_dir, args.verbose, overrides)
    print(pathlib.Path(path).read_text())
    return 0


def _cmd_export(args) -> int:
    from rcn_keras.export import export
    from rcn_keras.predict import load_model

    path = export(load_model(args.model), args.out, args.format, _readout(args))
    print(f"exported {args.format} to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rcn_keras.models.denoising import DENOISER_PRESETS
    from rcn_keras.models.head import READOUTS
    from rcn_keras.models.registry import list_models

    parser = argparse.ArgumentParser(prog="rcn", description="Recombinator Networks for facial landmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list model presets and shipped models").set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="train a preset (or a JSON config) with model.fit")
    p.add_argument("--preset", default="rcn_mtfl",
                   help=f"model preset: {', '.join(list_models() + sorted(DENOISER_PRESETS))}")
    p.add_argument("--config", help="a TrainConfig JSON file (e.g. a run's config.json)")
    p.add_argument("--data", choices=("synthetic", "300w", "mtfl"), help="data source (default synthetic)")
    p.add_argument("--root", help="dataset folder for --data 300w / mtfl")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--out", help="output folder (checkpoints, logs, maps, report)")
    p.add_argument("--xla", choices=("auto", "on", "off"), help="jit_compile (auto: GPU only)")
    p.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"),
                   help="compute precision (auto: float16 on a GPU, bfloat16 on a CPU that has it, else float32); "
                        "logits, softmax and loss stay float32")
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"),
                   help="tf.distribute strategy; multiworker reads TF_CONFIG (batch size is global)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. augment.rotation=40, model_options.branches=5")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="NME report of a model on a dataset")
    p.add_argument("--model", required=True, help=".keras file or shipped model name")
    p.add_argument("--data", choices=("synthetic", "300w", "mtfl", "afw"), default="synthetic")
    p.add_argument("--root", help="dataset folder")
    p.add_argument("--subsets", nargs="+", default=["afw", "helen_train"], help="300W subsets or groups")
    p.add_argument("--list-file", default="testing.txt", help="MTFL list (testing.txt = AFLW)")
    p.add_argument("--faces", type=int, default=300, help="synthetic faces to evaluate on")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--mode", choices=("continuous", "paper"), default="continuous")
    p.add_argument("--readout", choices=READOUTS, default=None,
                   help="keypoint read-out (default: the one the model was tuned with, else argmax)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    p.add_argument("--out", default="evaluation")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="keypoints for images (JSON, CSV, overlay PNGs)")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", required=True, help=".keras file or shipped model name")
    p.add_argument("--box", help="face box x,y,w,h for every image (default: each image is a face crop)")
    p.add_argument("--boxes", help="file of 'image,x,y,w,h' lines")
    p.add_argument("--box-format", choices=("landmarks", "dlib"), default="landmarks",
                   help="what the boxes are: tight landmark boxes (x1.3) or dlib HOG detector boxes (calibrated)")
    p.add_argument("--readout", choices=READOUTS, default=None,
                   help="keypoint read-out (default: the one the model was tuned with, else argmax)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-overlay", action="store_true")
    p.add_argument("--out", default="predictions")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="SavedModel or TFLite with a keypoints serving signature")
    p.add_argument("--model", required=True, help=".keras file or shipped model name")
    p.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model")
    p.add_argument("--readout", choices=READOUTS, default=None,
                   help="keypoint read-out (default: the one the model was tuned with, else argmax)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("experiment", help="run a named experiment's training rows (resumable) and its tables")
    p.add_argument("name", help="real-300w (issue 5: presets on real faces) or paper-tables (Tables 1-2)")
    p.add_argument("--root", default=os.environ.get("RCN_300W_ROOT", "../shared/data/300w"),
                   help="300W-layout folder (default ../shared/data/300w or $RCN_300W_ROOT)")
    p.add_argument("--out", help="output folder (default runs/experiments/NAME)")
    p.add_argument("--rows", nargs="+", help="only these rows (default all)")
    p.add_argument("--seeds", nargs="+", type=int, help="train every chosen row once per seed (default 0)")
    p.add_argument("--budget-minutes", type=float, help="training wall time per row (overrides the experiment's)")
    p.add_argument("--epochs", type=int, help="epochs per row (overrides the experiment's)")
    p.add_argument("--cache-dir", default="runs/cache", help="HDF5 cache of preprocessed faces")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training option of every row, e.g. optimizer=adam (use a new --out)")
    p.add_argument("--report-only", action="store_true", help="only re-make the tables from finished rows")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    p.set_defaults(func=_cmd_experiment)
    return parser


def main(argv: list[str] | None = None) -> int:
    _prepare_tensorflow_env()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"rcn: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nrcn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
