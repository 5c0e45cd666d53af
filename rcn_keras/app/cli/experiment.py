"""``rcn experiment``: a named experiment's training rows (resumable) and its results tables."""

from __future__ import annotations

import argparse
import os
import pathlib

from rcn_keras.app.cli.common import add_overwrite_option

NAME = "experiment"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="run a named experiment's training rows (resumable) and its tables")
    p.add_argument("name", help="real-300w (paper and tuned presets on real faces), paper-tables (Tables 1-2 in "
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
    p.add_argument("--previous", metavar="RESULTS_JSON",
                   help="an earlier results.json: its rows join the tables where they are not in --out")
    p.add_argument("--progress", type=int, default=2, choices=(0, 1, 2))
    add_overwrite_option(p, "results.md, results.json and the rows' folders of the same names are written into")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from rcn_keras.app.experiments.definitions import get_experiment
    from rcn_keras.app.output_folder import claim_folder
    from rcn_keras.app.experiments.runner import expand_rows, run_experiment, write_results
    from rcn_keras.app.training.config import parse_override

    out = args.out or f"runs/experiments/{args.name}"
    exp = get_experiment(args.name)
    claim_folder(out, NAME, args.overwrite)
    root = args.root or os.environ.get(f"RCN_{exp.source.upper()}_ROOT", f"../shared/data/{exp.source}")
    previous = read_previous(args.previous, exp.name) if args.previous else None
    if args.report_only:
        chosen = expand_rows(exp, args.rows, tuple(args.seeds or ()) or None) if args.rows or args.seeds else None
        path = write_results(exp, out, chosen, previous)
    else:
        overrides = dict(parse_override(s) for s in args.set or [])
        path = run_experiment(exp, root, out, args.rows, tuple(args.seeds or ()) or None,
                              args.budget_minutes, args.epochs, args.cache_dir, args.progress, overrides, previous)
    print(pathlib.Path(path).read_text())
    return 0


def read_previous(path: str, name: str) -> list[dict]:
    """The rows of an earlier results.json of experiment ``name``; one line naming the file otherwise."""
    import json

    try:
        data = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"--previous {path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list) or \
            not all(isinstance(r, dict) and "row" in r for r in data["results"]):
        raise ValueError(f"--previous {path}: not an experiment's results.json")
    if data.get("experiment") != name:
        raise ValueError(f"--previous {path} holds the results of {data.get('experiment')!r}, not {name!r}")
    return data["results"]
