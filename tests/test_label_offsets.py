"""Label offsets: each point's mean error on the training faces, added to a model's points (plain and
flip-averaged): their checks, what they add where, their measurement, save / load, export and training."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from data_fixtures import TINY_TRAINING

import keras
from rcn_keras.app.training import TrainConfig, preset_train_config, train
from rcn_keras.app.training.fit import keep_if_better
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.evaluation.calibration import measure_label_offsets
from rcn_keras.evaluation.report import predict_faceset
from rcn_keras.landmarker import Landmarker, load_landmarker
from rcn_keras.models.head import with_readout
from rcn_keras.models.label_offsets import LabelOffsets, as_label_offsets, mean_offsets
from rcn_keras.models.registry import build_model

K = 5
PLAIN = np.tile([[0.003, -0.001]], (K, 1)).astype(np.float32)
FLIP = np.tile([[0.007, 0.002]], (K, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    plain = Landmarker(build_model("rcn_mtfl", branches=4), "soft_argmax")
    return plain, plain.with_label_offsets(LabelOffsets(PLAIN, FLIP, faces=10))


def test_checks_name_the_problem():
    with pytest.raises(ValueError, match=r"'plain' must be finite \(K, 2\)"):
        LabelOffsets(np.zeros((K, 3)))
    with pytest.raises(ValueError, match=r"'flip' must be finite"):
        LabelOffsets(np.zeros((K, 2)), np.full((K, 2), np.nan))
    with pytest.raises(ValueError, match="'flip' is"):
        LabelOffsets(np.zeros((K, 2)), np.zeros((K + 1, 2)))
    with pytest.raises(ValueError, match="unknown fields"):
        LabelOffsets.from_dict({"plain": np.zeros((K, 2)).tolist(), "mean": 1})
    with pytest.raises(TypeError, match="label_offsets must be"):
        as_label_offsets([0.0])
    with pytest.raises(ValueError, match="the label offsets have 68 keypoints, the model 5"):
        Landmarker(build_model("rcn_mtfl", branches=4), label_offsets=LabelOffsets(np.zeros((68, 2))))
    with pytest.raises(ValueError, match="label_offsets='yes' is not allowed; allowed: off, on, auto"):
        TrainConfig(model="rcn_mtfl", label_offsets="yes")
    no_mirror = LabelOffsets(PLAIN)
    assert np.array_equal(no_mirror.reading(True), np.zeros_like(PLAIN))
    again = LabelOffsets.from_dict(no_mirror.to_dict())
    assert np.array_equal(again.plain, PLAIN) and again.flip is None


def test_mean_offsets_skip_points_that_do_not_count():
    gt = np.zeros((3, 2, 2))
    pred = np.array([[[0.1, 0.0], [0.5, 0.5]], [[0.3, 0.0], [0.5, 0.5]], [[9.0, 9.0], [0.5, 0.5]]])
    valid = np.array([[True, False], [True, False], [False, False]])
    assert np.allclose(mean_offsets(pred, gt, valid), [[-0.2, 0.0], [0.0, 0.0]])


def test_each_reading_moves_by_its_own_offsets_and_they_travel_with_the_model(models, tmp_path):
    plain, lm = models
    crops = np.random.default_rng(1).uniform(0, 255, (3, 80, 80, 1)).astype(np.float32)
    base = plain.predict_crops(crops)["keypoints"]
    out = lm.predict_crops(crops)
    assert np.allclose(out["keypoints"] - base, PLAIN, atol=1e-6)
    assert np.allclose(out["confidence"], plain.predict_crops(crops)["confidence"])
    assert np.allclose(keras.ops.convert_to_numpy(lm(crops)["keypoints"]), out["keypoints"], atol=1e-5)
    flipped = lm.predict_crops(crops, flip=True)["keypoints"] - plain.predict_crops(crops, flip=True)["keypoints"]
    assert np.allclose(flipped, FLIP, atol=1e-6)
    assert lm.with_label_offsets(None).label_offsets is None
    assert lm.to_float32().label_offsets is lm.label_offsets and lm.with_readout("argmax").label_offsets
    lm.save(tmp_path / "m.keras")
    again = load_landmarker(tmp_path / "m.keras")
    assert np.array_equal(again.label_offsets.flip, FLIP) and again.label_offsets.faces == 10
    assert np.array_equal(again.predict_crops(crops)["keypoints"], out["keypoints"])
    exported = with_readout(lm.backbone, "soft_argmax", None, lm.label_offsets)  # what the exports serve
    assert np.allclose(keras.ops.convert_to_numpy(exported(crops)["keypoints"]), out["keypoints"], atol=1e-5)


def test_measured_offsets_follow_the_labels(models):
    """Moving every label by d moves the measured offsets by exactly d (the predictions stay), plain and
    flipped, and the model's own offsets never count in the measurement."""
    _, lm = models
    faces = synthetic_faces(6, K, seed=3)
    first = measure_label_offsets(lm, faces)
    d = np.array([0.004, -0.002])
    shifted = faces.keypoints + (d * faces.rects[:, 2:3])[:, None, :]
    moved = dataclasses.replace(faces, keypoints=shifted.astype(np.float32))
    second = measure_label_offsets(lm, moved)
    assert second.faces == 6
    assert np.allclose(second.plain - first.plain, d, atol=1e-5)
    assert np.allclose(second.flip - first.flip, d, atol=1e-5)
    # measured offsets make the mean error of each point zero on those faces
    pred, gt, _ = predict_faceset(lm.with_label_offsets(second), moved)
    assert np.allclose((gt - pred).mean(axis=0), 0.0, atol=1e-5)


def test_rejected_offsets_also_drop_older_ones(models):
    """"auto" keeps the model without offsets when the new ones score worse, even when it came with older ones
    (the best checkpoint of a resumed run): the returned model is the one that was scored."""
    plain, with_old = models
    faces = synthetic_faces(8, K, seed=3)
    worse = plain.with_label_offsets(LabelOffsets(PLAIN + 0.2, FLIP + 0.2, faces=8))
    splits, config, summary = SimpleNamespace(validation=faces), SimpleNamespace(batch_size=8), {}
    kept, changed = keep_if_better("label_offsets", "auto", with_old, plain, worse, splits, config, summary)
    assert kept.label_offsets is None and changed and summary["label_offsets"] is False
    scores = summary["label_offsets_validation_nme"]
    assert scores["on"] > scores["off"]
    kept, changed = keep_if_better("label_offsets", "auto", plain, plain, worse, splits, config, {})
    assert kept is plain and not changed
    kept, changed = keep_if_better("label_offsets", "on", plain, plain, worse, splits, config, {})
    assert kept is worse and changed


@pytest.mark.slow
def test_training_measures_and_keeps_them(tmp_path):
    config = preset_train_config("rcn_mtfl", epochs=1, output_dir=str(tmp_path / "on"),
                                 label_offsets="on", **TINY_TRAINING)
    result = train(config, verbose=0)
    assert result["label_offsets"] is True and "label_offsets_validation_nme" not in result.summary
    saved = load_landmarker(tmp_path / "on" / "best.keras")
    assert saved.label_offsets is not None and saved.label_offsets.faces == 48
    config = preset_train_config("rcn_mtfl", epochs=1, output_dir=str(tmp_path / "off"),
                                 label_offsets="off", **TINY_TRAINING)
    result = train(config, verbose=0)
    assert "label_offsets" not in result.summary
    assert load_landmarker(tmp_path / "off" / "best.keras").label_offsets is None
