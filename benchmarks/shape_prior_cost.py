"""What the shape prior's modes and rounds cost and buy: each 68-point model with its prior in variants of
(number of modes kept:) (alignment rounds) x (conjugate-gradient steps per round), scored on the 300W
validation split and timed as the TFLite float32 file `rcn predict` runs (batch 1, one thread,
interleaved in one run), beside the model without a prior. A model without its own prior gets
rcn-300w's. Writes results/shape_prior_cost.*.

    python benchmarks/shape_prior_cost.py rcn-300w rcn-300w-fast --grid 4x10 4x6 64:4x6 48:4x6 2x6
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import data_missing, environment, write_report  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"
COLUMNS = ["model", "prior", "NME %", "ms per face", "x no prior", "prior ms"]


def grid_entry(text: str) -> tuple[int | None, int, int]:
    """'64:4x6' -> (64, 4, 6): the prior's first 64 modes (its leading principal components; all of them
    without 'MODES:'), 4 alignment rounds x 6 conjugate-gradient steps."""
    modes, _, rest = text.rpartition(":")
    try:
        rounds, steps = (int(v) for v in rest.lower().split("x"))
        modes = int(modes) if modes else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected [MODES:]ROUNDSxSTEPS, e.g. 4x6 or 64:4x6") from None
    if rounds < 1 or steps < 1 or (modes is not None and modes < 1):
        raise argparse.ArgumentTypeError(f"{text!r}: modes, rounds and steps must be at least 1")
    return modes, rounds, steps


def timed(files: dict, reps: int, crops: dict | None = None, block: int = 20) -> dict:
    """Median ms per call of each TFLite file at batch 1 on one thread, the files taking turns in blocks of
    ``block`` calls (a model runs face after face, as in use, with its data in the caches; the turns spread the
    machine's drift over all files); each on its crop (1, side, side, 1) in ``crops`` (same keys as ``files``;
    default: uniform noise)."""
    import numpy as np

    from rcn_keras.runtimes import ExportedLandmarker

    runners = {name: ExportedLandmarker(path, threads=1) for name, path in files.items()}
    rng = np.random.default_rng(0)
    crops = crops or {name: rng.uniform(0, 255, (1, r.input_size, r.input_size, 1)).astype(np.float32)
                      for name, r in runners.items()}
    times = {name: [] for name in runners}
    for turn in range(max(1, reps // block) + 1):
        for name, runner in runners.items():
            start = time.perf_counter()
            for _ in range(block):
                runner(crops[name])
            if turn:  # the first turn warms up
                times[name].append((time.perf_counter() - start) / block)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", default=["rcn-300w", "rcn-300w-fast"],
                   help="shipped model names, training run folders or .keras files (68 points)")
    p.add_argument("--grid", nargs="+", type=grid_entry,
                   default=[(None, 4, 10), (None, 4, 6), (64, 4, 6), (48, 4, 6), (64, 4, 4), (None, 2, 6)],
                   help="[MODES:]ROUNDSxSTEPS variants of the prior (default: 4x10 4x6 64:4x6 48:4x6 64:4x4 2x6)")
    p.add_argument("--reps", type=int, default=300, help="timed calls per file")
    p.add_argument("--root", default=str(SHARED))
    args = p.parse_args(argv)
    if data_missing(args.root):
        return 0
    from self_training import describe

    from rcn_keras.data.sources import DataConfig, load_splits
    from rcn_keras.evaluation.report import headline_nme, predict_faceset
    from rcn_keras.export import export_tflite
    from rcn_keras.landmarker import Landmarker, load_landmarker

    val = load_splits(DataConfig(source="300w", root=args.root), 68).validation
    fallback = None
    rows, files = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            model = load_landmarker(describe(spec)[0])
            prior = model.shape_prior
            if prior is None:
                fallback = fallback or Landmarker.from_preset("rcn-300w").shape_prior
                prior = fallback
            variants = {"none": model.with_shape_prior(None)}
            for modes, rounds, steps in args.grid:
                layer = prior.leading(modes or prior.num_modes, rounds, steps)
                variants[f"{layer.num_modes}:{rounds}x{steps}"] = model.with_shape_prior(layer)
            for name, variant in variants.items():
                pred, gt, _ = predict_faceset(variant, val)
                nme = headline_nme(pred, gt, val)
                files[(spec, name)] = export_tflite(variant, pathlib.Path(tmp) / f"{len(files)}.tflite")
                rows.append({"model": spec, "prior": name, "NME %": nme})
                print(f"{spec} {name}: {nme:.3f} %", flush=True)
        ms = timed(files, args.reps)
    for row in rows:
        row["ms per face"] = ms[(row["model"], row["prior"])]
        base = ms[(row["model"], "none")]
        row["x no prior"] = row["ms per face"] / base
        row["prior ms"] = row["ms per face"] - base
    print(f"300W validation, {len(val)} faces; TFLite float32, batch 1, one thread, {args.reps} calls each, interleaved")
    write_report("shape_prior_cost", "The shape prior's cost per face",
                 f"300W validation, {len(val)} faces, NME % by the eye-corner midpoints; ms per face of the TFLite "
                 f"float32 file at batch 1 on one thread, {args.reps} calls each, the files taking turns in blocks "
                 "(`python benchmarks/shape_prior_cost.py`). `prior`: modes kept: alignment rounds x "
                 "conjugate-gradient steps per round.",
                 rows, COLUMNS, {"rows": rows, "reps": args.reps, "environment": environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
