"""Denoising keypoint model, its training data, the joint RCN + denoiser model and their errors."""


import numpy as np
import pytest

import keras
import rcn_keras
from rcn_keras.app.cli import main as cli
from rcn_keras.app.training import preset_train_config, train
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.landmarker import load_landmarker
from rcn_keras.data.pipeline import make_denoiser_dataset
from rcn_keras.models.denoising import build_denoiser, build_joint_model
from rcn_keras.presets import get_preset


def test_paper_denoiser_parameter_count_and_receptive_field():
    model = build_denoiser("denoiser_300w")
    assert model.count_params() == 25_406_212  # docs/model.md 4.8
    assert model.get_layer("dn_conv1").kernel.shape == (45, 45, 68, 64)
    assert get_preset("denoiser_300w").model.receptive_field == 133
    assert 110 <= get_preset("denoiser_300w_cpu").model.receptive_field <= 133


def test_cpu_denoiser_shapes_and_sum_pooling():
    model = build_denoiser("denoiser_300w_cpu", num_keypoints=5)
    maps = np.zeros((2, 80, 80, 5), "float32")
    maps[:, 10, 20, :] = 1.0
    assert model(maps).shape == (2, 80, 80, 5)
    pooled = keras.Model(model.input, model.get_layer("to_sum").output)(maps).numpy()
    assert pooled.shape == (2, 20, 20, 5) and pooled[0, 2, 5, 0] == pytest.approx(1.0) and pooled.sum() == pytest.approx(10)


def test_denoiser_data_corrupts_exactly_n_points_and_masks_the_rest():
    faces = synthetic_faces(6, 68, seed=1)
    maps, y = next(iter(make_denoiser_dataset(faces, "test", batch_size=6, n_corrupt=35)))
    maps, y = maps.numpy(), y.numpy()
    assert maps.shape == (6, 80, 80, 68) and np.allclose(maps.sum(axis=(1, 2)), 1.0)
    mask = y[..., 2]
    assert np.all(mask.sum(-1) <= 35) and np.all(mask.sum(-1) >= 30)  # 35 chosen, minus border-masked
    flat = maps.reshape(6, -1, 68).argmax(1)
    true = (np.floor(np.clip(y[..., 1], 0, 0.99999) * 80) * 80 + np.floor(np.clip(y[..., 0], 0, 0.99999) * 80))
    assert np.all(flat[mask == 0] == true[mask == 0])  # uncorrupted points keep their true pixel
    with pytest.raises(ValueError, match="n_corrupt=70"):
        make_denoiser_dataset(faces, "test", n_corrupt=70)


@pytest.mark.slow
def test_denoiser_learns_to_restore_corrupted_points(tmp_path):
    config = preset_train_config(
        "denoiser_300w_cpu", epochs=3, batch_size=16, output_dir=str(tmp_path / "dn"),
        **{"data.synthetic_train": 96, "data.synthetic_validation": 16, "data.synthetic_test": 16,
           "model_options": {"kernel_size": 5, "filters": 16}, "optimizer": "adam", "learning_rate": 0.003})
    summary = train(config, verbose=0)
    rows = {r["corrupted"]: r for r in summary["denoiser"]}
    assert rows[35]["after"] < 0.6 * rows[35]["before"], rows  # far better than the random positions
    assert "| 35 |" in (tmp_path / "dn" / "report.md").read_text()


def test_joint_model_adds_logits_and_round_trips(tmp_path):
    rcn = rcn_keras.build_model("rcn_300w", branches=4)
    dn = build_denoiser("denoiser_300w_cpu", kernel_size=3, filters=8)
    joint = build_joint_model(rcn, dn)
    x = np.random.default_rng(0).uniform(0, 255, (2, 80, 80, 1)).astype("float32")
    z = rcn.predict(x, verbose=0)
    flat = z.transpose(0, 3, 1, 2).reshape(2, 68, -1).argmax(-1)
    onehot = np.zeros((2, 68, 6400), "float32")
    np.put_along_axis(onehot, flat[..., None], 1.0, -1)
    expected = z + dn.predict(onehot.reshape(2, 68, 80, 80).transpose(0, 2, 3, 1), verbose=0)
    np.testing.assert_allclose(joint.predict(x, verbose=0), expected, atol=1e-4)
    rcn.save(tmp_path / "rcn.keras")
    dn.save(tmp_path / "dn.keras")
    loaded = load_landmarker(f"joint:{tmp_path / 'rcn.keras'},{tmp_path / 'dn.keras'}")
    np.testing.assert_allclose(loaded(x)["presoftmax"], expected, atol=1e-4)
    joint.save(tmp_path / "joint.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "joint.keras").predict(x, verbose=0),
                               expected, atol=1e-4)


def test_joint_model_errors(tmp_path, capsys):
    rcn5 = rcn_keras.build_model("rcn_mtfl", branches=4)
    dn68 = build_denoiser("denoiser_300w_cpu", kernel_size=3, filters=8)
    with pytest.raises(ValueError, match="keypoint counts and map sizes must match"):
        build_joint_model(rcn5, dn68)
    rcn5.save(tmp_path / "rcn5.keras")
    dn68.save(tmp_path / "dn68.keras")
    code = cli.main(["evaluate", "--model", f"joint:{tmp_path / 'rcn5.keras'},{tmp_path / 'dn68.keras'}",
                     "--faces", "4", "--out", str(tmp_path / "ev")])
    assert code == cli.EXIT_USER_ERROR and "must match" in capsys.readouterr().err
    with pytest.raises(ValueError, match="joint:RCN_MODEL,DENOISER_MODEL"):
        load_landmarker("joint:only_one.keras")
    with pytest.raises(ValueError, match=r"expected shape=\(None, 80, 80, 68\)"):
        dn68(np.zeros((1, 80, 80, 5), "float32"))
