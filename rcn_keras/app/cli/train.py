"""``rcn train``: train a preset (or a run's config.json) with model.fit; resumable."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from rcn_keras.app.cli.common import add_overwrite_option, positive_int
from rcn_keras.data.sources import DATA_SOURCES
from rcn_keras.presets import list_presets
from rcn_keras.runtime import PRECISIONS, STRATEGIES

NAME = "train"
EXIT_INTERRUPTED = 130
DEFAULT_PRESET = "rcn_mtfl"
# command-line flag -> TrainConfig key
FLAGS = {"epochs": "epochs", "batch_size": "batch_size", "out": "output_dir", "data": "data.source",
         "root": "data.root", "test_root": "data.test_root", "xla": "jit_compile", "precision": "precision",
         "steps_per_epoch": "steps_per_epoch", "strategy": "strategy", "keypoints": "keypoints", "init": "init_from"}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="train a preset (or a JSON config) with model.fit")
    p.add_argument("--preset", help=f"preset (default {DEFAULT_PRESET}; with --init, the trained model's own): "
                                    f"{', '.join(list_presets(shipped=False))}")
    p.add_argument("--config", help="a TrainConfig JSON file (e.g. a run's config.json)")
    p.add_argument("--data", choices=DATA_SOURCES,
                   help="data source (default synthetic); pts / csv / coco: your own keypoints, any count")
    p.add_argument("--root", help="dataset folder (300w, mtfl, pts) or annotation file (csv, coco)")
    p.add_argument("--test-root", help="a test set in the same format as --root (pts / csv / coco)")
    p.add_argument("--keypoints", metavar="SCHEME",
                   help="keypoint scheme: a JSON file (num_keypoints, names, flip, normalisers, crop) or "
                        "face5 / face68 (default: the paper's scheme for the preset's point count)")
    p.add_argument("--init", metavar="MODEL",
                   help="fine-tune: start from a trained model (.keras or shipped name, e.g. rcn-300w); "
                        "a new output layer when the point count differs")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--steps-per-epoch", type=positive_int)
    p.add_argument("--out", help="output folder (checkpoints, logs, maps, report): a new or empty one, or an "
                                 "earlier rcn train run (to --resume it)")
    p.add_argument("--xla", choices=("auto", "on", "off"), help="jit_compile (auto: GPU only)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="compute precision (auto: float16 on a GPU, bfloat16 on a CPU that has it, else float32); "
                        "logits, softmax and loss stay float32, the saved model is float32")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="tf.distribute strategy; multiworker reads TF_CONFIG (batch size is global)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. augment.rotation=40, model_options.branches=5")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last epoch, with its own settings (alone: those of "
                        "--out/config.json); a changed network, data or recipe is refused, more --epochs are applied")
    p.add_argument("--progress", type=int, default=None, choices=(0, 1, 2),
                   help="Keras progress output: 0 none, 1 bars, 2 one line per epoch (default: bars on a terminal, "
                        "one line per epoch in a log file)")
    add_overwrite_option(p, "config.json, log.csv, report.md and the other run files of the same names are replaced")
    p.set_defaults(func=run)
    return p


def config_from_args(args):
    from rcn_keras.app.training.config import TrainConfig, parse_override, preset_train_config

    overrides = dict(parse_override(s) for s in args.set or [])
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if key in overrides and overrides[key] != value:
            raise ValueError(f"--{flag.replace('_', '-')} {value} and --set {key}={overrides[key]!r} disagree: "
                             f"give one of them")
        overrides[key] = value
    if args.config:
        return TrainConfig.load(args.config).with_overrides(overrides)
    saved = pathlib.Path(str(overrides.get("output_dir", ""))) / "config.json"
    if args.resume and args.preset is None and "output_dir" in overrides and saved.is_file():
        return TrainConfig.load(saved).with_overrides(overrides)  # `rcn train --out R --resume`: R's own settings
    preset = args.preset
    if preset is None:  # fine-tuning a trained model starts from its recipe and points; else the default preset
        preset, scheme = init_preset(overrides.get("init_from"))
        if scheme is not None and "keypoints" not in overrides:
            overrides["keypoints"] = scheme
    return preset_train_config(preset, **overrides)


def init_preset(init: object) -> tuple[str, dict | None]:
    """(preset, keypoint scheme dict or None) of a run with no --preset that starts from ``init``: a shipped model's
    own preset; a .keras file's (the preset it was trained from, and its scheme where that preset's differs);
    else `DEFAULT_PRESET`."""
    from rcn_keras.app.training.config import TrainConfig
    from rcn_keras.landmarker import saved_landmarker_info

    if not isinstance(init, str):
        return DEFAULT_PRESET, None
    if init in list_presets(shipped=True):
        return init, None
    saved = saved_landmarker_info(init)
    if saved is None:  # not a Landmarker file (a denoiser, or unreadable: loading it says why)
        return DEFAULT_PRESET, None
    preset = saved["preset"] if saved["preset"] in list_presets() else DEFAULT_PRESET
    same = TrainConfig(model=preset).scheme().to_dict() == saved["keypoints"]
    return preset, None if same else saved["keypoints"]


def run(args) -> int:
    from rcn_keras.app.output_folder import claim_folder
    from rcn_keras.app.training.fit import train

    config = config_from_args(args)
    out = claim_folder(config.output_dir, NAME, args.overwrite)
    state = out / "state" / "state.json"
    if args.resume and not state.exists():
        print(f"rcn: nothing to resume in {config.output_dir}; starting a new run", file=sys.stderr)
    try:
        progress = args.progress if args.progress is not None else (1 if sys.stdout.isatty() else 2)
        summary = train(config, resume=args.resume, verbose=progress).summary
    except KeyboardInterrupt:
        if state.exists():
            epoch = json.loads(state.read_text()).get("epoch", "?")
            print(f"\nrcn: interrupted; epoch {epoch} is the last saved one. Continue with: "
                  f"rcn train ... --out {config.output_dir} --resume", file=sys.stderr)
        else:
            print("\nrcn: interrupted before the first epoch finished; nothing was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in summary_lines(summary):
        print(line)
    print(f"report: {out / 'report.md'}   maps: {out / 'maps'}   best model: {out / 'best.keras'}")
    return 0


def summary_lines(summary: dict) -> list[str]:
    """What a finished run says, each number with what it was measured on (epochs count from 1)."""
    lines = [""]
    if summary.get("best_epoch") is not None:
        lines.append(f"best epoch {summary['best_epoch']}: validation NME {summary['best_val_nme']:.2f} % on jittered "
                     f"validation crops (as in training: model selection)")
    else:
        lines.append("no epoch improved the validation NME")
    if "denoiser" in summary:
        lines.append(f"corrupted-point NME on test shapes: {summary['mean_shape_nme']:.2f} % noisy input -> "
                     f"{summary['test_nme']:.2f} % denoised")
        return lines
    how = f"read-out {summary['readout']}{', shape prior' if summary.get('shape_prior') else ''}"
    lines.append(f"validation NME {summary['validation_nme']:.2f} % ({summary['validation_faces']:,} faces, "
                 f"un-jittered crops, {how})")
    if summary.get("test_set"):
        lines.append(f"test NME {summary['test_nme']:.2f} % ({summary['test_set']}, {summary['test_faces']:,} faces, "
                     f"un-jittered crops, {how}; mean-shape baseline {summary['mean_shape_nme']:.2f} %)")
    else:
        lines.append(f"no test set: the numbers above are the validation split's (mean-shape baseline "
                     f"{summary['mean_shape_nme']:.2f} %)")
    return lines
