"""Photos at full speed (issue 30): reduced JPEG decoding fine enough for every face, overlays drawn on the
pixels already read (JPEG for JPEG photos, a long-side cap), and `rcn predict` on a shipped model's TFLite
twin with LiteRT, without importing TensorFlow, giving the Keras model's keypoints."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_fixtures import face_image
from rcn_keras.app.cli import main as cli
from rcn_keras.data.formats import decode_image
from rcn_keras.inference import read_photo
from rcn_keras.presets import PRESETS, list_presets

HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None


def big_photo(path, size=(2400, 1800), face=700, seed=3):
    """A large JPEG with one face of about ``face`` pixels, and the face's 68 points (0-based centres)."""
    img, pts = face_image(seed, size=face)
    canvas = np.full((size[1], size[0], 3), 120, np.uint8)
    canvas[300:300 + face, 900:900 + face] = img
    Image.fromarray(canvas).save(path, quality=92)
    return pts - 1.0 + [900, 300]


def test_reduced_decoding_keeps_the_whole_image_geometry(tmp_path):
    big_photo(tmp_path / "p.jpg")
    full, s1, size1 = decode_image(tmp_path / "p.jpg", upright=True)
    small, s4, size4 = decode_image(tmp_path / "p.jpg", upright=True, min_side=500)
    assert s1 == 1.0 and full.shape == (1800, 2400, 3) and size1 == size4 == (2400, 1800)
    assert s4 == 4.0 and small.shape == (450, 600, 3)
    Image.fromarray(full).save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png", min_side=500)[1] == 1.0  # only JPEG has DCT scales
    photo = read_photo(tmp_path / "p.jpg")
    assert photo.scale == 2.0 and (photo.width, photo.height) == (2400, 1800)
    assert photo.finer(1.0).scale == 1.0 and photo.preview(300)[0].shape[1] == 300


def test_a_large_photo_reads_as_from_its_full_pixels(tmp_path):
    from rcn_keras.landmarker import load_landmarker

    truth = big_photo(tmp_path / "p.jpg")
    lm = load_landmarker("rcn-300w")
    box = (900 + 100, 300 + 100, 500, 500)
    reduced = lm.predict(tmp_path / "p.jpg", boxes=[box])[0]["faces"][0]["keypoints"]
    whole = lm.predict(decode_image(tmp_path / "p.jpg", upright=True)[0], boxes=[box])[0]["faces"][0]["keypoints"]
    assert np.abs(reduced - whole).max() < 0.01 * 700  # within 1 % of the face size
    assert np.abs(reduced - truth).mean() < 0.05 * 700


def test_overlays_are_drawn_on_the_pixels_read_capped_and_jpeg_for_jpeg(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    big_photo(tmp_path / "in" / "p.jpg")
    Image.open(tmp_path / "in" / "p.jpg").save(tmp_path / "in" / "q.png")
    args = ["predict", str(tmp_path / "in"), "--model", "rcn-afw5", "--box", "1000,400,500,500"]
    assert cli.main([*args, "--out", str(tmp_path / "o"), "--overlay-size", "800"]) == 0
    doc = json.loads((tmp_path / "o" / "keypoints.json").read_text())
    assert [i["overlay"] for i in doc["images"]] == ["p_keypoints.jpg", "q_keypoints.png"]
    assert max(Image.open(tmp_path / "o" / "p_keypoints.jpg").size) <= 800
    assert Image.open(tmp_path / "o" / "q_keypoints.png").size == (800, 600)
    assert cli.main([*args, "--out", str(tmp_path / "full"), "--overlay-size", "0"]) == 0
    assert Image.open(tmp_path / "full" / "p_keypoints.jpg").size == (2400, 1800)
    assert cli.main([*args, "--out", str(tmp_path / "x"), "--overlay-size", "-1"]) == 2


@pytest.mark.skipif(not HAS_LITERT, reason="the litert extra is not installed")
def test_shipped_tflite_twins_give_the_keras_keypoints():
    from rcn_keras.data.synthetic import synthetic_faces
    from rcn_keras.data.pipeline import make_dataset
    from rcn_keras.landmarker import load_landmarker
    from rcn_keras.runtimes import ExportedLandmarker

    for name in list_presets(shipped=True):
        twin = PRESETS[name].weights_path.with_suffix(".tflite")
        assert twin.is_file(), f"{name} has no TFLite twin: python tools/ship_models.py --tflite-only"
        model = load_landmarker(name)
        faces = synthetic_faces(6, model.num_keypoints, seed=5)
        crops = np.concatenate([x.numpy() for x, _ in make_dataset(faces, "test", 8, out_size=model.input_size)])
        expected = model.predict_crops(crops)["keypoints"]
        got = ExportedLandmarker(twin)(crops)["keypoints"]
        diff = np.abs(got - expected)
        card = json.loads(twin.with_suffix(".json").read_text())
        if card.get("tflite", "float32") == "int8":
            # int8 keypoints stray from the float ones (0.7 px on average, 10 px at most on these synthetic crops,
            # which the twin was not calibrated on), more than a stale twin's would: its card names its .keras file.
            made_of = hashlib.sha256(twin.with_suffix(".keras").read_bytes()).hexdigest()  # ship_models.keras_digest
            assert card["tflite_of"] == made_of, f"{name}: stale int8 twin: re-run ship_models --tflite-only"
            assert diff.mean() < 0.02 and np.median(diff) < 0.01, name  # measured 0.009 and 0.004
            continue
        # Float differences between the runtimes reach 0.2 px on a synthetic crop through the prior's
        # unrolled conjugate gradient (mean 1e-4); a twin of another prior differs by 7e-4 on average.
        assert diff.mean() < 4e-4 and diff.max() < 4e-3, name  # stale twin: re-run ship_models --tflite-only


@pytest.mark.skipif(not HAS_LITERT, reason="the litert extra is not installed")
def test_predict_on_litert_needs_no_tensorflow_and_agrees_with_keras(tmp_path):
    big_photo(tmp_path / "in.jpg")
    code = ("import sys, json; from rcn_keras.app.cli.main import main; "
            f"rc = main(['predict', {str(tmp_path / 'in.jpg')!r}, '--model', 'rcn-300w', '--box', '1000,400,500,500', "
            f"'--out', {str(tmp_path / 'lite')!r}]); "
            "print(json.dumps([rc, 'tensorflow' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, False], out.stderr
    assert "XNNPACK" not in out.stderr
    assert cli.main(["predict", str(tmp_path / "in.jpg"), "--model", "rcn-300w", "--box", "1000,400,500,500",
                     "--runtime", "keras", "--out", str(tmp_path / "keras")]) == 0
    lite, keras = (json.loads((tmp_path / d / "keypoints.json").read_text())["images"][0]["faces"][0]["keypoints"]
                   for d in ("lite", "keras"))
    assert np.abs(np.array(lite) - np.array(keras)).max() < 0.5  # pixels of a 2400x1800 photo


def test_runtime_choice_is_said_in_one_line(tmp_path, capsys):
    from rcn_keras.app.cli.predict import add_parser, choose_runtime
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    parse = lambda *a: parser.parse_args(["predict", "x.jpg", *a])  # noqa: E731
    assert choose_runtime(parse("--model", "rcn-300w", "--flip")) == "keras"
    assert choose_runtime(parse("--model", "m.keras")) == "keras"
    assert choose_runtime(parse("--model", "m.tflite")) == "exported"
    with pytest.raises(ValueError, match="--flip: fixed in the exported file"):
        choose_runtime(parse("--model", "m.onnx", "--flip"))
    with pytest.raises(ValueError, match="--runtime litert runs a shipped model's TFLite twin"):
        choose_runtime(parse("--model", "m.keras", "--runtime", "litert"))
    if HAS_LITERT:
        assert choose_runtime(parse("--model", "rcn-300w")) == "litert"
