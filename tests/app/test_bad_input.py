"""Bad input, as a user hands it to us (issue 18): every case ends in one line naming the argument or
the file, exit code 2, or the right result; nothing half-written or mixed is left behind."""

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
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.keras"
    Landmarker.from_preset("rcn_mtfl", branches=4).save(path)
    return path


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
    one_line_error(capsys, ["predict", face_png, "--model", tmp_path / "text.keras"], "text.keras",
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
    one_line_error(capsys, ["predict", face_png, "--model", model_file, "--boxes", boxes], "boxes.txt:2")
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
