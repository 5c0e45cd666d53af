"""The shape prior of the read-out: its statistics, its MAP fit to keypoint maps, a Landmarker that
carries one (save / load, flip, export) and a training run that fits one."""

import numpy as np
import pytest

from data_fixtures import TINY_TRAINING

import keras
from rcn_keras.app.training import TrainConfig, preset_train_config, train
from rcn_keras.landmarker import Landmarker, load_landmarker
from rcn_keras.models.head import mirror_average
from rcn_keras.models.registry import build_model
from rcn_keras.models.shape_prior import COVARIANCE_FLOOR, ShapePrior, keypoint_moments, procrustes_pca

K = 5
BASE = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.7], [0.62, 0.7]])


MOUTH = np.array([[0, 0], [0, 0], [0, 0], [-1, 0], [1, 0]])  # the mouth widens
EYES = np.array([[-1, 0], [1, 0], [0, 0], [0, 0], [0, 0]])  # the eyes move apart


def shapes(n=200, seed=0, noise=0.002):
    """Faces of BASE's layout: two deformation modes, a little independent noise, then a random
    similarity (scale, rotation, shift)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s, a = rng.uniform(0.8, 1.1), rng.normal(0, 0.15)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        face = BASE + MOUTH * rng.normal(0, 0.04) + EYES * rng.normal(0, 0.03) + rng.normal(0, noise, BASE.shape)
        out.append((face - 0.5) @ rot.T * s + 0.5 + rng.normal(0, 0.03, 2))
    return np.array(out)


def maps_of(points, sharpness, size=80):
    """Logits (B, size, size, K): a Gaussian bump of log-height per point (``sharpness`` (B, K) = 1/sigma^2
    in pixels^-2; 0 = a flat map)."""
    c = np.arange(size) + 0.5
    xx, yy = np.meshgrid(c, c)
    out = np.zeros((len(points), size, size, points.shape[1]), np.float32)
    for b in range(len(points)):
        for k in range(points.shape[1]):
            px, py = points[b, k] * size
            out[b, :, :, k] = -0.5 * sharpness[b, k] * ((xx - px) ** 2 + (yy - py) ** 2)
    return out


def test_procrustes_pca_removes_pose():
    train = shapes(300)
    mean, modes, variances = procrustes_pca(train, 6)
    assert mean.shape == (K, 2) and modes.shape == (6, K, 2) and np.all(np.diff(variances) <= 0)
    # pose (similarity) is aligned away: two modes carry the deformation, the rest is the small noise
    assert variances[2:].sum() < 0.15 * variances[:2].sum()
    assert np.allclose(np.einsum("mkc,nkc->mn", modes, modes), np.eye(6), atol=1e-6)


def test_moments_of_a_gaussian_bump():
    points = np.array([[[0.3, 0.6]]])
    mean, cov = keypoint_moments(maps_of(points, np.array([[0.5]])), temperature=1.0)
    assert np.allclose(keras.ops.convert_to_numpy(mean), points, atol=1e-4)
    # variance 1/0.5 px^2 = 2 px^2, in normalised units
    assert np.allclose(keras.ops.convert_to_numpy(cov)[0, 0], [2 / 80 ** 2, 0, 2 / 80 ** 2], rtol=0.02, atol=1e-8)


def test_confident_points_stay_and_a_lost_point_is_placed_by_the_others():
    prior = ShapePrior.from_shapes(shapes(300), temperature=1.0)
    face = shapes(1, seed=5) + [0.1, 0.06]  # off the crop centre, where a flat map's mean lies
    sharp = np.full((1, K), 2.0)
    fitted = keras.ops.convert_to_numpy(prior(maps_of(face, sharp)))
    assert np.abs(fitted - face).max() * 80 < 0.3  # well inside a pixel
    lost = sharp.copy()
    lost[0, 2] = 0.0  # the nose map says nothing: its softmax mean is the crop centre
    logits = maps_of(face, lost)
    plain = keras.ops.convert_to_numpy(keypoint_moments(logits, 1.0)[0])
    fitted = keras.ops.convert_to_numpy(prior(logits))
    assert np.linalg.norm(plain[0, 2] - face[0, 2]) * 80 > 2
    assert np.linalg.norm(fitted[0, 2] - face[0, 2]) * 80 < 1.5
    assert np.abs(fitted[0, [0, 1, 3, 4]] - face[0, [0, 1, 3, 4]]).max() * 80 < 0.5


def test_an_elongated_map_is_corrected_along_its_long_axis_only():
    prior = ShapePrior.from_shapes(shapes(300), temperature=1.0)
    face = shapes(1, seed=7)
    logits = maps_of(face, np.full((1, K), 2.0))
    c = np.arange(80) + 0.5
    xx, yy = np.meshgrid(c, c)
    px, py = face[0, 3] * 80 + [6.0, 0.0]  # mouth corner seen 6 px off along x, with a map long in x
    logits[0, :, :, 3] = -0.5 * (0.005 * (xx - px) ** 2 + 2.0 * (yy - py) ** 2)
    fitted = keras.ops.convert_to_numpy(prior(logits))[0, 3] * 80
    truth = face[0, 3] * 80
    assert abs(fitted[0] - truth[0]) < 2.0  # pulled back along x
    assert abs(fitted[1] - truth[1]) < 0.6  # y stays about where the sharp direction put it


def map_estimate(prior, points, covariance):
    """One round of the prior's fit in dense numpy: the confidence-weighted similarity of the observed
    points onto the mean, then the MAP mode coefficients by a direct solve, mapped back to the crop."""
    mean, modes, variances = (np.asarray(w, np.float64) for w in prior.get_weights())
    conf = 1.0 / (covariance[:, 0] + covariance[:, 2] + 2 * COVARIANCE_FLOOR)
    rows = np.concatenate([np.stack([points[:, 0], -points[:, 1], np.ones(K), np.zeros(K)], 1),
                           np.stack([points[:, 1], points[:, 0], np.zeros(K), np.ones(K)], 1)])
    sw = np.sqrt(np.concatenate([conf, conf]))[:, None]
    a, b, tx, ty = np.linalg.lstsq(rows * sw, np.concatenate([mean[:, 0], mean[:, 1]]) * sw[:, 0], rcond=None)[0]
    rot = np.array([[a, -b], [b, a]])
    observed = points @ rot.T + [tx, ty] - mean
    weight = np.zeros((2 * K, 2 * K))
    for k, (xx, xy, yy) in enumerate(covariance):
        floored = [[xx + COVARIANCE_FLOOR, xy], [xy, yy + COVARIANCE_FLOOR]]
        weight[2 * k:2 * k + 2, 2 * k:2 * k + 2] = np.linalg.inv(rot @ floored @ rot.T)
    psi = modes.reshape(len(variances), -1) * np.sqrt(variances)[:, None]
    z = np.linalg.solve(psi @ weight @ psi.T + prior.strength * np.eye(len(variances)), psi @ weight @ observed.ravel())
    shape = mean + (z @ psi).reshape(K, 2)
    return (shape - [tx, ty]) @ np.linalg.inv(rot).T


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_one_round_is_the_exact_map_estimate(strength):
    """With one alignment round and as many conjugate-gradient steps as modes, the layer's fit is the
    direct solution of the posterior's normal equations (tilted, correlated covariances included)."""
    rng = np.random.default_rng(3)
    prior = ShapePrior.from_shapes(shapes(300), num_modes=4, strength=strength, iterations=1, steps=4)
    face = shapes(1, seed=11)[0] + rng.normal(0, 0.01, (K, 2))
    sd = rng.uniform(0.005, 0.03, (K, 2))
    rho = rng.uniform(-0.8, 0.8, K)
    covariance = np.stack([sd[:, 0] ** 2, rho * sd[:, 0] * sd[:, 1], sd[:, 1] ** 2], axis=1)
    fitted = keras.ops.convert_to_numpy(prior.fit(face[None].astype(np.float32), covariance[None].astype(np.float32)))
    assert np.abs(fitted[0] - map_estimate(prior, face, covariance)).max() * 80 < 0.01  # pixels


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_modes must be in 1..6"):
        ShapePrior(K, 7)
    with pytest.raises(ValueError, match="at least 3"):
        ShapePrior.from_shapes(shapes(2))
    with pytest.raises(ValueError, match="must be positive"):
        ShapePrior(K, 2, strength=0)
    with pytest.raises(ValueError, match="shape prior has 5 keypoints, the model 68"):
        Landmarker(build_model("rcn_300w", width=0.25), "soft_argmax", shape_prior=ShapePrior.from_shapes(shapes()))
    with pytest.raises(ValueError, match="shape_prior='maybe' is not allowed; allowed: off, on, auto"):
        TrainConfig(shape_prior="maybe")


@pytest.fixture(scope="module")
def with_prior():
    keras.utils.set_random_seed(0)
    plain = Landmarker(build_model("rcn_mtfl", branches=4), "soft_argmax")
    return plain, plain.with_shape_prior(ShapePrior.from_shapes(shapes(), temperature=1.0))


def test_landmarker_round_trip_flip_and_the_plain_read_out(with_prior, tmp_path):
    plain, lm = with_prior
    crops = np.random.default_rng(1).uniform(0, 255, (4, 80, 80, 1)).astype(np.float32)
    out = lm.predict_crops(crops)
    assert np.allclose(keras.ops.convert_to_numpy(lm(crops)["keypoints"]), out["keypoints"], atol=1e-5)
    assert np.allclose(out["confidence"], plain.predict_crops(crops)["confidence"])  # the read-out's
    assert lm.with_shape_prior(None).shape_prior is None
    lm.save(tmp_path / "m.keras")
    again = load_landmarker(tmp_path / "m.keras")
    assert again.shape_prior is not None and again.shape_prior.temperature == 1.0
    assert np.array_equal(again.predict_crops(crops)["keypoints"], out["keypoints"])
    # flipping averages both crops' moments before the one fit
    prior = lm.shape_prior
    maps = lm.backbone(crops)
    mirrored = lm.backbone(crops[:, :, ::-1])
    from rcn_keras.models.shape_prior import average_moments, mirror_moments

    flip = lm.mirror_permutation(True)
    expected = prior.fit(*average_moments(prior.moments(maps), mirror_moments(*prior.moments(mirrored), flip)))
    assert np.allclose(lm.predict_crops(crops, flip=True)["keypoints"], keras.ops.convert_to_numpy(expected),
                       atol=1e-5)
    assert not np.allclose(lm.predict_crops(crops, flip=True)["keypoints"],
                           keras.ops.convert_to_numpy(mirror_average(plain(crops), plain(crops[:, :, ::-1]),
                                                                     flip)["keypoints"]), atol=1e-3)


@pytest.mark.slow
def test_exports_keep_the_prior(with_prior, tmp_path):
    from rcn_keras.runtimes import ExportedLandmarker

    import tensorflow as tf

    _, lm = with_prior
    crops = np.random.default_rng(2).uniform(0, 255, (3, 80, 80, 1)).astype(np.float32)
    expected = lm.predict_crops(crops)["keypoints"]
    lm.export(tmp_path / "sm", "saved_model")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))  # kept: its functions use its variables
    got = loaded.serve(tf.constant(crops))["keypoints"].numpy()
    assert np.abs(got - expected).max() * 80 < 0.05
    lm.export(tmp_path / "m.tflite", "tflite", batch_size=3)
    got = ExportedLandmarker(str(tmp_path / "m.tflite"))(crops)["keypoints"]
    assert np.abs(got - expected).max() * 80 < 0.05
    lm.export(tmp_path / "h.tflite", "tflite", batch_size=3, quantize="float16")
    got = ExportedLandmarker(str(tmp_path / "h.tflite"))(crops)["keypoints"]
    assert np.abs(got - expected).max() * 80 < 0.5  # half-precision weights, float compute


@pytest.mark.slow
def test_training_fits_and_saves_a_prior(tmp_path):
    config = preset_train_config("rcn_mtfl", epochs=1, output_dir=str(tmp_path / "on"),
                                 shape_prior="on", **TINY_TRAINING)
    result = train(config, verbose=0)
    assert result["shape_prior"] is True
    saved = load_landmarker(tmp_path / "on" / "best.keras")
    assert saved.shape_prior is not None and saved.shape_prior.num_keypoints == 5
    config = preset_train_config("rcn_mtfl", epochs=1, output_dir=str(tmp_path / "auto"),
                                 shape_prior="auto", **TINY_TRAINING)
    result = train(config, verbose=0)
    scores = result["shape_prior_validation_nme"]
    assert set(scores) == {"off", "on"}
    assert result["shape_prior"] == (scores["on"] < scores["off"])
    assert (load_landmarker(tmp_path / "auto" / "best.keras").shape_prior is not None) == result["shape_prior"]


def test_a_68_point_prior_keeps_its_leading_modes():
    """68 points: the leading DEFAULT_MODES (64) of the 132 shape directions by default (the rest cost
    time per face and buy nothing on validation); an explicit count wins."""
    rng = np.random.default_rng(0)
    faces = rng.uniform(0.2, 0.8, (1, 68, 2)) + rng.normal(0, 0.01, (300, 68, 2))
    assert ShapePrior.from_shapes(faces).num_modes == 64
    assert ShapePrior.from_shapes(faces, num_modes=132).num_modes == 132
    assert ShapePrior.from_shapes(shapes(300)).num_modes == 2 * K - 4


def test_leading_modes_are_the_prior_fitted_with_that_many():
    train = shapes(300)
    full = ShapePrior.from_shapes(train, temperature=1.0, iterations=3, steps=8)
    two = full.leading(2)
    assert (two.num_modes, two.iterations, two.steps, two.temperature) == (2, 4, 6, 1.0)
    logits = maps_of(shapes(2, seed=9), np.full((2, K), 0.3))
    expected = ShapePrior.from_shapes(train, num_modes=2, temperature=1.0)(logits)
    assert np.allclose(keras.ops.convert_to_numpy(two(logits)), keras.ops.convert_to_numpy(expected), atol=1e-5)
    assert full.leading(100).num_modes == full.num_modes
