"""Run an experiment's rows one after another (each resumable), then collect their reports into one
results table (`results.md`, `results.json`). Re-running skips finished rows and resumes the rest."""

from __future__ import annotations

import json
import pathlib
import re
import shutil

from rcn_keras.app.lock import FolderInUse, FolderLock
from rcn_keras.app.training.callbacks import read_log
from rcn_keras.files import atomic_write_bytes
from rcn_keras.markdown import markdown_table
from rcn_keras.evaluation.report import headline_rows
from rcn_keras.app.experiments.definitions import Experiment, Row, get_experiment, with_seed
from rcn_keras.app.experiments.paper_report import write_for_experiment
from rcn_keras.app.training.config import TrainConfig, describe_changes, preset_train_config, resume_changes
from rcn_keras.app.training.fit import train
from rcn_keras.data.sources import load_splits


# Reports beyond the generic results table, per experiment name.
EXTRA_REPORTS = {"paper-tables": write_for_experiment, "mtfl-tables": write_for_experiment}


def expand_rows(exp: Experiment, rows: list[str] | None = None, seeds: tuple[int, ...] | None = None) -> list[Row]:
    """The experiment's rows (or the named subset), once per seed."""
    chosen = [exp.row(n) for n in rows] if rows else list(exp.rows)
    return [with_seed(r, s) for s in (seeds or exp.seeds) for r in chosen]


def row_config(exp: Experiment, row: Row, root: str, out: str | pathlib.Path, cache_dir: str | None = None,
               budget_minutes: float | None = None, epochs: int | None = None,
               overrides: dict | None = None) -> TrainConfig:
    """The `TrainConfig` of one row: its preset, the experiment's shared options and budget, then
    ``overrides`` (dotted keys, applied to every row), the data root and its folder."""
    overrides = {**exp.overrides, **row.overrides, **(overrides or {}), "data.root": str(root),
                 "data.cache_dir": cache_dir, "output_dir": str(pathlib.Path(out) / row.name), "visualize_every": 0}
    config = preset_train_config(row.model, **overrides)
    k = config.num_keypoints
    minutes = budget_minutes if budget_minutes is not None else exp.budget_minutes.get(k)
    n_epochs = epochs or row.overrides.get("epochs") or exp.epochs
    return config.with_overrides({"time_budget_minutes": minutes,
                                  **({"epochs": n_epochs} if n_epochs else {})})


def split_lists(exp: Experiment, root: str, cache_dir: str | None = None) -> dict[str, str]:
    """File name -> text listing the validation faces ("group/name" lines) of every distinct data set-up
    of ``exp``, e.g. ``"300w_afw+helen_train_68pt_validation.txt"``, ``"mtfl_5pt_validation.txt"``."""
    lists = {}
    for row in exp.rows:
        config = row_config(exp, row, root, "unused", cache_dir)
        d = config.data
        subsets = f"_{'+'.join(d.train_subsets)}" if d.source == "300w" else ""
        name = f"{d.source}{subsets}_{config.num_keypoints}pt_validation.txt"
        if name not in lists:
            val = load_splits(config.data.__class__(**{**config.data.to_dict(), "test_subsets": []}),
                              config.num_keypoints).validation
            lists[name] = "".join(f"{g}/{n}\n" for g, n in zip(val.groups, val.names))
    return lists


def finished_row(config: TrainConfig) -> tuple[bool, str]:
    """Whether the finished row in ``config.output_dir`` is kept as it is, and what to say of it: kept when
    nothing that matters changed or when a change needs a new run (said); trained on when only more
    epochs or more time are asked for."""
    out = pathlib.Path(config.output_dir)
    saved = TrainConfig.load(out / "config.json")
    safe, refused = resume_changes(saved, config)
    if refused:
        return True, (f"finished with other settings ({describe_changes(refused)}): kept as it was trained; "
                      f"give a new --out to train these settings")
    state_path = out / "state" / "state.json"
    done = json.loads(state_path.read_text()).get("epoch", 0) if state_path.is_file() else config.epochs
    more_time = "time_budget_minutes" in safe and (safe["time_budget_minutes"][1] is None or
                                                   safe["time_budget_minutes"][1] > (safe["time_budget_minutes"][0] or 0))
    if done < config.epochs and ("epochs" in safe or more_time):
        return False, f"finished at epoch {done}: trained on to {config.epochs} epochs"
    if safe:
        return True, f"finished at epoch {done} ({describe_changes(safe)} asks for no more training): kept"
    return True, f"finished at epoch {done}: kept"


def run_row(config: TrainConfig, verbose: int | str = 2, start_from: pathlib.Path | None = None,
            say=print) -> dict:
    """Train one row unless it has finished (`finished_row` says whether it is kept); resume a
    half-finished one. ``start_from``: a finished run folder whose state, log and best model a new row
    copies and trains on from."""
    out = pathlib.Path(config.output_dir)
    if (out / "summary.json").is_file():
        keep, message = finished_row(config)
        say(message)
        if keep:
            return json.loads((out / "summary.json").read_text())
        return train(config, resume=True, verbose=verbose).summary
    if start_from is not None and not (out / "state" / "state.json").is_file():
        if not (start_from / "summary.json").is_file():
            raise ValueError(f"{out.name} continues {start_from}, which has not finished: run that row first")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(start_from / "state", out / "state", dirs_exist_ok=True)
        for name in ("log.csv", "best.keras", "config.json"):  # config.json: the resume checks what changed
            shutil.copy2(start_from / name, out / name)
    return train(config, resume=(out / "state" / "state.json").is_file(), verbose=verbose).summary


def row_result(exp: Experiment, row: Row, out: str | pathlib.Path) -> dict | None:
    """One finished row's figures: NME (each normaliser), FR, AUC, epochs, training time; ``None`` if
    the row has not finished."""
    folder = pathlib.Path(out) / row.name
    if not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    report = json.loads((folder / "report.json").read_text())
    config = TrainConfig.load(folder / "config.json")
    state_path = folder / "state" / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    result = {"row": row.name, "model": row.model, "table": row.table, "note": row.note,
              "seed": config.seed, "test_set": report.get("test_set"),
              "epochs": state.get("epoch"), "best_epoch": summary.get("best_epoch"),
              "train_minutes": (state.get("train_seconds") or 0.0) / 60.0,
              "readout": summary.get("readout", config.readout), "best_val_nme": summary.get("best_val_nme"),
              "steps_per_epoch": summary.get("steps_per_epoch")}
    log = read_log(folder / "log.csv")
    result["val_nme_curve"] = [r["val_nme"] for r in log if "val_nme" in r]
    for rec in headline_rows(report["results"]["model"]):
        tag = rec["normaliser"]
        result[f"nme[{tag}]"] = rec["nme"]
        for key in ("fr8", "fr10", "auc8", "auc10"):
            result[f"{key}[{tag}]"] = rec[key]
    mean = next(r for r in report["results"]["mean shape"] if r["subset"] == "all")
    result["mean_shape_nme"] = mean["nme"]
    return result


def collect(exp: Experiment, out: str | pathlib.Path, rows: list[Row]) -> list[dict]:
    return [r for r in (row_result(exp, row, out) for row in rows) if r is not None]


SUMMARY_COLUMNS = [("row", "row", ""), ("note", "preset", ""), ("seed", "seed", ""), ("test_set", "scored on", ""),
                   ("epochs", "epochs", ""), ("train_minutes", "train min", ".1f"), ("readout", "read-out", ""),
                   ("nme[corner_midpoints]", "NME % (eye-corner midpoints)", ".2f"),
                   ("nme[eye_centres]", "NME % (eye centres)", ".2f"),
                   ("nme[outer_corners]", "NME % (outer corners)", ".2f"),
                   ("fr8[corner_midpoints]", "FR@8 %", ".1f"), ("fr8[eye_centres]", "FR@8 %", ".1f"),
                   ("fr10[corner_midpoints]", "FR@10 %", ".1f"), ("fr10[eye_centres]", "FR@10 %", ".1f"),
                   ("auc8[corner_midpoints]", "AUC@8", ".3f"), ("auc8[eye_centres]", "AUC@8", ".3f"),
                   ("mean_shape_nme", "mean shape NME %", ".2f")]


def rows_on_disk(exp: Experiment, out: str | pathlib.Path) -> list[Row]:
    """Every row of ``exp`` (seed 0) and every other-seed row that has a folder under ``out``, so that
    the tables cover the work of every process that shared the experiment."""
    seeds = {int(m.group(1)) for p in pathlib.Path(out).glob("*_seed*") if (m := re.search(r"_seed(\d+)$", p.name))}
    extra = [r for r in expand_rows(exp, None, tuple(sorted(seeds))) if (pathlib.Path(out) / r.name).is_dir()]
    return list(exp.rows) + [r for r in extra if r not in exp.rows]


def write_results(exp: Experiment, out: str | pathlib.Path, rows: list[Row] | None = None,
                  previous: list[dict] | None = None) -> pathlib.Path:
    """results.md (one table per keypoint count / table group) and results.json under ``out``, for
    ``rows`` (default: all rows and seeds found on disk) and the ``previous`` results (an earlier
    results.json's, e.g. of rows trained on another machine) of rows not on disk."""
    out = pathlib.Path(out)
    rows = rows if rows is not None else rows_on_disk(exp, out)
    results = collect(exp, out, rows)
    done = {(r["row"], r.get("seed")) for r in results}
    results += [r for r in previous or [] if (r["row"], r.get("seed")) not in done]
    md = [f"# Experiment {exp.name}", "", exp.description, ""]
    trained = sorted({r["epochs"] for r in results if r.get("epochs") is not None})
    if trained:
        md += [f"Epochs trained: {', '.join(map(str, trained))} (the table's epochs column, row by row).", ""]
    for table in dict.fromkeys(r.table for r in rows):
        sel = [r for r in results if r["table"] == table]
        if not sel:
            continue
        cols = [c for c in SUMMARY_COLUMNS if any(c[0] in r for r in sel)]
        md += [f"## {table}", "", markdown_table(sel, cols), ""]
    md.append(f"{len(results)} of {len(rows)} rows finished.")
    if results and exp.name in EXTRA_REPORTS:
        md.append(f"Paper-style tables: {EXTRA_REPORTS[exp.name](exp, results, out).name}")
    atomic_write_bytes(out / "results.md", "\n".join(md).encode())
    atomic_write_bytes(out / "results.json", json.dumps({"experiment": exp.name, "results": results},
                                                         indent=2).encode())
    return out / "results.md"


def run_experiment(experiment: str | Experiment, root: str, out: str | pathlib.Path, rows: list[str] | None = None,
                   seeds: tuple[int, ...] | None = None, budget_minutes: float | None = None,
                   epochs: int | None = None, cache_dir: str | None = None, verbose: int | str = 2,
                   overrides: dict | None = None, previous: list[dict] | None = None) -> pathlib.Path:
    """Train every (chosen) row of ``experiment`` (a name or an `Experiment`) in turn, then write the
    results table. Interrupt it at any time: the next call resumes the row it was in and skips finished ones."""
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    if not pathlib.Path(root).is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder (experiment {exp.name} reads a {exp.source} "
                                f"layout: datasets/{exp.source}.md); pass --root")
    chosen = expand_rows(exp, rows, seeds)
    for name, text in split_lists(exp, root, cache_dir).items():
        atomic_write_bytes(pathlib.Path(out) / "splits" / name, text.encode())
    for row in chosen:
        config = row_config(exp, row, root, out, cache_dir, budget_minutes, epochs, overrides)
        print(f"[{exp.name}] {row.name}: {config.model}, budget "
              f"{config.time_budget_minutes or '-'} min / {config.epochs} epochs -> {config.output_dir}", flush=True)
        source = pathlib.Path(out) / row.continues if row.continues else None
        if source is not None and not (source / "summary.json").is_file():
            print(f"[{exp.name}] {row.name}: waits for {row.continues} to finish, skipped", flush=True)
            continue
        if FolderLock(pathlib.Path(config.output_dir)).held_by_another():
            print(f"[{exp.name}] {row.name}: being trained by another process, skipped", flush=True)
            continue
        try:
            run_row(config, verbose, source,  # `train` locks the row's folder
                    say=lambda text, row=row: print(f"[{exp.name}] {row.name}: {text}", flush=True))
        except FolderInUse:
            print(f"[{exp.name}] {row.name}: being trained by another process, skipped", flush=True)
            continue
        write_results(exp, out, previous=previous)
    return write_results(exp, out, previous=previous)
