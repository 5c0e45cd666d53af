"""The output rule of every command that writes (README, "Your files"): a folder that exists and was not
written by the same command is refused with one line unless --overwrite; a predict run that stops early
(Ctrl-C, SIGTERM, a full disk) leaves a folder whose keypoints.json lists every file it holds, with the
finished images' points."""

import errno
import json

import numpy as np
import pytest
from PIL import Image

from rcn_keras.app.cli import main as cli
from rcn_keras.app.cli import predict as predict_cli
from rcn_keras.app.output_folder import MARKER, claim_folder, folder_owner
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.landmarker import Landmarker
from rcn_keras import prediction_files


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    faces = synthetic_faces(5, 5, seed=9)
    for i, image in enumerate(faces.images):
        Image.fromarray(image).save(folder / f"p{i}.png")
    return sorted(folder.glob("*.png"))


def refused(capsys, argv, *fragments) -> str:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USER_ERROR and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def visible(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("command", [
    ["train", "--epochs", "1"],
    ["evaluate", "--model", "rcn-mtfl", "--faces", "4"],
    ["experiment", "paper-tables", "--report-only"],
])
def test_a_folder_of_the_users_files_is_refused_and_left_as_it_was(command, model_file, photos, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    (out / "log.csv").write_text("my log")
    refused(capsys, [*command, "--out", out], f"--out {out} holds files that rcn did not write", "--overwrite")
    assert visible(out) == ["log.csv", "report.md"]
    assert (out / "report.md").read_text() == "my notes" and (out / "log.csv").read_text() == "my log"


def test_predict_refuses_the_users_keypoints_and_another_commands_folder(model_file, photos, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keypoints.csv").write_text("mine")
    base = ["predict", photos[0], "--model", model_file, "--detector", "none", "--out"]
    refused(capsys, [*base, out], "holds files that rcn did not write")
    assert visible(out) == ["keypoints.csv"] and (out / "keypoints.csv").read_text() == "mine"
    assert cli.main([str(a) for a in ["evaluate", "--model", model_file, "--faces", "4", "--out", tmp_path / "ev"]]) == 0
    refused(capsys, [*base, tmp_path / "ev"], "holds an `rcn evaluate` output, not an earlier `rcn predict` output")
    assert cli.main([str(a) for a in [*base, out, "--overwrite"]]) == 0  # the user says so: written into
    assert json.loads((out / "keypoints.json").read_text())["complete"] is True
    assert folder_owner(out) == "predict"


def test_evaluate_rewrites_its_own_report_and_recognises_folders_from_before_the_mark(model_file, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["evaluate", "--model", str(model_file), "--faces", "4", "--out", str(out)]
    assert cli.main(argv) == 0 and cli.main(argv) == 0
    assert visible(out) == [MARKER, "ced.png", "report.json", "report.md"]
    (out / MARKER).unlink()  # a report written before the mark existed is still ours
    assert folder_owner(out) == "evaluate" and cli.main(argv) == 0
    predictions = tmp_path / "old_predictions"
    predictions.mkdir()
    (predictions / "keypoints.json").write_text(json.dumps({"schema": 2, "images": []}))
    assert folder_owner(predictions) == "predict"
    run = tmp_path / "run"
    (run / "state").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert folder_owner(run) == "train"
    assert claim_folder(run, "train") == run and json.loads((run / MARKER).read_text())["command"] == "train"


def test_export_and_pseudo_labels_replace_a_foreign_file_only_with_overwrite(model_file, tmp_path, capsys):
    notes = tmp_path / "notes.tflite"
    notes.write_text("my notes")
    refused(capsys, ["export", "--model", model_file, "--format", "tflite", "--out", notes],
            "is not a TFLite model", "--overwrite")
    assert notes.read_text() == "my notes"
    assert cli.main([str(a) for a in ["export", "--model", model_file, "--format", "tflite", "--out", notes,
                                      "--overwrite"]]) == 0
    assert notes.read_bytes()[4:8] == b"TFL3"
    labels = tmp_path / "labels.csv"
    labels.write_text("my,own\n")
    refused(capsys, ["data", "pseudo-label", "--root", tmp_path, "--out", labels], "is not a keypoint CSV",
            "--overwrite")
    assert labels.read_text() == "my,own\n"


def earlier_run(model_file, photos, out):
    """A complete run over ``photos[3:]`` (their overlays) into ``out``."""
    assert cli.main([str(a) for a in ["predict", *photos[3:], "--model", model_file, "--detector", "none",
                                      "--batch-size", "1", "--out", out]]) == 0
    return json.loads((out / "keypoints.json").read_text())


def listed(out) -> tuple[dict, set[str]]:
    doc = json.loads((out / "keypoints.json").read_text())
    return doc, {"keypoints.json", "keypoints.csv", MARKER} | {i["overlay"] for i in doc["images"] if i["overlay"]}


def test_ctrl_c_during_predict_keeps_the_finished_images_points(model_file, photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "p"
    earlier_run(model_file, photos, out)

    def stop_at_third(self, done, total):
        if done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(predict_cli.ProgressBar, "__call__", stop_at_third)
    argv = ["predict", *photos, "--model", model_file, "--detector", "none", "--batch-size", "1", "--out", out]
    assert cli.main([str(a) for a in argv]) == cli.EXIT_INTERRUPTED
    assert "the points of the 3 finished image(s) are in" in capsys.readouterr().err
    doc, files = listed(out)
    assert doc["complete"] is False and "interrupted after 3 of 5 images" in doc["stopped"]
    assert [i["image"] for i in doc["images"]] == [str(p) for p in photos[:3]]
    assert set(visible(out)) == files and len(files) == 6  # 3 overlays; the earlier run's are gone
    assert len(open(out / "keypoints.csv").read().splitlines()) == 1 + 3 * 5


def test_a_full_disk_during_predict_leaves_a_complete_listing(model_file, photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "p"
    earlier = earlier_run(model_file, photos, out)
    real = prediction_files.write_overlay
    calls = []

    def full_after_two(result, path, *args):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(result, path, *args)

    monkeypatch.setattr(prediction_files, "write_overlay", full_after_two)
    argv = ["predict", *photos, "--model", model_file, "--detector", "none", "--batch-size", "1", "--out", out]
    assert cli.main([str(a) for a in argv]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out / 'p2_keypoints.png'}: no space left" in err, err
    doc, files = listed(out)
    assert doc["complete"] is False and "no space left" in doc["stopped"] and len(doc["images"]) == 5
    assert set(visible(out)) == files  # no overlay nothing lists, none of the earlier run's
    assert not set(i["overlay"] for i in earlier["images"]) & set(visible(out))
    # and when even the listing cannot be written, the earlier complete output stays as it was
    out2 = tmp_path / "p2"
    monkeypatch.setattr(prediction_files, "write_overlay", real)
    earlier_run(model_file, photos, out2)
    before = {p.name: p.read_bytes() for p in out2.iterdir()}
    calls.clear()
    monkeypatch.setattr(prediction_files, "write_overlay", full_after_two)
    monkeypatch.setattr(prediction_files, "atomic_write_with", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device", "keypoints.json")))
    assert cli.main([str(a) for a in ["predict", *photos, "--model", model_file, "--detector", "none",
                                      "--batch-size", "1", "--out", out2]]) == cli.EXIT_USER_ERROR
    assert {p.name: p.read_bytes() for p in out2.iterdir()} == before


def test_predict_crops_refuse_non_finite_values(model_file):
    model = Landmarker.from_preset("rcn_mtfl", branches=4)
    crops = np.full((3, 80, 80, 1), 120.0, np.float32)
    crops[2, 5, 5, 0] = np.inf
    with pytest.raises(ValueError, match="crop 2 holds NaN or infinite values"):
        model.predict_crops(crops)
    crops[2] = np.nan
    with pytest.raises(ValueError, match="crop 2 holds NaN"):
        model.predict_crops(crops)
    assert model.predict_crops(crops[:2])["keypoints"].shape == (2, 5, 2)
