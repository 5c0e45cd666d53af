"""Bad input, as a user hands it to us (issue 18): every case ends in one line naming the argument or
the file, exit code 2, or the right result; nothing half-written or mixed is left behind."""

import importlib.util
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_fixtures import write_300w_folder
from rcn_keras.app.cli import main as cli
from rcn_keras.app.training import preset_train_config, train
from rcn_keras.data.datasets import load_300w
from rcn_keras.data.formats import DataFormatError, load_image, write_pts
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.files import atomic_write_bytes
from rcn_keras.landmarker import Landmarker, load_landmarker

TINY = ["--set", "data.synthetic_train=16", "--set", "data.synthetic_validation=8", "--set",
        "data.synthetic_test=8", "--set", 'model_options={"branches": 4}', "--batch-size", "8", "--progress", "0"]


@pytest.fixture(scope="module")
def face_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("f") / "face.png"
    Image.fromarray(synthetic_faces(1, 5, seed=4).images[0]).save(path)
    return path


def one_line_error(capsys, argv, *fragments):
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USER_ERROR, (argv, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.mark.parametrize("args, fragment", [
    (["--steps-per-epoch", "-1"], "--steps-per-epoch"),
    (["--set", "steps_per_epoch=-1"], "steps_per_epoch=-1"),
    (["--set", "augment.rotation=abc"], "augment.rotation"),
    (["--set", "augment.scale=null"], "augment.scale"),
    (["--set", "data=5"], "data must be a group of options"),
    (["--set", "data.validation=0"], "data.validation=0"),
    (["--set", "epochs=true"], "epochs=True"),
    (["--epochs", "3", "--set", "epochs=5"], "disagree"),
    (["--batch-size", "0"], "--batch-size"),
    (["--set", "readout=nearest"], "readout='nearest'"),
    (["--set", "coordinate_loss=-1"], "coordinate_loss=-1"),
    (["--set", "init_points=[1, 2]"], "init_points=[1, 2]"),
    (["--preset", "rcn_mtfl", "--init", "rcn-mtfl", "--set", "init_points=[1, 0, -1, 3, 4]"], "init_points[2]=-1: each entry must be"),
    (["--set", "init_points=[1, 0, 2, 3, 4]"], "picks points of the init_from model, and none is given"),
    (["--set", "data.source=300w", "--set", "data.root=.", "--set", "data.extra_weight=0.5"],
     "data.extra_weight=0.5 weighs the data.extra_train faces, and none are given"),
    (["--set", "distill_weight=0.5"], "distill_weight=0.5 weighs the distill_from teachers' maps, and no teacher"),
    (["--preset", "rcn_300w", "--data", "mtfl", "--root", "."], "data.source='mtfl' has 5 keypoints but preset "
                                                                 "rcn_300w predicts 68"),
    (["--init", "no_such.keras"], "init_from='no_such.keras': model file not found"),
    (["--set", "distill_from=no_such.keras"], "distill_from='no_such.keras': model file not found"),
    (["--set", "distill_from=rcn-300w"], "distill_from='rcn-300w' gives 68 points; this run trains 5"),
    (["--set", "distill_weight=-1"], "distill_weight=-1"),
    (["--keypoints", "no_such_scheme.json"], "no_such_scheme.json: keypoint scheme file not found"),
    (["--data", "coco"], "data.source='coco' needs data.root (the annotation file)"),
])
def test_bad_training_options(args, fragment, tmp_path, capsys):
    one_line_error(capsys, ["train", "--out", tmp_path / "run", *args], fragment)
    assert not (tmp_path / "run" / "state").exists()


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_is_refused(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run").mkdir()
        import socket

        (tmp_path / "run" / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        one_line_error(capsys, ["train", "--out", tmp_path / "run", "--epochs", "1", *TINY],
                       f"in use by process {holder.pid}")
        assert not (tmp_path / "run" / "log.csv").exists() and not (tmp_path / "run" / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: the stale lock is taken over and the run trains
    assert cli.main([str(a) for a in ["train", "--out", tmp_path / "run", "--epochs", "1", *TINY]]) == 0
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.slow
def test_interrupt_before_the_first_epoch_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    from rcn_keras.app.training import callbacks

    def interrupt(self, epoch, logs=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.TimeBudget, "on_epoch_begin", interrupt)
    assert cli.main([str(a) for a in ["train", "--out", tmp_path / "run", "--epochs", "2", *TINY]]) \
        == cli.EXIT_INTERRUPTED
    assert "nothing was saved" in capsys.readouterr().err


def test_unrelated_and_broken_model_files(tmp_path, face_png, capsys):
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(tmp_path / "dense.keras")
    one_line_error(capsys, ["predict", face_png, "--model", tmp_path / "dense.keras", "--out", tmp_path / "p"],
                   "dense.keras", "not a")
    (tmp_path / "text.keras").write_text("not a model")
    one_line_error(capsys, ["predict", face_png, "--model", tmp_path / "text.keras", "--out", tmp_path / "p"], "text.keras",
                   "not a .keras archive")
    good = tmp_path / "good.keras"
    Landmarker.from_preset("rcn_mtfl", branches=4).save(good)
    (tmp_path / "cut.keras").write_bytes(good.read_bytes()[:2000])
    one_line_error(capsys, ["export", "--model", tmp_path / "cut.keras", "--out", tmp_path / "e"], "cut.keras")


@pytest.mark.parametrize("box", ["nan,1,50,50", "1,1,inf,50", "1,1,0,50", "1,2,3"])
def test_bad_boxes(box, model_file, face_png, tmp_path, capsys):
    one_line_error(capsys, ["predict", face_png, "--model", model_file, "--box", box, "--out", tmp_path / "p"],
                   "--box")
    assert not (tmp_path / "p").exists()


def test_bad_boxes_file_names_file_and_line(model_file, face_png, tmp_path, capsys):
    boxes = tmp_path / "boxes.txt"
    boxes.write_text(f"{face_png},1,1,50,50\n{face_png},1,1,inf,50\n")
    one_line_error(capsys, ["predict", face_png, "--model", model_file, "--boxes", boxes, "--out", tmp_path / "p"],
                   "boxes.txt:2")
    one_line_error(capsys, ["predict", face_png, "--model", model_file, "--box", "500,500,20,20",
                            "--out", tmp_path / "p"], "outside the")


def test_predictions_are_valid_json_and_skip_unreadable_images(model_file, face_png, tmp_path, capsys):
    (tmp_path / "broken.png").write_text("not an image")
    code = cli.main([str(a) for a in ["predict", face_png, tmp_path / "broken.png", tmp_path / "none.png",
                                      "--model", model_file, "--detector", "none", "--out", tmp_path / "p"]])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "none.png" in err and "2 of 3 image(s) could not be read" in err
    out = json.loads((tmp_path / "p" / "keypoints.json").read_text())  # strict JSON: no NaN
    assert out["schema"] == 2 and len(out["images"]) == 1 and len(out["failed"]) == 2
    assert len(out["images"][0]["faces"]) == 1 and out["no_face"] == []
    assert (tmp_path / "p" / "face_keypoints.png").is_file()
    results = load_landmarker(model_file).predict([face_png, tmp_path / "broken.png"], on_error="skip")
    assert "keypoints" in results[0]["faces"][0] and "cannot decode image" in results[1]["error"]
    with pytest.raises(DataFormatError, match="broken.png"):
        load_landmarker(model_file).predict([face_png, tmp_path / "broken.png"])


def test_same_file_name_in_two_folders(model_file, tmp_path):
    image = synthetic_faces(1, 5, seed=4).images[0]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(image).save(tmp_path / folder / "face.png")
    boxes = tmp_path / "boxes.txt"
    boxes.write_text(f"{tmp_path / 'a' / 'face.png'},10,10,100,100\n{tmp_path / 'b' / 'face.png'},20,20,80,80\n")
    assert cli.main(["predict", str(tmp_path / "a" / "face.png"), str(tmp_path / "b" / "face.png"),
                     "--model", str(model_file), "--boxes", str(boxes), "--out", str(tmp_path / "p")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == ["a_face_keypoints.png", "b_face_keypoints.png"]
    faces = [i["faces"][0] for i in json.loads((tmp_path / "p" / "keypoints.json").read_text())["images"]]
    assert [f["crop_rect"][2] for f in faces] == pytest.approx([130, 104])  # each image its own box


def test_16_bit_and_other_modes_read_like_8_bit(tmp_path, model_file):
    grey = synthetic_faces(1, 5, seed=4).images[0]
    Image.fromarray(grey).save(tmp_path / "g8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(grey.astype(np.float32) / 255.0, "F").save(tmp_path / "gf.tif")
    Image.fromarray(grey).convert("P").save(tmp_path / "gp.png")
    for name in ("g16.png", "gf.tif", "gp.png"):
        np.testing.assert_allclose(load_image(tmp_path / name, "L").astype(int), grey.astype(int), atol=1)
    lm = load_landmarker(model_file)
    a, b = lm.predict([tmp_path / "g8.png", tmp_path / "g16.png"])
    np.testing.assert_allclose(a["faces"][0]["confidence"], b["faces"][0]["confidence"], rtol=1e-3)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch, model_file, capsys):
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    one_line_error(capsys, ["predict", tmp_path / "big.png", "--model", model_file, "--out", tmp_path / "p"],
                   "big.png", "image too large")


def test_degenerate_annotations_name_the_file(tmp_path):
    files = write_300w_folder(tmp_path / "afw", 2)
    write_pts(files[1], np.full((68, 2), 50.0))
    with pytest.raises(DataFormatError, match="face_1.pts.*one place"):
        load_300w(tmp_path, subsets="afw")
    far = np.full((68, 2), 50.0)
    far[:, 0] += np.arange(68)
    far[3] = (-100000, 50)
    write_pts(files[1], far)
    with pytest.raises(DataFormatError, match="face_1.pts.*far outside"):
        load_300w(tmp_path, subsets="afw")


def test_the_cache_follows_every_source_file(tmp_path):
    files = write_300w_folder(tmp_path / "afw", 2)
    cache = tmp_path / "cache"
    first = load_300w(tmp_path, subsets="afw", cache_dir=cache)
    image = files[0].with_suffix(".jpg")
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(image)  # same annotations, new pixels
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10_000_000))
    again = load_300w(tmp_path, subsets="afw", cache_dir=cache)
    assert first.images[0].mean() > 5 and again.images[0].max() == 0


def test_atomic_writes_have_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "x.json", b"{}")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(mask)


@pytest.mark.slow
def test_api_validates_where_values_enter(tmp_path):
    with pytest.raises(ValueError, match="steps_per_epoch"):
        preset_train_config("rcn_mtfl", steps_per_epoch=-1)
    with pytest.raises(ValueError, match="batch_size"):
        Landmarker.from_preset("rcn_mtfl", branches=4).predict_crops(np.zeros((1, 80, 80, 1)), batch_size=0)
    config = preset_train_config("rcn_mtfl", epochs=1, output_dir=str(tmp_path / "r"), batch_size=8,
                                 **{"data.synthetic_train": 16, "data.synthetic_validation": 8,
                                    "data.synthetic_test": 8, "model_options.branches": 4})
    train(config, verbose=0)
    rows = (tmp_path / "r" / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 2
    assert not list((tmp_path / "r").rglob("*.tmp*"))


# --- Issue 29: nothing a user has is overwritten, no change is silently ignored ---------------------------

def _config(run) -> dict:
    return json.loads((run / "config.json").read_text())


@pytest.mark.slow
def test_resume_refuses_a_changed_network_recipe_or_data_and_keeps_config(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main([str(a) for a in ["train", "--preset", "rcn_mtfl", "--epochs", "1", "--out", run, *TINY]]) == 0
    before = (run / "config.json").read_bytes()
    one_line_error(capsys, ["train", "--preset", "rcn_mtfl_skip", "--epochs", "2", "--out", run, "--resume", *TINY],
                   "--resume", "other settings", "model \"rcn_mtfl\" -> \"rcn_mtfl_skip\"")
    one_line_error(capsys, ["train", "--preset", "rcn_mtfl", "--epochs", "2", "--out", run, "--resume", *TINY,
                            "--set", "learning_rate=0.1"], "learning_rate 1.0 -> 0.1")
    write_300w_folder(tmp_path / "data" / "afw", 6)  # other data with another K (68 points)
    one_line_error(capsys, ["train", "--preset", "rcn_mtfl", "--epochs", "2", "--out", run, "--resume", *TINY,
                            "--data", "300w", "--root", tmp_path / "data"], "data.root", "data.source")
    assert (run / "config.json").read_bytes() == before  # nothing rewritten before a resume is accepted
    assert json.loads((run / "state" / "state.json").read_text())["epoch"] == 1
    # the run's own settings resume (the README's command), and more epochs are applied and said
    assert cli.main([str(a) for a in ["train", "--config", run / "config.json", "--resume", "--epochs", "2",
                                      "--progress", "0"]]) == 0
    assert "resuming" in capsys.readouterr().err and _config(run)["epochs"] == 2
    assert json.loads((run / "state" / "state.json").read_text())["epoch"] == 2
    # `rcn train --out R --resume` alone takes R's settings
    assert cli.main([str(a) for a in ["train", "--out", run, "--resume", "--epochs", "3", "--progress", "0"]]) == 0
    assert _config(run)["model"] == "rcn_mtfl" and _config(run)["epochs"] == 3


def test_resume_changes_are_sorted_into_safe_and_refused():
    from rcn_keras.app.training.config import resume_changes

    base = preset_train_config("rcn_mtfl_real", epochs=10)
    safe, refused = resume_changes(base, base.with_overrides({"epochs": 20, "output_dir": "elsewhere"}))
    assert safe == {"epochs": (10, 20)} and refused == {}
    safe, refused = resume_changes(base, base.with_overrides({"augment.rotation": 5, "model_options.branches": 5}))
    assert safe == {} and set(refused) == {"augment.rotation", "model_options.branches"}


@pytest.mark.slow
def test_more_epochs_on_resume_replan_the_cosine_schedule(tmp_path):
    config = preset_train_config("rcn_mtfl_real", output_dir=str(tmp_path / "run"), epochs=1, batch_size=8,
                                 **{"data.synthetic_train": 16, "data.synthetic_validation": 8,
                                    "data.synthetic_test": 8, "model_options.branches": 4, "readout": None,
                                    "shape_prior": "off", "visualize_every": 0, "warmup_epochs": 0})
    train(config, verbose=0)
    from rcn_keras.app.training.callbacks import load_training_state

    model, _ = load_training_state(tmp_path / "run" / "state")
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # the 1-epoch cosine ended
    longer = config.with_overrides({"epochs": 4})
    result = train(longer, resume=True, verbose=0)
    assert len(result["history"]["loss"]) == 3
    model, _ = load_training_state(tmp_path / "run" / "state")
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    rows = [r for r in csv_rows(tmp_path / "run" / "log.csv")]
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert float(rows[1]["loss"]) != float(rows[2]["loss"])  # training went on (the rate was not zero)


def csv_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_landmarker(model_file):
    return load_landmarker(model_file)


def test_saved_model_export_never_replaces_what_a_user_has(model_file, tmp_path, capsys):
    folder = tmp_path / "sm"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    one_line_error(capsys, ["export", "--model", model_file, "--format", "saved_model", "--out", folder],
                   "holds other files")
    assert (folder / "notes.txt").read_text() == "mine" and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("mine")
    one_line_error(capsys, ["export", "--model", model_file, "--out", tmp_path / "file"], "is not a folder")
    assert (tmp_path / "file").read_text() == "mine"
    # a new folder, then over its own earlier export
    for _ in range(2):
        assert cli.main(["export", "--model", str(model_file), "--out", str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "saved_model.pb").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_file_exports_refuse_special_files_and_foreign_files(model_file, tmp_path, capsys):
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    one_line_error(capsys, ["export", "--model", model_file, "--format", "tflite", "--out", fifo],
                   "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "notes.tflite").write_text("my notes")
    one_line_error(capsys, ["export", "--model", model_file, "--format", "tflite", "--out", tmp_path / "notes.tflite"],
                   "is not a TFLite model")
    assert (tmp_path / "notes.tflite").read_text() == "my notes"
    one_line_error(capsys, ["export", "--model", model_file, "--format", "onnx", "--out", tmp_path / "notes.tflite"],
                   "is not a ONNX model")
    one_line_error(capsys, ["export", "--model", model_file, "--format", "tflite", "--out", tmp_path],
                   "is a folder")


def test_saved_model_write_failure_is_one_line_and_leaves_nothing(model_file, tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    def full_disk(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "saved_model.pb; No space left on device\nmore")

    monkeypatch.setattr(tf.saved_model, "save", full_disk)  # what ExportArchive.write_out writes with
    one_line_error(capsys, ["export", "--model", model_file, "--out", tmp_path / "sm"], "sm", "No space left",
                   "free some space")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_no_partial_file_for_long(tmp_path):
    from rcn_keras.files import atomic_folder, atomic_write_bytes

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".out.tflite.{dead.pid}-abc.tmp").write_bytes(b"partial")  # as a killed export leaves it
    (tmp_path / f".sm.{dead.pid}-abc").mkdir()
    (tmp_path / f".sm.{os.getpid()}-live").mkdir()  # a writer that still runs is left alone
    atomic_write_bytes(tmp_path / "out.tflite", b"whole")
    with atomic_folder(tmp_path / "sm") as tmp:
        (tmp / "saved_model.pb").write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".sm.{os.getpid()}-live", "out.tflite", "sm"]


def test_predict_locks_its_output_folder_and_keeps_one_run_in_it(model_file, face_png, tmp_path, capsys):
    out = tmp_path / "p"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        one_line_error(capsys, ["predict", face_png, "--model", model_file, "--detector", "none", "--out", out],
                       f"in use by process {holder.pid}", "another rcn predict")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    other = tmp_path / "other.png"
    other.write_bytes(face_png.read_bytes())
    (out / "mine.txt").write_text("mine")
    one_line_error(capsys, ["predict", face_png, "--model", model_file, "--detector", "none", "--out", out],
                   "holds files that rcn did not write", "--overwrite")  # a folder that is not ours
    assert sorted(p.name for p in out.iterdir()) == [".lock", "mine.txt"]
    assert cli.main(["predict", str(face_png), str(other), "--model", str(model_file), "--detector", "none",
                     "--out", str(out), "--overwrite"]) == 0
    assert "2 overlay(s)" in capsys.readouterr().out
    assert {"face_keypoints.png", "other_keypoints.png"} <= {p.name for p in out.iterdir()}
    assert cli.main(["predict", str(other), "--model", str(model_file), "--detector", "none", "--no-overlay",
                     "--out", str(out)]) == 0  # ours now: no --overwrite needed
    assert "overlay" not in capsys.readouterr().out.splitlines()[-1].split("(")[-1]
    assert sorted(p.name for p in out.iterdir()) == [".rcn-output", "keypoints.csv", "keypoints.json", "mine.txt"]
    assert cli.main(["predict", str(other), "--model", str(model_file), "--detector", "none", "--out", str(out)]) == 0
    doc = json.loads((out / "keypoints.json").read_text())
    assert doc["images"][0]["overlay"] == "other_keypoints.png" and doc["complete"] is True
    assert sorted(p.name for p in out.iterdir()) == [".rcn-output", "keypoints.csv", "keypoints.json", "mine.txt",
                                                     "other_keypoints.png"]


def test_predict_out_must_be_a_folder_and_min_score_a_number(model_file, face_png, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, ["predict", face_png, "--model", model_file, "--detector", "none", "--out",
                            tmp_path / "file"], "--out", "must be a folder")
    one_line_error(capsys, ["predict", face_png, "--model", model_file, "--min-score", "nan", "--out",
                            tmp_path / "p"], "--min-score", "finite")
    assert not (tmp_path / "p").exists()


def test_a_boxes_file_may_list_several_faces_of_one_image(model_file, face_png, tmp_path, capsys):
    (tmp_path / "boxes.txt").write_text(f"{face_png.name},10,10,60,60\n{face_png.name},80,80,50,50\n")
    assert cli.main(["predict", str(face_png), "--model", str(model_file), "--boxes", str(tmp_path / "boxes.txt"),
                     "--out", str(tmp_path / "p")]) == 0
    faces = json.loads((tmp_path / "p" / "keypoints.json").read_text())["images"][0]["faces"]
    assert [f["box"] for f in faces] == [[10, 10, 60, 60], [80, 80, 50, 50]]
    lm = load_landmarker(model_file)
    both = lm.predict([face_png], boxes=[[(10, 10, 60, 60), (80, 80, 50, 50)]])[0]["faces"]
    assert len(both) == 2 and np.allclose(both[1]["keypoints"], faces[1]["keypoints"], atol=1e-2)


def test_image_arrays_are_read_by_their_dtype(tiny_landmarker):
    rgb = np.asarray(Image.fromarray(synthetic_faces(1, 5, seed=4).images[0]).convert("RGB"))
    lm = tiny_landmarker
    ref = lm.predict(rgb)[0]["faces"][0]["keypoints"]
    for same in (rgb.astype(np.float32) / 255, rgb.astype(np.uint16) * 257, rgb.astype(np.float64) / 255):
        assert np.allclose(lm.predict(same)[0]["faces"][0]["keypoints"], ref, atol=1e-3), same.dtype
    with pytest.raises(ValueError, match="float images are read as 0-1"):
        lm.predict(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="dtype int64"):
        lm.predict(rgb.astype(np.int64))
    with pytest.raises(ValueError, match="NaN"):
        lm.predict(np.full((50, 50), np.nan, np.float32))


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None and importlib.util.find_spec("tensorflow") is None,
                    reason="no TFLite runtime")
def test_exported_files_refuse_wrong_crops_and_name_bad_files(tiny_landmarker, tmp_path):
    from rcn_keras.runtimes import ExportedLandmarker

    path = tiny_landmarker.export(tmp_path / "m.tflite", "tflite")
    runner = ExportedLandmarker(path)
    assert runner(np.zeros((3, 80, 80)))["keypoints"].shape == (3, 5, 2)
    for shape in ((2, 80, 80, 3), (160, 160), (80, 80, 1, 1, 1)):
        with pytest.raises(ValueError, match=r"crops must be \(N, 80, 80, 1\)"):
            runner(np.zeros(shape))
    (tmp_path / "bad.tflite").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="bad.tflite: cannot load the TFLite model"):
        ExportedLandmarker(tmp_path / "bad.tflite")
    (tmp_path / "bad.onnx").write_bytes(b"garbage" * 10)
    if importlib.util.find_spec("onnxruntime") is not None:
        with pytest.raises(ValueError, match="bad.onnx: cannot load the ONNX model"):
            ExportedLandmarker(tmp_path / "bad.onnx")
    tiny_landmarker.export(tmp_path / "sm")
    with pytest.raises(ValueError, match="a folder, not a .tflite or .onnx file.*SavedModel"):
        ExportedLandmarker(tmp_path / "sm")


@pytest.mark.slow
def test_one_keypoint_schemes_train(tmp_path, capsys):
    from data_fixtures import write_keypoint_csv

    csv_path = write_keypoint_csv(tmp_path / "csv", 12, [30], boxes=True)
    (tmp_path / "k1.json").write_text(json.dumps({"num_keypoints": 1, "name": "nose"}))
    assert cli.main([str(a) for a in ["train", "--data", "csv", "--root", csv_path, "--keypoints", tmp_path / "k1.json",
                                      "--epochs", "1", "--batch-size", "4", "--set", "model_options.branches=4",
                                      "--progress", "0", "--out", tmp_path / "run"]]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert np.isfinite(summary["test_nme"]) and np.isfinite(summary["best_val_nme"])
    write_keypoint_csv(tmp_path / "nobox", 4, [30])
    one_line_error(capsys, ["train", "--data", "csv", "--root", tmp_path / "nobox" / "points.csv", "--keypoints",
                            tmp_path / "k1.json", "--out", tmp_path / "r2"], "points.csv:2", "give a face box")


def test_one_visible_point_with_a_box_is_a_face_and_missing_images_name_the_line(tmp_path):
    from data_fixtures import write_coco, write_keypoint_csv
    from rcn_keras.data.datasets import load_coco, load_keypoint_csv

    coco = write_coco(tmp_path / "coco", 3, [36, 45, 30, 48, 54], hide={0: [0, 1, 2, 3]})
    faces = load_coco(coco, 5)
    assert len(faces) == 3 and (faces.border_codes[0] == -1).sum() == 4
    csv_path = write_keypoint_csv(tmp_path / "csv", 3, [36, 45, 30, 48, 54])
    (tmp_path / "csv" / "img" / "f1.png").unlink()
    with pytest.raises(DataFormatError, match=r"points.csv:3: image img/f1.png not found"):
        load_keypoint_csv(csv_path, 5)
    (tmp_path / "coco" / "images" / "f2.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"faces.json \(annotations\[2\]\): image f2.jpg not found"):
        load_coco(coco, 5)


def test_one_point_nme_is_relative_to_the_face_box():
    from rcn_keras.evaluation.nme import per_sample_nme
    from rcn_keras.keypoints import FACE_SIDE_IN_CROP, KeypointScheme

    gt = np.full((2, 1, 2), 0.5)
    pred = gt + [[[0.01, 0.0]], [[0.0, 0.02]]]
    nme = per_sample_nme(pred, gt, scheme=KeypointScheme(1))
    assert np.allclose(nme, [0.01 / FACE_SIDE_IN_CROP, 0.02 / FACE_SIDE_IN_CROP])


def test_sigterm_stops_a_command_as_ctrl_c_does():
    import signal

    previous = cli._stop_on_terminate()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_extra_training_faces_from_the_test_set_are_refused(tmp_path):
    from rcn_keras.data.formats import read_pts
    from rcn_keras.data.sources import DataConfig, load_splits

    write_300w_folder(tmp_path / "helen" / "trainset", 4, seed=0)
    afw = write_300w_folder(tmp_path / "afw", 2, seed=50)
    points = read_pts(afw[0], n_points=68) - 1.0  # 0-based pixel centres
    row = ",".join(["afw/face_0.jpg"] + [f"{v:.2f}" for v in points.reshape(-1)])
    (tmp_path / "extra.csv").write_text(row + "\n")
    data = DataConfig(source="300w", root=str(tmp_path), train_subsets=("helen_train",), test_subsets=("afw",),
                      validation=1, extra_train=(str(tmp_path / "extra.csv"),))
    with pytest.raises(ValueError, match=r"extra\.csv: 1 of its images are test images .*face_0\.jpg"):
        load_splits(data, 68)
    kept = load_splits(DataConfig(**{**data.to_dict(), "test_subsets": ()}), 68)  # not a test image there
    assert len(kept.train) == 4


def test_a_big_image_is_read_up_to_the_stated_limit_without_a_library_warning(tmp_path, monkeypatch, recwarn):
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "a.png")   # 1,600 pixels
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "b.png")   # 2,500 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL warns above 1,000 and refuses above 2,000
    assert load_image(tmp_path / "a.png").shape == (40, 40, 3) and not recwarn.list
    with pytest.raises(DataFormatError, match=r"b\.png: image too large \(over 2,000 pixels"):
        load_image(tmp_path / "b.png")


def test_skipped_faces_are_one_warning_line(tmp_path, capsys):
    files = write_300w_folder(tmp_path / "faces", 3)
    files[1].with_suffix(".jpg").write_text("not an image")
    assert cli.main(["evaluate", "--model", "rcn-300w-fast", "--data", "pts", "--root", str(tmp_path / "faces"),
                     "--on-error", "skip", "--out", str(tmp_path / "ev")]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("rcn: warning: skipped 1 of 3 faces") and len(err.splitlines()) == 1, err


def test_the_api_says_what_images_it_accepts_and_reads_a_pil_image(tiny_landmarker, face_png):
    for bad, fragment in ((None, "got NoneType"), (b"\x89PNG", "got bytes"), ([[1, 2], [3, 4]], "got list")):
        with pytest.raises(TypeError, match=f"expected a file path, a numpy array .*or a PIL image.*{fragment}"):
            tiny_landmarker.predict(bad, detector="none")
    with Image.open(face_png) as im:
        from_pil = tiny_landmarker.predict(im, detector="none")[0]
    from_file = tiny_landmarker.predict(str(face_png), detector="none")[0]
    np.testing.assert_allclose(from_pil["faces"][0]["keypoints"], from_file["faces"][0]["keypoints"], atol=1e-4)
