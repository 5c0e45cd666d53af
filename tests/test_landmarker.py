"""`Landmarker`: read-outs, save / load round trips, presets, old files, photos with boxes, export,
float32 saving of mixed-precision models, and the shipped models."""

import json

import keras
import numpy as np
import pytest

import rcn_keras
from rcn_keras.app.cli import main as cli
from rcn_keras.boxes import crop_rect, default_box_formats
from rcn_keras.landmarker import Landmarker, float32_copy, load_landmarker
from rcn_keras.models.head import KeypointReadout
from rcn_keras.presets import get_preset, list_presets

SHIPPED = {"rcn-300w": 68, "rcn-300w-hr": 68, "rcn-300w-fast": 68, "rcn-afw5": 5, "sumnet-afw5": 5}
RNG = np.random.default_rng(0)
CROPS = RNG.uniform(0, 255, (2, 80, 80, 1)).astype("float32")


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


def test_round_trip_keeps_readout_box_formats_and_outputs(tmp_path):
    lm = Landmarker.from_preset("rcn_mtfl_tuned", branches=4)
    assert lm.readout == "local_soft_argmax" and lm.preset == "rcn_mtfl_tuned"
    lm.save(tmp_path / "lm.keras")
    again = keras.saving.load_model(tmp_path / "lm.keras", safe_mode=True)
    assert isinstance(again, Landmarker)
    assert (again.readout, again.box_formats, again.default_box_format) == \
           ("local_soft_argmax", lm.box_formats, "landmarks")
    for key in ("presoftmax", "keypoints", "confidence"):
        np.testing.assert_allclose(again(CROPS)[key], lm(CROPS)[key], atol=1e-5)
    np.testing.assert_allclose(again.predict_crops(CROPS)["keypoints"], lm(CROPS)["keypoints"], atol=1e-5)
    soft = again.with_readout("soft_argmax")
    assert soft.readout == "soft_argmax" and soft.backbone is again.backbone


def test_old_bare_map_files_load_with_argmax(tmp_path):
    maps = rcn_keras.build_model("rcn_mtfl", branches=4)
    maps.save(tmp_path / "old.keras")
    lm = load_landmarker(tmp_path / "old.keras")
    assert isinstance(lm, Landmarker) and lm.readout == "argmax"
    assert lm.box_formats == default_box_formats(5)
    np.testing.assert_allclose(lm(CROPS)["presoftmax"], maps(CROPS), atol=1e-5)


def test_loading_something_else_is_one_clear_error(tmp_path):
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    dense.save(tmp_path / "dense.keras")
    with pytest.raises(ValueError, match="dense.keras.*not a (keypoint map|landmark) model"):
        load_landmarker(tmp_path / "dense.keras")
    (tmp_path / "text.keras").write_text("hello")
    with pytest.raises(ValueError, match="text.keras: cannot load model"):
        load_landmarker(tmp_path / "text.keras")
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_landmarker(tmp_path / "none.keras")
    with pytest.raises(ValueError, match="preset without trained weights"):
        load_landmarker("rcn_mtfl")
    with pytest.raises(ValueError, match="denoiser"):
        Landmarker.from_preset("denoiser_300w_cpu")


def test_predict_photos_with_boxes_and_box_formats():
    lm = Landmarker.from_preset("rcn_mtfl", branches=4)
    image = RNG.uniform(0, 255, (200, 220, 3)).astype(np.uint8)
    box = (50, 60, 100, 100)
    res = [r["faces"][0] for r in lm.predict([image, image[..., 0]], boxes=[box, None])]
    assert len(res) == 2 and res[0]["keypoints"].shape == (5, 2) and res[0]["box"] == box
    np.testing.assert_allclose(res[0]["rect"], crop_rect((200, 220), box, default_box_formats(5)["landmarks"]))
    np.testing.assert_allclose(res[1]["rect"], [0, -10, 220])  # no box: the image is the crop
    dlib = lm.predict(image, boxes=[box], box_format="dlib")[0]["faces"][0]
    np.testing.assert_allclose(dlib["rect"][2], 100 * default_box_formats(5)["dlib"][0], rtol=1e-6)
    # keypoints in image pixels = crop keypoints mapped through the crop rectangle
    x, y, side = res[0]["rect"]
    np.testing.assert_allclose(res[0]["keypoints"], res[0]["crop_keypoints"] * side + [x, y] - 0.5, atol=1e-4)
    with pytest.raises(ValueError, match="box format 'yolo' is not accepted.*dlib, landmarks"):
        lm.predict(image, boxes=[box], box_format="yolo")
    for bad in [(float("nan"), 1, 50, 50), (1, 1, float("inf"), 50), (1, 1, 0, 5)]:
        with pytest.raises(ValueError, match="face box"):
            lm.predict(image, boxes=[bad])


@pytest.mark.slow
def test_export_uses_the_models_readout(tmp_path):
    import tensorflow as tf

    lm = Landmarker.from_preset("rcn_mtfl", branches=4).with_readout("soft_argmax")
    sm = tf.saved_model.load(str(lm.export(tmp_path / "sm")))
    out = sm.serve(tf.constant(CROPS))
    np.testing.assert_allclose(out["keypoints"], lm(CROPS)["keypoints"], atol=1e-4)


def test_mixed_precision_models_are_saved_in_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = rcn_keras.build_model("rcn_mtfl", branches=4)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.layers[2].compute_dtype == "bfloat16"
    plain = float32_copy(mixed)
    assert all(layer.compute_dtype == "float32" for layer in plain.layers)
    Landmarker(plain).save(tmp_path / "f32.keras")
    again = load_landmarker(tmp_path / "f32.keras")
    assert all(layer.compute_dtype == "float32" for layer in again.backbone.layers)
    # bfloat16 keeps about 3 significant digits: the float32 copy predicts the same maps closely
    np.testing.assert_allclose(again(CROPS)["presoftmax"], mixed(CROPS), atol=0.15)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_predicts_on_a_fresh_install(name, tmp_path):
    """`rcn predict face.png --model NAME` with no data present: the weights live in the package."""
    from PIL import Image

    from rcn_keras.data.synthetic import synthetic_face

    assert name in list_presets(shipped=True)
    preset = get_preset(name)
    card = preset.card()
    assert card["keypoints"] == SHIPPED[name] and "research use only" in card["licence"]
    assert card["validation"][0]["nme"] < 20
    lm = Landmarker.from_preset(name)
    assert lm.readout == preset.readout == card["readout"]  # one read-out, carried by the model
    assert getattr(lm, "optimizer", None) is None
    assert all(layer.compute_dtype == "float32" for layer in lm.backbone.layers)
    image, _ = synthetic_face(3)
    Image.fromarray(image).save(tmp_path / "face.png")
    assert cli.main(["predict", str(tmp_path / "face.png"), "--model", name, "--detector", "none",
                     "--out", str(tmp_path / "p")]) == 0
    out = json.loads((tmp_path / "p" / "keypoints.json").read_text())
    points = np.asarray(out["images"][0]["faces"][0]["keypoints"])
    assert points.shape == (SHIPPED[name], 2) and np.all((points > 0) & (points < 160))


@pytest.mark.slow
def test_shipped_models_match_their_cards_on_real_faces(shared_300w):
    """The card's validation NME is what the shipped file scores on the shared 300W split."""
    from rcn_keras.data.crop import crop_side
    from rcn_keras.data.sources import DataConfig, load_splits
    from rcn_keras.evaluation.report import evaluate_predictions, predict_faceset

    for name in SHIPPED:
        card = get_preset(name).card()
        data = DataConfig(source="300w", root=str(shared_300w), train_subsets=card["train_subsets"], validation=0.1)
        lm = load_landmarker(name)
        val = load_splits(data, card["keypoints"], crop_size=crop_side(lm.input_size)).validation  # as it trained
        pred, gt, _ = predict_faceset(lm, val, 64)
        row = next(r for r in evaluate_predictions(pred, gt, val)["rows"] if r["subset"] == "all")
        assert row["nme"] == pytest.approx(card["validation"][0]["nme"], abs=0.01)
        assert lm.backbone.count_params() == card["params"]


def test_a_bfloat16_training_step_matches_float32():
    """The same weights and batch: one Adam step in mixed_bfloat16 gives the float32 loss and update
    within bfloat16's precision (logits, softmax and loss stay float32)."""
    import keras

    from rcn_keras.losses import PixelNLL

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (4, 80, 80, 1)).astype("float32")
    y = np.concatenate([rng.uniform(0.2, 0.8, (4, 5, 2)), np.ones((4, 5, 1))], -1).astype("float32")
    reference = rcn_keras.build_model("rcn_mtfl", branches=4)
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = rcn_keras.build_model("rcn_mtfl", branches=4)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        model.set_weights(reference.get_weights())
        model.compile(keras.optimizers.Adam(1e-3), loss=PixelNLL("bilinear"))
        loss = float(model.train_on_batch(x, y))
        assert model.output.dtype == "float32"
        results[policy] = (loss, [np.asarray(w) for w in model.weights])
    (l32, w32), (l16, w16) = results["float32"], results["mixed_bfloat16"]
    assert l16 == pytest.approx(l32, rel=0.02)
    start = np.concatenate([np.ravel(w) for w in reference.get_weights()])
    step32 = np.concatenate([np.ravel(w) for w in w32]) - start
    step16 = np.concatenate([np.ravel(w) for w in w16]) - start
    moved = np.abs(step32) > 1e-4  # Adam's first step moves each weight by about the learning rate
    assert moved.mean() > 0.5
    assert np.mean(np.sign(step16[moved]) == np.sign(step32[moved])) > 0.9  # the same descent direction


def test_flip_averaging_is_mirror_equivariant_and_needs_a_mirror():
    """Flip-averaged predictions of mirrored crops are the mirrored, re-ordered predictions of the crops
    (exactly, for any network); the evaluation path gives the same points; a scheme without a mirror
    is refused."""
    from rcn_keras.data.faceset import FaceSet
    from rcn_keras.evaluation.report import predict_faceset
    from rcn_keras.keypoints import FACE_5, KeypointScheme

    lm = Landmarker.from_preset("rcn_mtfl", branches=4).with_readout("soft_argmax")
    plain, both = lm.predict_crops(CROPS)["keypoints"], lm.predict_crops(CROPS, flip=True)
    mirrored = lm.predict_crops(CROPS[:, :, ::-1], flip=True)
    back = mirrored["keypoints"][:, list(FACE_5.flip)]
    back[..., 0] = 1.0 - back[..., 0]
    np.testing.assert_allclose(back, both["keypoints"], atol=1e-5)
    np.testing.assert_allclose(mirrored["confidence"][:, list(FACE_5.flip)], both["confidence"], atol=1e-6)
    assert np.abs(both["keypoints"] - plain).max() > 1e-4  # an untrained net is not symmetric: averaging moved it
    # the evaluation path (tf.data crops) averages the same way
    big = RNG.uniform(0, 255, (2, 160, 160)).astype(np.uint8)

    def faceset(images):
        return FaceSet(images=images, keypoints=np.full((2, 5, 2), 80.0, np.float32),
                       rects=np.tile([[40.0, 40.0, 80.0]], (2, 1)).astype(np.float32),
                       border_codes=np.zeros((2, 5), np.int32), pads=np.zeros((2, 4), np.float32),
                       names=["a", "b"], groups=["g", "g"])

    averaged, _, _ = predict_faceset(lm, faceset(big), flip=True)
    a, _, _ = predict_faceset(lm, faceset(big))
    b, _, _ = predict_faceset(lm, faceset(np.ascontiguousarray(big[:, :, ::-1])))
    b = b[:, list(FACE_5.flip)]
    b[..., 0] = 1.0 - b[..., 0]
    np.testing.assert_allclose(averaged, (a + b) / 2, atol=1e-4)
    lone = KeypointScheme(num_keypoints=5, name="five")
    no_mirror = Landmarker(lm.backbone, "soft_argmax", keypoints=lone)
    with pytest.raises(ValueError, match="flip averaging needs a keypoint scheme with a mirror.*'five'"):
        no_mirror.predict_crops(CROPS, flip=True)
    with pytest.raises(ValueError, match="flip averaging"):
        no_mirror.predict(np.zeros((90, 90), np.uint8), flip=True)


def test_flip_on_the_command_line(tmp_path, capsys):
    from PIL import Image

    from rcn_keras.data.synthetic import synthetic_face
    from rcn_keras.keypoints import KeypointScheme

    image, _ = synthetic_face(4)
    Image.fromarray(image).save(tmp_path / "face.png")
    assert cli.main(["predict", str(tmp_path / "face.png"), "--model", "rcn-afw5", "--detector", "none", "--flip",
                     "--out", str(tmp_path / "p")]) == 0
    assert cli.main(["evaluate", "--model", "rcn-afw5", "--faces", "8", "--flip", "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "report.json").read_text())["flip_averaged"] is True
    lm = Landmarker.from_preset("rcn-afw5")
    Landmarker(lm.backbone, lm.readout, keypoints=KeypointScheme(num_keypoints=5, name="five")).save(tmp_path / "m.keras")
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(tmp_path / "m.keras"), "--faces", "8", "--flip"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flip averaging needs a keypoint scheme with a mirror" in err[0]
