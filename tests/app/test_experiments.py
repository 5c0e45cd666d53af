"""`rcn experiment`: row definitions, the resumable runner and its results table, the time budget."""

import json
import pathlib

import numpy as np
import pytest

from data_fixtures import write_300w_folder
from rcn_keras.app.cli import main as cli
from rcn_keras.app.experiments.definitions import get_experiment
from rcn_keras.app.experiments.runner import run_experiment
from rcn_keras.app.experiments.definitions import TABLE1_MASKS, Experiment, Row, finest_first, with_seed
from rcn_keras.app.experiments.runner import expand_rows, row_config
from rcn_keras.app.training.config import preset_train_config, resume_changes

TINY_5 = {"data.source": "300w", "data.train_subsets": ["helen_train"], "data.test_subsets": ["afw"],
          "data.validation": 0.25, "batch_size": 8, "model_options.branches": 4}


def test_paper_mask_notation_is_reversed_to_finest_first():
    assert finest_first("1,0,0,0") == [0, 0, 0, 1]
    assert finest_first("0,1,1,1") == [1, 1, 1, 0]
    assert len(set(TABLE1_MASKS)) == 9


def test_paper_tables_rows_are_valid_configs(tmp_path):
    exp = get_experiment("paper-tables")
    assert len([r for r in exp.rows if r.table == "Table 1"]) == 18
    assert len([r for r in exp.rows if r.table == "Table 2"]) == 15
    for row in exp.rows:
        config = row_config(exp, row, str(tmp_path), tmp_path / "out")
        assert config.num_keypoints == 5 and config.time_budget_minutes is None
        assert config.epochs == (exp.epochs if row.table != "Convergence" else 20) and config.optimizer == "adam"
        assert config.data.train_subsets == ("helen_train",) and config.data.test_subsets == ("afw",)
    mask_row = exp.row("t1_rcn_1000")
    assert row_config(exp, mask_row, "r", tmp_path).model_config().branch_mask == (0, 0, 0, 1)
    seeded = with_seed(mask_row, 1)
    assert seeded.name == "t1_rcn_1000_seed1" and row_config(exp, seeded, "r", tmp_path).seed == 1


def test_mtfl_tables_rows_train_as_the_paper_on_mtfl(tmp_path):
    from rcn_keras.app.experiments.paper_report import write_paper_report

    exp = get_experiment("mtfl-tables")
    assert exp.source == "mtfl" and set(exp.convergence) <= {r.name for r in exp.rows}
    for row in exp.rows:
        config = row_config(exp, row, str(tmp_path), tmp_path / "out")
        epochs = 60 if row.name.startswith("conv_") else exp.epochs  # the convergence rows train on
        assert config.data.source == "mtfl" and config.epochs == epochs and config.optimizer == "adadelta"
        assert config.augment.rotation == 20 and config.time_budget_minutes is None
    results = [{"row": "t2_rcn_6br_occ", "nme[eye_centres]": 6.0, "val_nme_curve": [9.0, 6.5], "epochs": 2},
               {"row": "t2_sumnet_6br_occ", "nme[eye_centres]": 7.0, "val_nme_curve": [12.0, 8.0], "epochs": 2}]
    md = write_paper_report(exp, results, tmp_path, updates_per_epoch=141).read_text()
    assert "test AFLW (2,995 faces)" in md and "AFLW NME %" in md and "2 epochs (282 updates" in md
    assert "| RCN (6 branches) | 6.00 |" in md and "| < 7 | 2 (282) | not in 2 |" in md
    assert "Rows of this table" not in md  # one budget: said once
    # a row trained on replaces the curve it started from
    longer = results + [{"row": "conv_rcn_6br", "val_nme_curve": [9.0, 6.5, 6.2, 5.9], "epochs": 4}]
    md = write_paper_report(exp, longer, tmp_path, updates_per_epoch=141).read_text()
    assert "| < 7 | 2 (282) | not in 2 |" in md and "conv_rcn_6br: epoch" in md and "t2_rcn_6br_occ: epoch" not in md
    assert exp.row("conv_rcn_6br").continues == "t2_rcn_6br_occ"
    for name in ("conv_rcn_6br", "conv_sumnet_6br"):  # a row trained on resumes its start's run as it was
        row = exp.row(name)
        safe, refused = resume_changes(row_config(exp, exp.row(row.continues), "r", tmp_path / row.continues),
                                       row_config(exp, row, "r", tmp_path / row.continues))
        assert not refused and set(safe) == {"epochs"}, (name, refused)
    # a table trained on another budget says its own
    md = write_paper_report(exp, results + [{"row": "t1_rcn_1111", "nme[eye_centres]": 7.0, "epochs": 1}], tmp_path,
                            updates_per_epoch=141).read_text()
    assert "trained 1 epoch (141 updates of batch 64) / 2 epochs (282 updates" in md
    table1, table2 = md.split("## Table 2")[0].split("## Table 1")[1], md.split("## Table 2")[1].split("## Table 3")[0]
    assert "Rows of this table trained 1 epoch (141 updates" in table1
    assert "Rows of this table trained 2 epochs (282 updates" in table2


def test_real_300w_rows_have_budgets_and_the_issue_splits(tmp_path):
    exp = get_experiment("real-300w")
    for row in exp.rows:
        config = row_config(exp, row, "root", tmp_path)
        assert config.time_budget_minutes == exp.budget_minutes[config.num_keypoints]
        expected = ("afw", "helen_train") if config.num_keypoints == 68 else ("helen_train",)
        assert config.data.train_subsets == expected
    tuned = row_config(exp, exp.row("rcn_300w_tuned"), "root", tmp_path)
    assert (tuned.optimizer, tuned.augment.flip, tuned.resolved_readout()) == ("adam", True, "soft_argmax")
    paper = row_config(exp, exp.row("rcn_300w"), "root", tmp_path)
    assert (paper.optimizer, paper.augment.flip, paper.resolved_readout()) == ("adadelta", False, "argmax")
    with pytest.raises(ValueError, match="no row"):
        exp.row("nope")
    with pytest.raises(ValueError, match="unknown experiment"):
        get_experiment("nope")


@pytest.fixture(scope="module")
def tiny_300w(tmp_path_factory):
    root = tmp_path_factory.mktemp("300w")
    write_300w_folder(root / "helen" / "trainset", 16, seed=0)
    write_300w_folder(root / "afw", 6, seed=100)
    return root


@pytest.mark.slow
def test_runner_trains_resumes_skips_and_tabulates(tiny_300w, tmp_path, capsys):
    exp = Experiment("tiny", "three rows", (Row("a", "rcn_mtfl", dict(TINY_5), "T", "rcn"),
                                            Row("b", "sumnet_mtfl", dict(TINY_5), "T", "sumnet"),
                                            Row("c", "rcn_mtfl", {**TINY_5, "epochs": 3}, "T", "rcn on", continues="a")),
                     epochs=2)
    out = tmp_path / "exp"
    run_experiment(exp, str(tiny_300w), out, rows=["a"], verbose=0)
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["row"] for r in results] == ["a"]
    a = results[0]
    assert a["epochs"] == 2 and len(a["val_nme_curve"]) == 2 and a["test_set"] == "test"
    assert np.isfinite(a["nme[eye_centres]"]) and a["train_minutes"] > 0
    stamp = (out / "a" / "summary.json").stat().st_mtime_ns
    # b is half-done: one epoch, then the runner resumes it to two; a is skipped
    config_b = row_config(exp, exp.row("b"), str(tiny_300w), out).with_overrides({"epochs": 1})
    from rcn_keras.app.training.fit import train

    train(config_b, verbose=0)
    (out / "b" / "summary.json").unlink()
    md = run_experiment(exp, str(tiny_300w), out, verbose=0).read_text()
    assert (out / "a" / "summary.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "b" / "state" / "state.json").read_text())["epoch"] == 2
    assert "| a | rcn |" in md and "| b | sumnet |" in md and "3 of 3 rows finished" in md
    # c went on from a's two epochs to three; a is unchanged
    assert json.loads((out / "c" / "state" / "state.json").read_text())["epoch"] == 3
    assert len((out / "c" / "log.csv").read_text().strip().splitlines()) == 4
    assert json.loads((out / "a" / "state" / "state.json").read_text())["epoch"] == 2
    assert "Epochs trained: 2, 3" in md
    # a finished row asked for more epochs is trained on, and one asked for other settings is kept: both said
    capsys.readouterr()
    md = run_experiment(exp, str(tiny_300w), out, rows=["a"], epochs=3, verbose=0).read_text()
    assert "a: finished at epoch 2: trained on to 3 epochs" in capsys.readouterr().out
    assert json.loads((out / "a" / "state" / "state.json").read_text())["epoch"] == 3
    run_experiment(exp, str(tiny_300w), out, rows=["a"], epochs=3, verbose=0, overrides={"learning_rate": 0.5})
    said = capsys.readouterr().out
    assert "a: finished with other settings (learning_rate" in said and "kept as it was trained" in said
    run_experiment(exp, str(tiny_300w), out, rows=["a"], epochs=3, verbose=0)
    assert "a: finished at epoch 3: kept" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        run_experiment(exp, str(tmp_path / "missing"), out)


def test_cli_experiment_report_only_and_bad_name(tmp_path, capsys):
    assert cli.main(["experiment", "real-300w", "--out", str(tmp_path), "--report-only"]) == 0
    assert "0 of 6 rows finished" in capsys.readouterr().out
    assert cli.main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_previous_results_join_the_tables_where_their_rows_are_not_on_disk(tmp_path, capsys):
    committed = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "mtfl_paper_tables_results.json"
    rows = json.loads(committed.read_text())["results"]
    assert cli.main(["experiment", "mtfl-tables", "--out", str(tmp_path / "out"), "--report-only",
                     "--previous", str(committed)]) == 0
    joined = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert sorted(r["row"] for r in joined) == sorted(r["row"] for r in rows)
    tables = (tmp_path / "out" / "paper_tables.md").read_text()
    from rcn_keras.app.experiments.paper_report import by_row, cell

    seeds = by_row(rows)  # the committed rows' values, every seed of a row in one cell
    assert f"| RCN (6 branches) | {cell(seeds['t2_rcn_6br_occ'])} |" in tables
    assert f"| SumNet (6 branches) | {cell(seeds['t2_sumnet_6br_occ'])} |" in tables
    (tmp_path / "other.json").write_text(json.dumps({"experiment": "paper-tables", "results": []}))
    (tmp_path / "bad.json").write_text("{")
    capsys.readouterr()
    for name, message in (("other.json", "holds the results of 'paper-tables', not 'mtfl-tables'"),
                          ("bad.json", "not JSON")):
        assert cli.main(["experiment", "mtfl-tables", "--out", str(tmp_path / "out"), "--report-only",
                         "--previous", str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_time_budget_stops_training_and_survives_resume(tmp_path):
    from rcn_keras.app.training.fit import train

    config = preset_train_config("rcn_mtfl", epochs=5, output_dir=str(tmp_path / "run"), time_budget_minutes=1e-4,
                                 batch_size=16, visualize_every=0, **{"data.synthetic_train": 32,
                                 "data.synthetic_validation": 8, "data.synthetic_test": 8,
                                 "model_options.branches": 4})
    summary = train(config, verbose=0)
    state = json.loads((tmp_path / "run" / "state" / "state.json").read_text())
    assert state["epoch"] == 1 and state["budget_exhausted"] and summary["train_seconds"] > 0
    assert not (tmp_path / "run" / "maps").exists()
    again = train(config, resume=True, verbose=0)  # budget already spent: evaluates, trains nothing
    assert json.loads((tmp_path / "run" / "state" / "state.json").read_text())["epoch"] == 1
    assert again["history"] == {} and again["best_epoch"] == 1
    with pytest.raises(ValueError, match="time_budget_minutes"):
        preset_train_config("rcn_mtfl", time_budget_minutes=0)
    with pytest.raises(ValueError, match="readout"):
        preset_train_config("rcn_mtfl", readout="nearest")


def test_expand_rows_per_seed():
    exp = get_experiment("paper-tables")
    rows = expand_rows(exp, ["t2_rcn_6br_occ", "t2_sumnet_6br_occ"], (0, 1))
    assert [r.name for r in rows] == ["t2_rcn_6br_occ", "t2_sumnet_6br_occ", "t2_rcn_6br_occ_seed1",
                                      "t2_sumnet_6br_occ_seed1"]


def test_committed_validation_lists_match_the_split(shared_300w):
    """benchmarks/splits holds the validation file names every real-face number is selected on."""
    from conftest import REPO
    from rcn_keras.app.experiments.runner import split_lists

    lists = {**split_lists(get_experiment("real-300w"), str(shared_300w)),
             **split_lists(get_experiment("paper-tables"), str(shared_300w))}
    assert len(lists) == 2
    for name, text in lists.items():
        assert (REPO / "benchmarks" / "splits" / name).read_text() == text
    assert len(lists["300w_afw+helen_train_68pt_validation.txt"].splitlines()) == 120


@pytest.mark.slow
def test_committed_mtfl_validation_list_matches_the_split(shared_mtfl, tmp_path):
    from conftest import REPO
    from rcn_keras.app.experiments.runner import split_lists

    lists = split_lists(get_experiment("mtfl-tables"), str(shared_mtfl), str(tmp_path))
    assert list(lists) == ["mtfl_5pt_validation.txt"] and len(lists["mtfl_5pt_validation.txt"].splitlines()) == 1000
    assert (REPO / "benchmarks" / "splits" / "mtfl_5pt_validation.txt").read_text() == lists["mtfl_5pt_validation.txt"]


def test_paper_report_tables_seeds_and_convergence(tmp_path):
    from rcn_keras.app.experiments.paper_report import cell, first_epoch_below, write_paper_report

    results = [{"row": "t1_sumnet_1111", "nme[eye_centres]": 9.0, "val_nme_curve": []},
               {"row": "t1_sumnet_1111_seed1", "nme[eye_centres]": 10.0, "val_nme_curve": []},
               {"row": "t1_rcn_1111", "nme[eye_centres]": 8.0, "val_nme_curve": []},
               {"row": "t2_rcn_7br_noocc", "nme[eye_centres]": 7.5, "val_nme_curve": []},
               {"row": "conv_rcn_6br", "val_nme_curve": [30.0, 14.0, 9.0]},
               {"row": "conv_sumnet_6br", "val_nme_curve": [40.0, 25.0, 16.0, 11.0]}]
    md = write_paper_report(get_experiment("paper-tables"), results, tmp_path, updates_per_epoch=13).read_text()
    assert "| 1,1,1,1 | 1,1,1,1 | 9.50 ± 0.50 (2) | 8.00 | -1.50 |" in md
    assert "| RCN | 7 |  | 7.50 |" in md
    assert "| < 15 | 2 (26) | 4 (52) |" in md and "| < 10 | 3 (39) | not in 4 |" in md
    csv = (tmp_path / "convergence.csv").read_text().splitlines()
    assert csv[0] == "epoch,updates,conv_rcn_6br_val_nme,conv_sumnet_6br_val_nme" and csv[4] == "4,52,,11.0000"
    assert (tmp_path / "convergence.png").stat().st_size > 1000
    assert cell(None) == "" and first_epoch_below([5.0], 7) == 1 and first_epoch_below([8.0], 7) is None


def test_folder_lock_is_exclusive_and_recovers_from_dead_processes(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from rcn_keras.app.lock import FolderLock

    first, second = FolderLock(tmp_path / "row"), FolderLock(tmp_path / "row")
    assert first.acquire() and not second.acquire()
    with pytest.raises(ValueError, match=f"in use by process {os.getpid()}"):
        with FolderLock(tmp_path / "row"):
            pass
    first.release()
    assert second.acquire()
    second.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "row" / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    assert FolderLock(tmp_path / "row").acquire()  # the holder is gone: the lock is taken over
    assert json.loads((tmp_path / "row" / ".lock").read_text())["pid"] == os.getpid()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".lock").write_text(json.dumps({"host": "another-machine", "pid": 1}))
    assert not FolderLock(tmp_path / "other").acquire()  # another host's run is respected


def test_real_faces_report_keeps_the_record_of_earlier_runs(tmp_path):
    """benchmarks/real_faces.py re-scores the runs it is given and keeps the rows (and learning curves)
    of runs measured before, whose folders are gone: the committed CSV reads back as it was written."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import real_faces

    committed = real_faces.read_curves(REPO / "benchmarks" / "results" / "learning_curves.csv")
    assert committed and {r["val_readout"] for r in committed} <= {"argmax", "soft_argmax", "local_soft_argmax"}
    first = committed[0]
    assert isinstance(first["epoch"], int) and isinstance(first["val_nme"], float)
    old = [{"run": "a", "epoch": 1}, {"run": "b", "epoch": 1}, {"run": "b", "epoch": 2}]
    assert real_faces.merged(old, [{"run": "b", "epoch": 9}]) == [{"run": "a", "epoch": 1}, {"run": "b", "epoch": 9}]
    assert real_faces.read_curves(tmp_path / "none.csv") == []


def test_self_training_mean_row_is_the_ensemble_of_the_models_points(tmp_path, monkeypatch):
    """benchmarks/self_training.py --mean: the last row scores the mean of the models' points in each
    reading (its own crops and ground truth); a model averaged with itself scores as itself."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import _common
    import self_training

    root = tmp_path / "300w"
    write_300w_folder(root / "helen" / "trainset", 16, seed=0)
    write_300w_folder(root / "afw", 14, seed=100)
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    monkeypatch.setattr(self_training, "RESULTS", tmp_path)
    assert self_training.main(["rcn-300w-fast", "rcn-300w-fast", "--mean", "--root", str(root),
                               "--results", "mean"]) == 0
    rows = json.loads((tmp_path / "mean.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["rcn-300w-fast", "rcn-300w-fast",
                                          "mean of the points of rcn-300w-fast + rcn-300w-fast"]
    readings = self_training.COLUMNS[4:]
    assert all(rows[2][c] == pytest.approx(rows[0][c], abs=1e-4) for c in readings)
    assert rows[0]["detector-like box + prior"] != rows[0]["shape prior"]  # another crop per face
    assert "--mean" in (tmp_path / "mean.md").read_text()
    regions = json.loads((tmp_path / "mean.json").read_text())["regions"]  # where each model's error sits
    assert [r["model"] for r in regions] == [r["model"] for r in rows]
    assert regions[2]["jaw"] == pytest.approx(regions[0]["jaw"], abs=1e-4) and regions[0]["jaw along"] > 0
    assert "along and across" in (tmp_path / "mean.md").read_text()
