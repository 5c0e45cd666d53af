"""The network that sees more pixels (`ModelConfig.input_size=160`): its configuration, its graph (a finer
level H into F, maps still 80x80), its start from a trained 80x80 network as the same function, its data
(loose crops at 320, training crops at 160), and the whole way through: save / load, crops, photos and a
TFLite file."""

from __future__ import annotations

import numpy as np
import pytest

import rcn_keras
from rcn_keras.data.augment import AugmentConfig
from rcn_keras.data.crop import crop_side
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.landmarker import Landmarker, load_landmarker
from rcn_keras.models.config import ModelConfig
from rcn_keras.models.registry import build_from_config
from rcn_keras.models.transfer import for_keypoints

HR = dict(input_size=160, branches=6, output_level=1)


def pooled(x: np.ndarray) -> np.ndarray:
    """160x160 crops averaged down to 80x80 (what the network's F level sees of them)."""
    n = len(x)
    return x.reshape(n, 80, 2, 80, 2, 1).mean(axis=(2, 4))


@pytest.fixture(scope="module")
def trained_80():
    """A small 80x80 RCN with non-trivial weights (stands for a trained network)."""
    model = rcn_keras.build_model("rcn_300w", num_keypoints=5, width=0.25)
    rng = np.random.default_rng(5)
    for layer in model.layers:
        layer.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


def test_config_allows_160_for_rcn_ending_at_f_and_says_what_is_allowed():
    config = ModelConfig(family="rcn", layout="300w", num_keypoints=68, **HR)
    assert config.levels[:3] == ("H", "F", "M") and config.level_sizes[:3] == (160, 80, 40)
    assert config.map_size == 80 and config.replace(upsample_maps=False).map_size == 80
    assert ModelConfig.from_dict(config.to_dict()) == config
    for bad, match in [(dict(input_size=120), r"input_size=120 is not allowed; allowed: \(80, 160\)"),
                       (dict(input_size=160), "output_level=0 .*1 with input_size=160"),
                       (dict(input_size=160, output_level=1, branches=4), "branches=4 .*5 to 7 with input_size=160"),
                       (dict(family="sumnet", input_size=160, output_level=1), "input_size=160 .*'sumnet'")]:
        with pytest.raises(ValueError, match=match):
            ModelConfig(**{"family": "rcn", **bad})


def test_graph_takes_160_crops_and_gives_80x80_maps_for_every_layout():
    for layout in ("mtfl", "300w", "fast"):
        model = build_from_config(ModelConfig(layout=layout, num_keypoints=5, **HR))
        assert model.input.shape[1:] == (160, 160, 1) and model.output.shape[1:] == (80, 80, 5)
        assert model.get_layer("sh0").output.shape[1:3] == (160, 160)  # the finer level's trunk conv
        assert model.get_layer("concat_h").output.shape[1:3] == (80, 80)  # joins F's input
        out = model(np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 1)).astype("float32"))
        assert np.all(np.isfinite(out))


def test_starts_from_a_trained_80x80_network_as_itself_on_the_averaged_crop(trained_80):
    """Every layer but the new H conv is copied, and F's trunk conv takes the H features with zero weights:
    the 160 network computes the trained network's maps of the crop averaged down to 80x80; training then
    puts the finer pixels to use."""
    config = trained_80.rcn_config.replace(**HR)
    model, fresh = for_keypoints(trained_80, config, 5)
    assert fresh == ["sh0"]
    x = np.random.default_rng(1).uniform(0, 255, (3, 160, 160, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), trained_80.predict(pooled(x), verbose=0),
                               rtol=1e-4, atol=1e-4)
    kernel = model.get_layer("sh1").kernel.numpy()
    assert kernel.shape[2] == 1 + model.get_layer("sh0").kernel.shape[-1] and not kernel[:, :, 1:].any()


def test_data_at_twice_the_side_gives_the_same_targets_at_twice_the_pixels():
    faces = synthetic_faces(6, 5, seed=3)
    x80, y80 = next(iter(make_dataset(faces, "test", 6)))
    x160, y160 = next(iter(make_dataset(faces, "test", 6, out_size=160)))
    assert x160.shape == (6, 160, 160, 1) and crop_side(80) == 160 and crop_side(160) == 320
    np.testing.assert_allclose(y160.numpy(), y80.numpy(), atol=1e-5)  # normalised points: side-free
    assert np.abs(pooled(x160.numpy()) - x80.numpy()).mean() < 6  # the same face, sharper
    config = AugmentConfig(occlusion_min=20, occlusion_max=20, scale=0.0, translate=0.0, rotation=0)
    x, _ = next(iter(make_dataset(faces, "validation", 6, augment=config, out_size=160)))
    clean = x160.numpy()
    black = (x.numpy() == 0) & (clean > 0)  # the occlusion: 20 px of the 80x80 crop, 40 of the 160
    assert np.all(black.reshape(6, -1).sum(1) <= 40 * 40) and np.any(black.reshape(6, -1).sum(1) > 25 * 25)


def test_faceset_of_another_side_is_one_side_and_says_so():
    from rcn_keras.data.faceset import FaceSet

    faces = synthetic_faces(2, 5, seed=1)
    assert faces.crop_size == 160
    with pytest.raises(ValueError, match="square crops"):
        FaceSet(np.zeros((2, 160, 120), np.uint8), faces.keypoints, faces.rects, faces.border_codes, faces.pads,
                faces.names, faces.groups)
    big = FaceSet(np.zeros((2, 320, 320), np.uint8), faces.keypoints * 2, faces.rects * 2, faces.border_codes,
                  faces.pads, faces.names, faces.groups)
    with pytest.raises(ValueError, match="different sides"):
        FaceSet.concat([faces, big])


def test_saved_model_reads_crops_photos_and_exports(trained_80, tmp_path):
    from rcn_keras.runtimes import ExportedLandmarker

    model, _ = for_keypoints(trained_80, trained_80.rcn_config.replace(**HR), 5)
    marker = Landmarker(model, readout="soft_argmax")
    marker.save(tmp_path / "hr.keras")
    again = load_landmarker(tmp_path / "hr.keras")
    assert again.input_size == 160 and again.network_config().input_size == 160
    faces = synthetic_faces(4, 5, seed=2)
    crops = np.concatenate([x.numpy() for x, _ in make_dataset(faces, "test", 4, out_size=160)])
    out = again.predict_crops(crops)
    assert out["keypoints"].shape == (4, 5, 2)
    np.testing.assert_allclose(out["keypoints"], marker.predict_crops(crops)["keypoints"], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 160, 160, 1\)"):
        again.predict_crops(np.zeros((1, 80, 80, 1), np.float32))
    photo = np.repeat(np.asarray(faces.images[0], np.uint8)[..., None], 3, axis=-1)
    found = again.predict(photo, boxes=[(50, 50, 60, 60)])[0]["faces"][0]
    assert found["crop"].shape == (160, 160) and found["keypoints"].shape == (5, 2)
    runner = ExportedLandmarker(again.export(tmp_path / "hr.tflite", "tflite"), threads=1)
    assert runner.input_size == 160
    assert np.abs(runner(crops)["keypoints"] - out["keypoints"]).max() < 1e-3
    from_file = runner.predict(photo, boxes=[(50, 50, 60, 60)])[0]["faces"][0]
    assert np.abs(from_file["keypoints"] - found["keypoints"]).max() < 0.1  # pixels of the photo


def test_a_160_teacher_teaches_an_80_student_on_the_same_faces_at_its_pixels(trained_80):
    """Distillation from a finer teacher: it sees the 160x160 crops, the student their 2x2 means. The
    teacher made from the student itself (the same function on the averaged crop) teaches exactly the
    student's own probabilities."""
    import tensorflow as tf

    from rcn_keras.distillation import student_crops, teacher_probabilities, with_teacher_targets

    teacher, _ = for_keypoints(trained_80, trained_80.rcn_config.replace(**HR), 5)
    faces = synthetic_faces(4, 5, seed=4)
    crops, targets = next(iter(make_dataset(faces, "test", 4, out_size=160)))
    student, packed = next(iter(with_teacher_targets(tf.data.Dataset.from_tensors((crops, targets)), [teacher],
                                                     student_side=80)))
    assert student.shape == (4, 80, 80, 1) and packed.shape == (4, 5, 3 + 6400)
    np.testing.assert_allclose(student.numpy(), pooled(crops.numpy()), rtol=1e-5, atol=1e-3)
    own = teacher_probabilities([trained_80], student)
    np.testing.assert_allclose(packed[..., 3:].numpy(), np.asarray(own), atol=1e-5)
    np.testing.assert_allclose(packed[..., :3].numpy(), targets.numpy())
    with pytest.raises(ValueError, match="cannot be halved into 70x70"):
        student_crops(crops, 70)
    with pytest.raises(ValueError, match="teachers disagree on their crops"):
        with_teacher_targets(tf.data.Dataset.from_tensors((crops, targets)), [teacher, trained_80])
