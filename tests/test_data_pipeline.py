"""Stage C (warp, occlusion, masks, flip), tf.data pipelines and the synthetic face set."""

import numpy as np
import pytest

from rcn_keras.data.faceset import FaceSet
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.keypoints import KeypointScheme, standard_scheme
from rcn_keras.data import augment as aug


def one_dot_faces(n=4, k=5):
    """Faces whose image is black except a 3x3 white dot at keypoint 0."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 160, 160), np.uint8)
    kpts = rng.uniform(50, 110, (n, k, 2)).astype(np.float32)
    for i in range(n):
        x, y = (int(v) for v in kpts[i, 0])
        images[i, y - 1:y + 2, x - 1:x + 2] = 255
        kpts[i, 0] = [x + 0.5, y + 0.5]  # edge coordinates of the dot's centre
    rects = np.tile(np.array([[30.0, 30.0, 100.0]], np.float32), (n, 1))
    return FaceSet(images, kpts, rects, np.zeros((n, k), np.int32), np.zeros((n, 4), np.float32),
                        [f"f{i}" for i in range(n)], ["g"] * n)


@pytest.mark.parametrize("mode", ["test", "train"])
def test_warp_moves_keypoints_with_the_image(mode):
    faces = one_dot_faces()
    cfg = aug.AugmentConfig(occlusion=False, rotation=40)
    x, y = next(iter(make_dataset(faces, mode, batch_size=4, augment=cfg, seed=3)))
    for i in range(4):
        img = x[i, :, :, 0].numpy()
        rows, cols = np.nonzero(img > 0.2 * img.max())
        weights = img[rows, cols]
        centre = np.array([(cols * weights).sum(), (rows * weights).sum()]) / weights.sum() + 0.5
        np.testing.assert_allclose(centre, y[i, 0, :2].numpy() * 80, atol=0.35)


def test_test_mode_is_the_plain_box_warp():
    faces = one_dot_faces()
    _, y = next(iter(make_dataset(faces, "test", batch_size=4)))
    expected = (faces.keypoints - 30.0) * 80 / 100.0 / 80
    np.testing.assert_allclose(y[..., :2].numpy(), expected, atol=1e-5)


def test_jitter_ranges():
    cfg = aug.AugmentConfig()
    draws = np.array([[float(v) for v in aug.draw_jitter(np.array([s, 7]), cfg)] for s in range(300)])
    assert 0.9 <= draws[:, 0].min() < 0.92 and 1.08 < draws[:, 0].max() <= 1.1
    assert np.abs(draws[:, 1:3]).max() <= 0.1
    rot = draws[:, 3]
    assert np.all(rot == np.round(rot)) and rot.min() == -20 and rot.max() == 20


def test_exactly_one_occlusion_rectangle_of_20_to_50_pixels():
    faces = one_dot_faces(8)
    faces.images[:] = 255
    cfg = aug.AugmentConfig(scale=0.0, translate=0.0, rotation=0)
    x, _ = next(iter(make_dataset(faces, "train", batch_size=8, augment=cfg)))
    for img in x.numpy()[..., 0]:
        rows, cols = np.nonzero(img < 1.0)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == h * w and 20 <= h <= 50 and 20 <= w <= 50


def test_train_changes_every_epoch_validation_never():
    faces = synthetic_faces(6, 5, seed=4)
    train = make_dataset(faces, "train", batch_size=6, seed=1)
    a = np.sort(next(iter(train))[1].numpy().ravel())
    b = np.sort(next(iter(train))[1].numpy().ravel())
    assert not np.allclose(a, b)
    val = make_dataset(faces, "validation", batch_size=6, seed=0)
    (x1, y1), (x2, y2) = next(iter(val)), next(iter(val))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    test = next(iter(make_dataset(faces, "test", batch_size=6)))[1]
    assert not np.allclose(test.numpy(), y1.numpy())  # validation is jittered, test is not


def test_300w_masks_border_codes_and_points_outside_the_crop():
    faces = one_dot_faces(2, k=68)
    faces.border_codes[0, 3] = 1
    faces.keypoints[1, 5] = [5.0, 80.0]  # left of the 30..130 face box: outside the 80x80 crop
    _, y = next(iter(make_dataset(faces, "test", batch_size=2)))
    mask = y[..., 2].numpy()
    assert mask[0, 3] == 0 and mask[1, 5] == 0 and mask.sum() == 2 * 68 - 2
    _, y5 = next(iter(make_dataset(one_dot_faces(2, k=5), "test", batch_size=2)))
    assert y5[..., 2].numpy().min() == 1.0  # MTFL: no mask (docs/model.md 1.7)


def test_flip_permutations_are_mirror_involutions():
    for k in (5, 68):
        p = np.asarray(standard_scheme(k).flip)
        np.testing.assert_array_equal(p[p], np.arange(k))
    faces = synthetic_faces(16, 68, seed=2)
    cfg = aug.AugmentConfig(flip=True, occlusion=False)
    _, y = next(iter(make_dataset(faces, "train", batch_size=16, augment=cfg, seed=5)))
    y = y.numpy()
    assert np.all(y[:, 36, 0] < y[:, 45, 0])  # left eye outer corner stays image-left after flips
    assert np.all(y[:, 0, 0] < y[:, 16, 0])
    assert standard_scheme(7).flip is None  # no known mirror for another count
    with pytest.raises(ValueError, match="has none"):
        make_dataset(synthetic_faces(2, 68), "train", augment=cfg, scheme=KeypointScheme(68))


def test_synthetic_faces_deterministic_and_hard_for_a_template():
    a, b = synthetic_faces(30, 68, seed=1), synthetic_faces(30, 68, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, synthetic_faces(30, 68, seed=2).images)
    train = np.concatenate([y for _, y in make_dataset(a, "train", 30)])[..., :2]
    test = np.concatenate([y for _, y in make_dataset(synthetic_faces(30, 68, seed=3), "test", 30)])
    test = test[..., :2]
    iod = np.linalg.norm(test[:, 36:42].mean(1) - test[:, 42:48].mean(1), axis=-1)
    nme = (np.linalg.norm(test - train.mean(0), axis=-1).mean(1) / iod).mean() * 100
    assert nme > 12.0, nme  # a fixed mean shape is far off: a model has to learn


def test_pipeline_argument_errors():
    faces = one_dot_faces()
    with pytest.raises(ValueError, match="mode must be one of"):
        make_dataset(faces, "eval")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_dataset(faces, "train", batch_size=0)
    with pytest.raises(ValueError, match="rotation=200"):
        aug.AugmentConfig(rotation=200)
    with pytest.raises(ValueError, match="non-finite keypoints"):
        bad = one_dot_faces()
        bad.keypoints[0, 0, 0] = np.nan
        FaceSet(bad.images, bad.keypoints, bad.rects, bad.border_codes, bad.pads, bad.names, bad.groups)
