"""``rcn experiment``: a named experiment's training rows (resumable) and its results tables."""

from __future__ import annotations

import argparse
import os
import pathlib

NAME = "experiment"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="run a named experiment's training rows (resumable) and its tables")
    p.add_argument("name", help="real-300w (issue 5: presets on real faces), paper-tables (Tables 1-2 in "
                                "miniature on HELEN) or mtfl-tables (Tables 1-3 and convergence on MTFL)")
    p.add_argument("--root", help="dataset folder: the 300W layout (default ../shared/data/300w or $RCN_300W_ROOT), "
                                  "MTFL for mtfl-tables (default ../shared/data/mtfl or $RCN_MTFL_ROOT)")
    p.add_argument("--out", help="output folder (default runs/experiments/NAME)")
    p.add_argument("--rows", nargs="+", help="only these rows (default all)")
    p.add_argument("--seeds", nargs="+", type=int, help="train every chosen row once per seed (default 0)")
    p.add_argument("--budget-minutes", type=float, help="training wall time per row (overrides the experiment's)")
    p.add_argument("--epochs", type=int, help="epochs per row (overrides the experiment's)")
    p.add_argument("--cache-dir", default="runs/cache", help="HDF5 cache of preprocessed faces")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training option of every row, e.g. optimizer=adam (use a new --out)")
    p.add_argument("--report-only", action="store_true", help="only re-make the tables from finished rows")
    p.add_argument("--progress", type=int, default=2, choices=(0, 1, 2))
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from rcn_keras.app.experiments.definitions import get_experiment
    from rcn_keras.app.experiments.runner import expand_rows, run_experiment, write_results
    from rcn_keras.app.training.config import parse_override

    out = args.out or f"runs/experiments/{args.name}"
    exp = get_experiment(args.name)
    root = args.root or os.environ.get(f"RCN_{exp.source.upper()}_ROOT", f"../shared/data/{exp.source}")
    if args.report_only:
        chosen = expand_rows(exp, args.rows, tuple(args.seeds or ()) or None) if args.rows or args.seeds else None
        path = write_results(exp, out, chosen)
    else:
        overrides = dict(parse_override(s) for s in args.set or [])
        path = run_experiment(exp, root, out, args.rows, tuple(args.seeds or ()) or None,
                              args.budget_minutes, args.epochs, args.cache_dir, args.progress, overrides)
    print(pathlib.Path(path).read_text())
    return 0
