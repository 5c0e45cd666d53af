"""Partial labels (issue 32): MTFL's faces, with only the paper's 5 points, as 68-point training faces.
Nose tip and mouth corners train as points 31, 49, 55; each eye centre trains the mean of the eye's six
soft-argmax points (`keypoints.GROUP_MEAN`, `PixelNLL` ``groups``); the rest is masked."""

import numpy as np
import pytest
import tensorflow as tf

from data_fixtures import face_image, write_300w_folder, write_keypoint_csv, write_mtfl
from rcn_keras.app.cli import main as cli
from rcn_keras.app.training.config import TrainConfig
from rcn_keras.data import augment as aug
from rcn_keras.data.datasets import _face_from_points, load_mtfl_partial68
from rcn_keras.data.pipeline import make_dataset
from rcn_keras.data.sources import DataConfig, annotated_mean_shape, load_splits
from rcn_keras.keypoints import (FIVE_FROM_68, FLIP_68, GROUP_MEAN, GROUPS_68, NOT_ANNOTATED, afw5_from_68,
                                 is_annotated, partial_68)
from rcn_keras.losses import PixelNLL
from rcn_keras.metrics import NME

MTFL_SIZES = ((250, 250), (400, 400), (160, 216), (150, 150))  # as data_fixtures.write_mtfl draws them


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("partial")
    write_300w_folder(root / "300w" / "afw", 6)
    write_300w_folder(root / "300w" / "helen" / "trainset", 6, seed=10)
    write_mtfl(root / "mtfl", 8)
    write_mtfl(root / "mtfl", 2, "testing.txt")
    return root


def test_partial_68_keeps_the_five_points_as_points_and_group_means():
    five = np.array([[30.0, 40.0], [60.0, 41.0], [45.0, 55.0], [35.0, 70.0], [56.0, 71.0]])
    points, codes = partial_68(five)
    assert GROUPS_68 == (tuple(range(36, 42)), tuple(range(42, 48)))
    np.testing.assert_array_equal(np.flatnonzero(codes == 0), [30, 48, 54])
    np.testing.assert_array_equal(np.flatnonzero(codes == GROUP_MEAN), list(range(36, 48)))
    assert (codes == NOT_ANNOTATED).sum() == 68 - 15
    np.testing.assert_allclose(FIVE_FROM_68 @ points, five)
    np.testing.assert_array_equal(is_annotated(codes), codes == 0)
    with pytest.raises(ValueError, match=r"the 5 points \(5, 2\)"):
        partial_68(np.zeros((68, 2)))


def peaked(points, size=8):
    """Logits (1, size, size, K) whose softmax sits on the pixel of each normalised point."""
    logits = np.full((1, size, size, len(points)), -60.0, np.float32)
    for k, (x, y) in enumerate(points):
        logits[0, int(y * size), int(x * size), k] = 60.0
    return tf.constant(logits)


def test_the_loss_trains_a_groups_mean_point_and_not_its_members():
    loss = PixelNLL(groups=[(0, 1)], reduction="none")
    label = [0.5625, 0.5625]  # a pixel centre of the 8x8 map
    target = tf.constant([[label + [-1.0], label + [-1.0], [0.1875, 0.1875, 1.0]]], tf.float32)
    on_mean = loss(target, peaked([(0.3125, 0.5625), (0.8125, 0.5625), (0.1875, 0.1875)])).numpy()[0]
    # the members are far from the label, their mean is on it: only the own point's (tiny) NLL is left
    assert on_mean < 0.01
    off = loss(target, peaked([(0.3125, 0.5625), (0.8125, 0.8125), (0.1875, 0.1875)])).numpy()[0]
    # one member 2 pixels lower moves the mean 1 pixel: K * (0 + 1) / (1 point + 1 group)
    assert off == pytest.approx(3 * 1.0 / 2, abs=0.01)
    # without groups the negative mask counts for nothing; the loss config round-trips the groups
    plain = PixelNLL(reduction="none")(target, peaked([(0.3125, 0.5625), (0.8125, 0.8125), (0.1875, 0.1875)]))
    assert plain.numpy()[0] < 0.01
    assert PixelNLL.from_config(loss.get_config()).groups == ((0, 1),)
    with pytest.raises(ValueError, match="groups="):
        PixelNLL(groups=[()])


def test_a_teacher_trains_every_point_of_a_partially_labelled_face():
    from rcn_keras.losses import teacher_divergence
    from rcn_keras.models.head import pixel_log_softmax

    logits = peaked([(0.3125, 0.5625), (0.8125, 0.5625), (0.1875, 0.1875)])
    target = np.array([[[0.5625, 0.5625, -0.5], [0.5625, 0.5625, -0.5], [0.1875, 0.1875, 0.0]]], np.float32)
    teacher = np.full((1, 3, 64), 1 / 64, np.float32)  # a flat teacher: every point is far from it
    packed = tf.constant(np.concatenate([target, teacher], -1))
    kl = teacher_divergence(teacher, pixel_log_softmax(logits)).numpy()[0]
    alone = PixelNLL(groups=[(0, 1)], distill_weight=1.0, label_weight=0, reduction="none")(packed, logits)
    # the unlabelled point 2 learns from the teacher as the group's points do, at the face's weight 0.5
    assert alone.numpy()[0] == pytest.approx(3 * 0.5 * kl.sum() / (3 * 0.5 + 0.5), rel=1e-4)


def test_group_mean_points_flip_into_the_other_eye_and_the_nme_skips_them():
    five = np.array([[0.3, 0.4], [0.7, 0.42], [0.5, 0.55], [0.35, 0.7], [0.65, 0.71]])
    points, codes = partial_68(five)
    mask = aug.label_mask(tf.constant(points, tf.float32), tf.constant(codes), True)
    np.testing.assert_array_equal(mask.numpy(), np.where(codes == 0, 1.0, np.where(codes == GROUP_MEAN, -1.0, 0.0)))
    _, flipped, fmask = aug.flip_sample(tf.zeros((80, 80, 1)), tf.constant(points, tf.float32), mask, FLIP_68)
    left = flipped.numpy()[list(GROUPS_68[0])]
    np.testing.assert_allclose(left, np.tile([1 - 0.7, 0.42], (6, 1)), atol=1e-6)  # the mirrored right eye
    np.testing.assert_array_equal(fmask.numpy(), mask.numpy()[FLIP_68])
    metric = NME(normaliser="box")
    gt = tf.constant(np.concatenate([points, mask.numpy()[:, None]], -1)[None], tf.float32)
    far = points.copy()
    far[36:48] += 0.3  # group-mean points are not scored on their own
    maps = peaked(np.clip(far, 0, 0.99), size=80)
    metric.update_state(gt, maps)
    assert metric.result().numpy() < 2.0


def test_mtfl_faces_load_as_partial_68_point_faces_cropped_as_68_point_faces(folders):
    splits = load_splits(DataConfig(source="300w", root=str(folders / "300w"), validation=2), 68)
    mean = annotated_mean_shape(splits.train)
    faces = load_mtfl_partial68(folders / "mtfl", mean)
    assert len(faces) == 8 and set(faces.groups) == {"mtfl"}
    assert (faces.border_codes == partial_68(np.zeros((5, 2)))[1]).all()
    # the crop puts the face where a 68-point crop of its true points puts it, within the spread of
    # face shapes (on real 300W faces the crop centre is off by 0.01 +- 0.10 across and 0.00 +- 0.03 down
    # of the face; training jitters by 0.1) and without a bias
    offsets = []
    for i in range(len(faces)):
        w, h = MTFL_SIZES[i % len(MTFL_SIZES)]
        img, pts = face_image(100 + i, size=min(w, h))
        canvas = np.full((h, w, 3), 90, np.uint8)
        canvas[:img.shape[0], :img.shape[1]] = img
        ref = _face_from_points(canvas, pts - 0.5, np.zeros(68, np.int32))
        x, y, side = faces.rects[i]
        rx, ry, rside = ref["rect"]
        offsets.append((afw5_from_68(faces.keypoints[i]) - [x, y]) / side
                       - (afw5_from_68(ref["keypoints"]) - [rx, ry]) / rside)
    offsets = np.stack(offsets)
    assert np.abs(offsets).max() < 0.15 and np.abs(offsets.mean(axis=(0, 1))).max() < 0.05


def test_an_mtfl_folder_as_extra_training_faces(folders):
    data = DataConfig(source="300w", root=str(folders / "300w"), validation=2, extra_train=[str(folders / "mtfl")],
                      extra_weight=0.5)
    splits = load_splits(data, 68)
    assert len(splits.train) == 10 + 8 and len(splits.validation) == 2
    masks = np.concatenate([y.numpy()[..., 2] for _, y in make_dataset(splits.train, "test", 6)])
    assert (masks[-8:, 36:48] == -0.5).all() and (masks[-8:, [30, 48, 54]] == 0.5).all()
    assert (masks[:10] >= 0).all()
    assert TrainConfig(model="rcn_300w", data=data).loss().groups == GROUPS_68
    assert TrainConfig(model="rcn_300w", data=DataConfig(source="300w", root=str(folders / "300w"))).loss().groups == ()
    with pytest.raises(ValueError, match="not for the denoising model"):
        TrainConfig(model="denoiser_300w", data=data)
    with pytest.raises(ValueError, match="is the data source itself"):
        load_splits(DataConfig(source="mtfl", root=str(folders / "mtfl"), validation=2,
                               extra_train=[str(folders / "mtfl")]), 5)



def test_an_mtfl_folder_adds_its_faces_as_they_are_to_a_5_point_model(folders, tmp_path):
    own = write_keypoint_csv(tmp_path / "own", 6, list(range(5)))
    splits = load_splits(DataConfig(source="csv", root=str(own), validation=2, extra_train=[str(folders / "mtfl")]), 5)
    assert len(splits.train) == 4 + 8 and (splits.train.border_codes == 0).all()
    with pytest.raises(ValueError, match="has 5 points .* the model predicts 7"):
        load_splits(DataConfig(source="csv", root=str(write_keypoint_csv(tmp_path / "seven", 6, list(range(7)))),
                               validation=2, extra_train=[str(folders / "mtfl")]), 7)


def test_rcn_train_with_partial_labels(folders, tmp_path):
    args = ["train", "--preset", "rcn_300w", "--data", "300w", "--root", str(folders / "300w"), "--epochs", "1",
            "--batch-size", "6", "--progress", "0", "--out", str(tmp_path / "run"),
            "--set", f'data.extra_train=["{folders / "mtfl"}"]', "--set", "data.validation=2",
            "--set", 'model_options={"branches": 4, "width": 0.25}']
    assert cli.main(args) == 0
    assert (tmp_path / "run" / "best.keras").is_file()
