"""Shipped models: packaging, loading by name, model cards, tuned read-out; and the local soft-argmax."""

import json

import keras
import numpy as np
import pytest

import rcn_keras
from rcn_keras import cli, pretrained
from rcn_keras.models.head import KeypointReadout
from rcn_keras.pretrained import WEIGHTS_DIR, default_readout, package_pretrained, pretrained_info

SHIPPED = {"rcn-300w": 68, "rcn-afw5": 5}


def _maps(peaks):
    logits = np.full((1, 80, 80, 1), -20.0, np.float32)
    for x, y, v in peaks:
        logits[0, y, x, 0] = v
    return logits


def test_local_soft_argmax_is_sub_pixel_and_ignores_far_modes():
    two = _maps([(10, 20, 10.0), (11, 20, 10.0)])
    for mode in ("local_soft_argmax", "soft_argmax"):
        xy = KeypointReadout(mode)(two)["keypoints"].numpy()[0, 0]
        np.testing.assert_allclose(xy * 80, [11.0, 20.5], atol=1e-3)  # between the two pixel centres
    assert KeypointReadout("argmax")(two)["keypoints"].numpy()[0, 0, 0] * 80 in (10.5, 11.5)
    far = _maps([(10, 20, 10.0), (11, 20, 10.0), (70, 70, 9.5)])
    local = KeypointReadout("local_soft_argmax")(far)["keypoints"].numpy()[0, 0] * 80
    soft = KeypointReadout("soft_argmax")(far)["keypoints"].numpy()[0, 0] * 80
    np.testing.assert_allclose(local, [11.0, 20.5], atol=1e-3)
    assert soft[0] > 20  # the global expectation is dragged towards the far mode


def test_package_load_by_name_and_tuned_readout(tmp_path, monkeypatch):
    model = rcn_keras.build_model("rcn_mtfl", branches=4)
    model.compile("adam", loss=rcn_keras.PixelNLL())
    model.save(tmp_path / "trained.keras")
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    card = {"name": "tiny", "readout": "local_soft_argmax", "keypoints": 5}
    path = package_pretrained(tmp_path / "trained.keras", "tiny", card)
    assert pretrained.list_pretrained() == ["tiny"] and pretrained_info("tiny") == card
    assert default_readout("tiny") == "local_soft_argmax" and default_readout(tmp_path / "trained.keras") == "argmax"
    loaded = rcn_keras.load_model("tiny")
    assert getattr(loaded, "optimizer", None) is None  # shipped without optimizer state
    x = np.random.default_rng(0).uniform(0, 255, (2, 80, 80, 1)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
    assert path.stat().st_size < (tmp_path / "trained.keras").stat().st_size


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_predicts_on_a_fresh_install(name, tmp_path, capsys):
    """`rcn predict face.png --model NAME` with no data present: the weights live in the package."""
    from PIL import Image

    from rcn_keras.data.synthetic import synthetic_face

    assert name in pretrained.list_pretrained(), f"{name} is not shipped in {WEIGHTS_DIR}"
    info = pretrained_info(name)
    assert info["keypoints"] == SHIPPED[name] and "research use only" in info["licence"]
    assert info["validation"][0]["nme"] < 20
    image, _ = synthetic_face(3)
    Image.fromarray(image).save(tmp_path / "face.png")
    assert cli.main(["predict", str(tmp_path / "face.png"), "--model", name, "--out", str(tmp_path / "p")]) == 0
    out = json.loads((tmp_path / "p" / "keypoints.json").read_text())
    points = np.asarray(out["faces"][0]["keypoints"])
    assert points.shape == (SHIPPED[name], 2) and np.all((points > 0) & (points < 160))


def test_shipped_models_match_their_cards_on_real_faces(shared_300w):
    """The card's validation NME is what the shipped file scores on the shared 300W split."""
    from rcn_keras.evaluation.report import evaluate_predictions, predict_faceset
    from rcn_keras.training.config import TrainConfig
    from rcn_keras.training.fit import load_splits

    for name in SHIPPED:
        info = pretrained_info(name)
        config = TrainConfig.from_dict({"model": info["preset"], "model_options": info["model_options"],
                                        "data": {"source": "300w", "root": str(shared_300w),
                                                 "train_subsets": info["train_subsets"],
                                                 "test_subsets": [], "validation": 0.1}})
        val = load_splits(config).validation
        pred, gt, _ = predict_faceset(rcn_keras.load_model(name), val, 64, info["readout"])
        row = next(r for r in evaluate_predictions(pred, gt, val)["rows"] if r["subset"] == "all")
        assert row["nme"] == pytest.approx(info["validation"][0]["nme"], abs=0.01)
        assert keras.saving.load_model(WEIGHTS_DIR / f"{name}.keras").count_params() == info["params"]


def test_box_formats_map_detector_boxes_to_the_training_crop():
    from rcn_keras.predict import BOX_FORMATS, box_convention, crop_rect, predict

    np.testing.assert_allclose(crop_rect((200, 200), (50, 60, 100, 100), 1.3), [35, 45, 130])
    scale, sx, sy = BOX_FORMATS["dlib"][68]
    np.testing.assert_allclose(crop_rect((200, 200), (50, 60, 100, 100), scale, (sx, sy)),
                               [100 + 100 * sx - 50 * scale, 110 + 100 * sy - 50 * scale, 100 * scale], rtol=1e-6)
    assert box_convention("dlib", 5) == BOX_FORMATS["dlib"][5]
    with pytest.raises(ValueError, match="box_format"):
        box_convention("yolo", 68)
    model = rcn_keras.build_model("rcn_mtfl", branches=4)
    image = np.zeros((200, 200), np.uint8)
    rects = {f: predict([image], model, boxes=[(50, 60, 100, 100)], box_format=f)[0]["rect"]
             for f in ("landmarks", "dlib")}
    np.testing.assert_allclose(rects["landmarks"], [35, 45, 130])
    np.testing.assert_allclose(rects["dlib"][2], 100 * BOX_FORMATS["dlib"][5][0], rtol=1e-6)
