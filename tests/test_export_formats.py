"""Exported files and their runtimes: TFLite float32 / float16 / int8 (LiteRT) and ONNX (ONNX Runtime)
give the Keras model's keypoints; bad export requests are one clear error."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from rcn_keras.app.cli import main as cli
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.landmarker import Landmarker
from rcn_keras.runtimes import ExportedLandmarker

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("tf2onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def model_and_faces():
    faces = synthetic_faces(40, 5, seed=11)
    crops = np.concatenate([x.numpy() for x, _ in make_dataset(faces, "test", 64)])
    return Landmarker.from_preset("rcn-afw5"), crops


@pytest.mark.parametrize("quantize, tolerance", [("none", 1e-4), ("float16", 3e-3), ("int8", 0.03)])
def test_tflite_files_give_the_keras_keypoints(model_and_faces, tmp_path, quantize, tolerance):
    model, crops = model_and_faces
    expected = model.predict_crops(crops[:10])["keypoints"]
    path = model.export(tmp_path / "m.tflite", "tflite", batch_size=4, quantize=quantize,
                        representative=crops if quantize == "int8" else None)
    runner = ExportedLandmarker(path, threads=1)
    assert runner.runtime == "litert" and runner.batch_size == 4
    out = runner(crops[:10])  # 10 crops through a fixed batch of 4: the last batch is padded
    assert out["keypoints"].shape == (10, 5, 2) and out["confidence"].shape == (10, 5)
    assert np.median(np.abs(out["keypoints"] - expected)) < tolerance


def test_tflite_file_of_40x40_maps_gives_the_keras_keypoints(model_and_faces, tmp_path):
    """A fast network whose maps are not upsampled (40x40) exports like any: the file's keypoints are the
    Keras model's, with its read-out and shape prior."""
    from rcn_keras.models.registry import build_model
    from rcn_keras.models.shape_prior import ShapePrior

    _, crops = model_and_faces
    net = build_model("rcn_300w_fast", num_keypoints=5, upsample_maps=False)
    rng = np.random.default_rng(3)
    for layer in net.layers:  # trained-looking maps: not flat
        layer.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32) for w in layer.get_weights()])
    prior = ShapePrior.from_shapes(rng.uniform(0.3, 0.7, (20, 5, 2)))
    for model in (Landmarker(net, readout="soft_argmax"), Landmarker(net, readout="soft_argmax", shape_prior=prior)):
        runner = ExportedLandmarker(model.export(tmp_path / "m.tflite", "tflite", batch_size=1), threads=1)
        got, expected = runner(crops[:3])["keypoints"], model.predict_crops(crops[:3])["keypoints"]
        assert got.shape == (3, 5, 2) and np.median(np.abs(got - expected)) < 1e-4
        assert np.abs(got - expected).max() < 1e-3  # 0.08 px of the crop: the float kernels' rounding


def test_int8_file_keeps_the_upsampling_int8_and_the_shape_prior_float(model_and_faces, tmp_path):
    """In an int8 file, ops that only move values follow their input: the backbone's nearest upsampling
    (reshape, tile) stays int8 between quantised convolutions, with no quantise / dequantise pair around it,
    and the shape prior's re-orderings (reverse) stay float; the keypoints stay the Keras model's."""
    from rcn_keras.models.registry import build_model
    from rcn_keras.models.shape_prior import ShapePrior
    from rcn_keras.runtimes import tflite_interpreter

    _, crops = model_and_faces
    net = build_model("rcn_300w_fast", num_keypoints=5, upsample_maps=False)
    rng = np.random.default_rng(4)
    for layer in net.layers:
        layer.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32) for w in layer.get_weights()])
    prior = ShapePrior.from_shapes(rng.uniform(0.3, 0.7, (20, 5, 2)))
    model = Landmarker(net, readout="soft_argmax", shape_prior=prior)
    path = model.export(tmp_path / "m.tflite", "tflite", quantize="int8", representative=crops)
    interpreter = tflite_interpreter(str(path), threads=1)
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    kinds: dict[str, set] = {}
    for op in ops:
        kinds.setdefault(op["op_name"], set()).add(dtypes[op["inputs"][0]])
    assert kinds["TILE"] == kinds["CONV_2D"] == kinds["CONCATENATION"] == {np.int8}
    assert kinds["REVERSE_V2"] == kinds["EXP"] == {np.float32}
    # values are quantised only on their way into a convolution (the image, the contrast normalisation's
    # steps), never into the upsampling
    for quantize in (op for op in ops if op["op_name"] == "QUANTIZE"):
        assert {op["op_name"] for op in ops if quantize["outputs"][0] in op["inputs"]} == {"CONV_2D"}
    got = ExportedLandmarker(path, threads=1)(crops[:10])["keypoints"]
    assert np.median(np.abs(got - model.predict_crops(crops[:10])["keypoints"])) < 0.03


@pytest.mark.skipif(not HAS_ONNX, reason="the onnx extra (tf2onnx, onnxruntime) is not installed")
def test_onnx_file_gives_the_keras_keypoints_at_any_batch(model_and_faces, tmp_path):
    model, crops = model_and_faces
    runner = ExportedLandmarker(model.export(tmp_path / "m.onnx", "onnx"), threads=1)
    assert runner.runtime == "onnxruntime" and runner.batch_size is None
    for n in (1, 7):
        np.testing.assert_allclose(runner(crops[:n])["keypoints"], model.predict_crops(crops[:n])["keypoints"],
                                   atol=1e-4)


def test_bad_export_requests_are_one_clear_error(model_and_faces, tmp_path, capsys):
    model, _ = model_and_faces
    with pytest.raises(ValueError, match="int8 quantisation needs representative faces"):
        model.export(tmp_path / "m.tflite", "tflite", quantize="int8")
    with pytest.raises(ValueError, match="for --format tflite only"):
        model.export(tmp_path / "sm", "saved_model", quantize="float16")
    with pytest.raises(ValueError, match="quantize='int4' is not allowed"):
        model.export(tmp_path / "m.tflite", "tflite", quantize="int4")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not an exported model"):
        ExportedLandmarker(tmp_path / "x.txt")
    assert cli.main(["export", "--model", "rcn-afw5", "--format", "tflite", "--quantize", "int8",
                     "--out", str(tmp_path / "q.tflite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs representative faces: --data" in err[0]
    assert cli.main(["export", "--model", "rcn-afw5", "--format", "tflite", "--quantize", "int8", "--data",
                     "synthetic", "--out", str(tmp_path / "q.tflite")]) == 0
    assert ExportedLandmarker(tmp_path / "q.tflite")(np.zeros((2, 80, 80, 1)))["keypoints"].shape == (2, 5, 2)
