"""Model builders: parameter counts (docs/model.md 4.8), shapes, variants, loss, training, errors."""

import numpy as np
import pytest

import keras
import rcn_keras
from rcn_keras.models.layers import LearnedUpsampling, LocalContrastNormalization, MaxOnly


@pytest.mark.parametrize("name, overrides, expected", [
    ("rcn_mtfl", {"branches": 5}, 227_141),
    ("rcn_mtfl", {}, 310_229),
    ("rcn_mtfl", {"branches": 7}, 338_021),
    ("rcn_300w", {}, 1_095_492),
    ("rcn_300w", {"upsampling": "learned"}, 1_095_492 + 36),
    ("rcn_300w", {"branches": 6}, 1_341_444),
    ("sumnet_mtfl", {"branches": 5}, 142_850),
    ("sumnet_mtfl", {}, 186_588),
    ("sumnet_300w", {}, 603_028 + 340),
])
def test_parameter_counts_match_spec(name, overrides, expected):
    assert rcn_keras.build_model(name, **overrides).count_params() == expected


def test_width_scales_hidden_channels_only():
    half = rcn_keras.build_model("rcn_300w", width=0.5)
    assert half.get_layer("sh2").filters == 32 and half.get_layer("fout").filters == 68
    assert half.count_params() < 0.3 * rcn_keras.build_model("rcn_300w").count_params()
    with pytest.raises(ValueError, match="width=0"):
        rcn_keras.build_model("rcn_300w", width=0)


@pytest.mark.parametrize("name, overrides", [("rcn_300w", {"branches": 5}), ("rcn_300w_skip", {"branches": 5}),
                                            ("sumnet_mtfl", {"branches": 4}), ("rcn_300w_fast", {})])
def test_widening_starts_as_the_same_function(name, overrides, rng):
    """A trained network rebuilt wider (`models.transfer`) computes the same maps before training, the
    concatenations of the decoder (and the skip variant's streams) followed; its new channels are live."""
    from rcn_keras.models.transfer import for_keypoints, source_channel_positions

    source = rcn_keras.build_model(name, width=0.5, **overrides)
    for layer in source.layers:  # trained-looking: non-zero biases and batch statistics everywhere
        layer.set_weights([w + rng.uniform(0.0, 0.1, w.shape).astype(np.float32) for w in layer.get_weights()])
    config, k = source.rcn_config, source.output.shape[-1]
    wide, fresh = for_keypoints(source, config.replace(width=0.75), k)
    assert fresh == [] and wide.count_params() > 1.5 * source.count_params()
    x = rng.uniform(0, 255, (2, 80, 80, 1)).astype(np.float32)
    before = source.predict(x, verbose=0)
    np.testing.assert_allclose(wide.predict(x, verbose=0), before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
    conv = next(n for n, (_, out) in source_channel_positions(source, wide).items() if out is not None)
    kernel = keras.ops.convert_to_numpy(wide.get_layer(conv).weights[0])
    assert np.abs(kernel[..., -1]).max() > 0  # a new channel has (initialised) weights of its own
    # wider and for a subset of the points at once: the chosen points' maps, unchanged
    sub, fresh = for_keypoints(source, config.replace(width=0.75), 2, point_map=[1, 0])
    assert fresh == []
    np.testing.assert_allclose(sub.predict(x, verbose=0), before[..., [1, 0]], rtol=1e-4,
                               atol=1e-4 * np.abs(before).max())


def test_widening_with_other_branches_keeps_what_fits():
    """Wider and with another branch count at once: the layers whose places differ start fresh, no crash."""
    from rcn_keras.models.transfer import for_keypoints

    source = rcn_keras.build_model("rcn_mtfl", branches=4, width=0.5)
    model, fresh = for_keypoints(source, source.rcn_config.replace(branches=5, width=0.75), 5)
    assert 0 < len(fresh) < len([layer for layer in model.layers if layer.weights])
    with pytest.raises(ValueError, match="at least as wide"):
        for_keypoints(rcn_keras.build_model("rcn_mtfl", branches=4), source.rcn_config.replace(width=0.25), 5)


def test_skip_first_conv_input_channels_match_spec():
    """Spec 4.4: dense concatenation, first-conv input channels S/D/C/M/F for 5 branches."""
    for name, chans in [("rcn_mtfl_skip", (48, 96, 144, 160, 160)), ("rcn_300w_skip", (64, 128, 192, 256, 320))]:
        model = rcn_keras.build_model(name, branches=5)
        got = tuple(model.get_layer(f"{lvl}1").kernel.shape[2] for lvl in "sdcmf")
        assert got == chans, (name, got)


@pytest.mark.parametrize("name", rcn_keras.list_models())
@pytest.mark.parametrize("branches", [4, 7])
def test_every_preset_builds_for_4_and_7_branches(name, branches):
    size = rcn_keras.model_config(name).input_size
    model = rcn_keras.build_model(name, branches=max(branches, 5) if size > 80 else branches)  # 160: H + 4 at least
    k, side = model.rcn_config.num_keypoints, model.rcn_config.map_size  # 40: rcn-300w-fast's maps as they are
    out = model(np.random.default_rng(0).uniform(0, 255, (2, size, size, 1)).astype("float32"))
    assert out.shape == (2, side, side, k) and side in (80, 40)
    assert np.all(np.isfinite(out))


def test_branch_masks_drop_branches_and_unused_trunk():
    full = rcn_keras.build_model("sumnet_mtfl", branches=4)
    only_f = rcn_keras.build_model("sumnet_mtfl", branches=4, branch_mask=(1, 0, 0, 0))
    names = {layer.name for layer in only_f.layers}
    assert "sh2" not in names and "bm_out" not in names and "bf_out" in names
    assert only_f.count_params() < full.count_params()
    rcn = rcn_keras.build_model("rcn_mtfl", branches=4, branch_mask=(0, 1, 0, 1))
    names = {layer.name for layer in rcn.layers}
    # masked levels F and C run on the upsampled coarser tensor alone: no concatenation there
    assert {"concat_m"} <= names and "concat_f" not in names and "concat_c" not in names
    assert rcn.get_layer("d2") is not None  # D is the coarsest level: two convs (docs/model.md 4.3)


def test_l2_groups_follow_spec():
    model = rcn_keras.build_model("sumnet_mtfl")
    assert model.get_layer("sh1").kernel_regularizer.l2 == pytest.approx(1e-10)
    assert model.get_layer("bf1").kernel_regularizer.l2 == pytest.approx(1e-14)
    assert model.get_layer("branch_sum").l2 == pytest.approx(1e-14)
    rcn = rcn_keras.build_model("rcn_300w")
    assert rcn.get_layer("sh3").kernel_regularizer.l2 == pytest.approx(1e-12)
    assert rcn.get_layer("fout").kernel_regularizer.l2 == pytest.approx(1e-8)
    assert rcn.get_layer("sh3").bias_regularizer is None


def test_initializer_limit_and_determinism():
    a = rcn_keras.build_model("rcn_mtfl", branches=4)
    b = rcn_keras.build_model("rcn_mtfl", branches=4)
    k = a.get_layer("sh2").kernel.numpy()  # 3x3, 16 -> 32
    limit = np.sqrt(6.0 / (16 * 9 + 32 * 9 / 4))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit
    np.testing.assert_array_equal(k, b.get_layer("sh2").kernel.numpy())
    assert not np.any(a.get_layer("sh2").bias.numpy())


def test_lcn_is_scale_invariant_and_batch_mode_differs(rng):
    x = rng.uniform(0, 255, (2, 80, 80, 1)).astype("float32")
    x[1] *= 0.1
    img = LocalContrastNormalization("image")
    np.testing.assert_allclose(img(x).numpy(), img(x / 255.0).numpy(), atol=1e-4)
    np.testing.assert_allclose(img(x[:1]).numpy(), img(x).numpy()[:1], atol=1e-5)  # batch independent
    batch = LocalContrastNormalization("batch")
    assert not np.allclose(batch(x[:1]).numpy(), batch(x).numpy()[:1], atol=1e-3)
    assert np.all(np.isfinite(img(np.zeros((1, 80, 80, 1), "float32")).numpy()))


def test_learned_upsampling_centres_output_on_input():
    layer = LearnedUpsampling(2)
    x = np.zeros((1, 4, 4, 2), "float32")
    x[0, 1, 2, 0] = 1.0
    layer.build(x.shape)
    kernel = np.zeros((3, 3, 1, 1), "float32")
    kernel[1, 1] = 1.0  # centre tap only
    layer.kernel.assign(kernel)
    y = layer(x).numpy()
    assert y.shape == (1, 8, 8, 2)
    assert y[0, 2, 4, 0] == 1.0 and y.sum() == 1.0  # output pixel 2i centred on input pixel i
    up3 = LearnedUpsampling(3, crop_last=1)
    assert up3(np.ones((2, 2, 2, 3), "float32")).shape == (2, 5, 5, 3)


def test_max_only_keeps_window_maxima():
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    y = MaxOnly(2)(x).numpy()[0, :, :, 0]
    assert set(np.flatnonzero(y)) == {5, 7, 13, 15}
    x5 = np.zeros((1, 5, 5, 1), "float32")
    x5[0, 2, 2] = 9.0  # centre: shared by all four 3x3/2 windows
    x5[0, 4, 4] = 3.0
    y5 = MaxOnly(3, 2)(x5 + 0.0).numpy()[0, :, :, 0]
    assert y5[2, 2] == 9.0 and y5[4, 4] == 0.0


def test_pixel_nll_matches_definition(rng):
    logits = rng.normal(size=(3, 80, 80, 2)).astype("float32")
    y = np.concatenate([rng.uniform(-0.1, 1.1, (3, 2, 2)), np.array([[[1], [0]], [[1], [1]], [[0], [1]]])], -1)
    loss = float(rcn_keras.PixelNLL()(y.astype("float32"), logits))
    flat = logits.transpose(0, 3, 1, 2).reshape(3, 2, -1).astype("float64")
    logp = flat - np.log(np.exp(flat).sum(-1, keepdims=True))
    ij = np.floor(np.clip(y[..., :2], 0, 0.99999) * 80).astype(int)
    labels = ij[..., 1] * 80 + ij[..., 0]
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    m = y[..., 2]
    assert loss == pytest.approx(2 * (m * nll).sum() / (m.sum() + 1e-8), rel=1e-5)


def test_gaussian_target_is_the_cross_entropy_against_a_normalised_gaussian(rng):
    """``target="gaussian"``: the NLL against a 2-D Gaussian of ``target_sigma`` map pixels around the point,
    sampled at the pixel centres and normalised on the map (computed here densely, in float64); it is
    lowest for maps that are that Gaussian, and a narrow one is the one-pixel (paper) target."""
    logits = rng.normal(size=(3, 80, 80, 2)).astype("float32")
    y = np.concatenate([rng.uniform(-0.05, 1.05, (3, 2, 2)), np.array([[[1], [0]], [[1], [1]], [[0], [1]]])], -1)
    y = y.astype("float32")
    flat = logits.transpose(0, 3, 1, 2).reshape(3, 2, -1).astype("float64")
    logp = flat - np.log(np.exp(flat).sum(-1, keepdims=True))
    yy, xx = np.mgrid[0:80, 0:80]
    cx, cy = (xx.ravel() + 0.5) / 80, (yy.ravel() + 0.5) / 80
    for sigma in (0.7, 2.0):
        d2 = ((cx - y[..., :1]) ** 2 + (cy - y[..., 1:2]) ** 2) * (80 / sigma) ** 2
        q = np.exp(-0.5 * (d2 - d2.min(-1, keepdims=True)))
        q /= q.sum(-1, keepdims=True)
        nll = -(q * logp).sum(-1)
        m = y[..., 2]
        loss = float(rcn_keras.PixelNLL("gaussian", target_sigma=sigma)(y, logits))
        assert loss == pytest.approx(2 * (m * nll).sum() / m.sum(), rel=1e-4)
    point = np.array([[[0.4, 0.6, 1.0]]], "float32")
    matching = (-0.5 * ((cx - 0.4) ** 2 + (cy - 0.6) ** 2) * (80 / 1.5) ** 2).reshape(1, 80, 80, 1).astype("float32")
    narrower = 2.0 * matching  # the same peak, sharper
    loss = lambda maps: float(rcn_keras.PixelNLL("gaussian", target_sigma=1.5)(point, maps))  # noqa: E731
    assert loss(matching) < loss(narrower) and loss(matching) < loss(0.5 * matching)
    thin = float(rcn_keras.PixelNLL("gaussian", target_sigma=0.05)(y, logits))
    assert thin == pytest.approx(float(rcn_keras.PixelNLL("pixel")(y, logits)), rel=1e-3)
    with pytest.raises(ValueError, match="target_sigma=0"):
        rcn_keras.PixelNLL("gaussian", target_sigma=0)


def test_coordinate_loss_adds_the_soft_argmax_distance_in_pixels(rng):
    logits = rng.normal(size=(3, 80, 80, 2)).astype("float32")
    y = np.concatenate([rng.uniform(0, 1, (3, 2, 2)), np.array([[[1], [0]], [[1], [1]], [[0], [1]]])], -1)
    y = y.astype("float32")
    base = float(rcn_keras.PixelNLL("bilinear")(y, logits))
    loss = float(rcn_keras.PixelNLL("bilinear", coordinate_weight=0.5)(y, logits))
    soft = keras.ops.convert_to_numpy(rcn_keras.KeypointReadout("soft_argmax")(logits)["keypoints"])
    distance = np.linalg.norm((soft - y[..., :2]) * 80, axis=-1)
    m = y[..., 2]
    assert loss - base == pytest.approx(2 * 0.5 * (m * distance).sum() / m.sum(), rel=1e-4)
    # a map peaked on the true point scores (almost) no distance: the term trains the read-out's error
    peaked = np.full((1, 80, 80, 1), -30.0, "float32")
    peaked[0, 10, 20, 0] = 30.0
    target = np.array([[[20.5 / 80, 10.5 / 80, 1.0]]], "float32")
    with_term = float(rcn_keras.PixelNLL(coordinate_weight=1.0)(target, peaked))
    assert with_term == pytest.approx(float(rcn_keras.PixelNLL()(target, peaked)), abs=1e-2)
    with pytest.raises(ValueError, match="coordinate_weight=-1"):
        rcn_keras.PixelNLL(coordinate_weight=-1)


def test_point_weights_weigh_each_points_loss_and_keep_its_scale(rng):
    logits = rng.normal(size=(2, 80, 80, 3)).astype("float32")
    y = np.concatenate([rng.uniform(0, 1, (2, 3, 2)), np.ones((2, 3, 1))], -1).astype("float32")
    per_point = [float(rcn_keras.PixelNLL("bilinear")(y[:, i:i + 1], logits[..., i:i + 1])) for i in range(3)]
    weighted = float(rcn_keras.PixelNLL("bilinear", point_weights=(2, 1, 0))(y, logits))
    # K x the weighted mean of the points' NLL: point 0 counts twice, point 2 not at all
    assert weighted == pytest.approx(3 * (2 * per_point[0] + per_point[1]) / 3, rel=1e-4)
    assert float(rcn_keras.PixelNLL("bilinear", point_weights=(1, 1, 1))(y, logits)) == pytest.approx(
        float(rcn_keras.PixelNLL("bilinear")(y, logits)), rel=1e-6)
    again = rcn_keras.PixelNLL.from_config(rcn_keras.PixelNLL("bilinear", point_weights=(2, 1, 0)).get_config())
    assert again.point_weights == (2.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="2 weights for 3 keypoints"):
        rcn_keras.PixelNLL(point_weights=(1, 1))(y, logits)
    with pytest.raises(ValueError, match="must be numbers >= 0"):
        rcn_keras.PixelNLL(point_weights=(1, -1, 1))


def test_distillation_adds_the_teachers_divergence_and_only_with_teacher_targets(rng):
    from rcn_keras.losses import teacher_divergence

    logits = rng.normal(size=(2, 80, 80, 3)).astype("float32")
    y = np.concatenate([rng.uniform(0, 1, (2, 3, 2)), np.array([[[1], [0], [1]], [[1], [1], [1]]])], -1)
    teacher = rng.uniform(size=(2, 3, 6400))
    teacher = (teacher / teacher.sum(-1, keepdims=True)).astype("float32")
    packed = np.concatenate([y, teacher], -1).astype("float32")
    base = float(rcn_keras.PixelNLL("bilinear")(y.astype("float32"), logits))
    assert float(rcn_keras.PixelNLL("bilinear", distill_weight=0.5)(y.astype("float32"), logits)) == base
    flat = logits.transpose(0, 3, 1, 2).reshape(2, 3, -1).astype(np.float64)
    logp = flat - np.log(np.exp(flat).sum(-1, keepdims=True))
    kl = (teacher * (np.log(teacher) - logp)).sum(-1)
    m = y[..., 2]
    labelled = base * m.sum() / 3  # the sum of the labelled points' NLL
    # the teacher trains every point, the one without a label too, each point counted once
    loss = float(rcn_keras.PixelNLL("bilinear", distill_weight=0.5)(packed, logits))
    assert loss == pytest.approx(3 * (labelled + 0.5 * kl.sum()) / 6, rel=1e-4)
    alone = float(rcn_keras.PixelNLL("bilinear", distill_weight=0.5, label_weight=0)(packed, logits))
    assert alone == pytest.approx(3 * 0.5 * kl.sum() / 6, rel=1e-4)
    # a face's weight (its largest mask) weighs its teacher term
    half = packed.copy()
    half[1, :, 2] *= 0.5
    weighted = float(rcn_keras.PixelNLL("bilinear", distill_weight=0.5, label_weight=0)(half, logits))
    assert weighted == pytest.approx(3 * 0.5 * (kl[0].sum() + 0.5 * kl[1].sum()) / (3 + 1.5), rel=1e-4)
    own = np.exp(logp).astype("float32")  # a teacher equal to the model: nothing to learn from it
    assert np.abs(keras.ops.convert_to_numpy(teacher_divergence(own, logp.astype("float32")))).max() < 1e-4
    with pytest.raises(ValueError, match="distill_weight=-1"):
        rcn_keras.PixelNLL(distill_weight=-1)
    with pytest.raises(ValueError, match="label_weight=-1"):
        rcn_keras.PixelNLL(label_weight=-1)


def test_teacher_targets_average_teachers_and_mirror_images(rng):
    """Flip-averaged teacher probabilities of a mirrored crop are those of the crop, mirrored and
    re-ordered; several teachers are averaged; the targets follow (x, y, mask) in the dataset."""
    import tensorflow as tf
    from rcn_keras.distillation import mirrored_maps, teacher_probabilities, with_teacher_targets
    from rcn_keras.keypoints import FACE_5

    teachers = [rcn_keras.build_model("rcn_mtfl", branches=4, width=0.25) for _ in range(2)]
    crops = rng.uniform(0, 255, (2, 80, 80, 1)).astype("float32")
    flip = FACE_5.flip
    p = keras.ops.convert_to_numpy(teacher_probabilities(teachers, crops, flip))
    assert p.shape == (2, 5, 6400) and np.allclose(p.sum(-1), 1, atol=1e-4)
    mirrored = keras.ops.convert_to_numpy(teacher_probabilities(teachers, crops[:, :, ::-1], flip))
    back = keras.ops.convert_to_numpy(mirrored_maps(mirrored.reshape(2, 5, 80, 80).transpose(0, 2, 3, 1), flip))
    np.testing.assert_allclose(back.transpose(0, 3, 1, 2).reshape(2, 5, -1), p, atol=1e-6)
    singles = [keras.ops.convert_to_numpy(teacher_probabilities([t], crops)) for t in teachers]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(teacher_probabilities(teachers, crops)),
                               (singles[0] + singles[1]) / 2, atol=1e-6)
    targets = rng.uniform(size=(2, 5, 3)).astype("float32")
    ds = with_teacher_targets(tf.data.Dataset.from_tensors((crops, targets)), teachers, flip)
    _, packed = next(iter(ds))
    np.testing.assert_allclose(packed[..., :3], targets)
    np.testing.assert_allclose(packed[..., 3:], p, atol=1e-5)


def test_teacher_check_scores_the_taught_maps_and_the_starting_network(rng):
    """A teacher whose probabilities sit on the true pixels scores ~0 % NME; a random network does not;
    the log-probability maps give the probabilities back."""
    import tensorflow as tf
    from rcn_keras.distillation import probability_maps, teacher_check
    from rcn_keras.keypoints import FACE_5

    face = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])  # eyes 0.4 apart
    points = (face + rng.uniform(-0.02, 0.02, (4, 5, 2))).astype("float32")
    cells = (np.floor(points[..., 1] * 80) * 80 + np.floor(points[..., 0] * 80)).astype(int)
    sharp = np.full((4, 5, 6400), 1e-9, "float32")
    np.put_along_axis(sharp, cells[..., None], 1.0, axis=-1)
    sharp /= sharp.sum(-1, keepdims=True)
    targets = np.concatenate([points, np.ones((4, 5, 1), "float32"), sharp], -1)
    crops = rng.uniform(0, 255, (4, 80, 80, 1)).astype("float32")
    ds = tf.data.Dataset.from_tensors((crops, targets)).repeat(3)
    student = rcn_keras.build_model("rcn_mtfl", branches=4, width=0.25)
    checked = teacher_check(ds, FACE_5, "argmax", student, batches=2)
    assert checked["crops"] == 8
    # the pixel centres the teacher's arg-max reads are within half a pixel's diagonal (2.2 % of 0.4)
    assert checked["teacher_nme"] < 2.3 and checked["student_nme"] > 10.0
    assert "student_nme" not in teacher_check(ds, FACE_5, "argmax", batches=1)
    back = keras.ops.convert_to_numpy(keras.ops.softmax(rcn_keras.grid.flatten_maps(probability_maps(sharp, 80, 80))))
    np.testing.assert_allclose(back, sharp, atol=1e-6)


def test_nme_metric_scores_the_models_readout(rng):
    """The in-training NME (best-epoch selection) reads points as the saved model will."""
    from rcn_keras.evaluation.nme import per_sample_nme
    from rcn_keras.metrics import NME

    logits = rng.normal(size=(3, 80, 80, 68)).astype("float32")
    y = np.concatenate([rng.uniform(0.2, 0.8, (3, 68, 2)), np.ones((3, 68, 1))], -1).astype("float32")
    for readout in ("argmax", "soft_argmax", "local_soft_argmax"):
        metric = NME(readout=readout)
        metric.update_state(y, logits)
        pred = keras.ops.convert_to_numpy(rcn_keras.KeypointReadout(readout)(logits)["keypoints"])
        assert float(metric.result()) == pytest.approx(100 * per_sample_nme(pred, y[..., :2]).mean(), rel=1e-4)
        assert NME.from_config(metric.get_config()).readout == readout


def test_readout_argmax_and_soft_argmax():
    logits = np.full((1, 80, 80, 2), -30.0, "float32")
    logits[0, 10, 20, 0] = 30.0  # row 10, column 20
    logits[0, 40, 5, 1] = 30.0
    out = rcn_keras.KeypointReadout("argmax")(logits)
    np.testing.assert_allclose(out["keypoints"][0], [[20.5 / 80, 10.5 / 80], [5.5 / 80, 40.5 / 80]], atol=1e-6)
    assert np.all(out["confidence"].numpy() > 0.99)
    soft = rcn_keras.KeypointReadout("soft_argmax")(logits)
    np.testing.assert_allclose(soft["keypoints"], out["keypoints"], atol=1e-4)


def _reference_readout(logits: np.ndarray, mode: str, radius: int = 2):
    """The read-outs written the obvious way in numpy: softmax over each map's pixels, then the peak,
    the expectation, or the expectation over the (2r+1)^2 window around the peak."""
    b, h, w, k = logits.shape
    flat = logits.transpose(0, 3, 1, 2).reshape(b, k, h * w).astype(np.float64)
    p = np.exp(flat - flat.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    centres = np.stack([(np.arange(h * w) % w + 0.5) / w, (np.arange(h * w) // w + 0.5) / h], -1)
    peak = p.argmax(-1)
    if mode == "argmax":
        points = centres[peak]
    elif mode == "soft_argmax":
        points = p @ centres
    else:
        near = (np.abs(centres[None, None, :, 0] * w - centres[peak][..., None, 0] * w) <= radius) & \
               (np.abs(centres[None, None, :, 1] * h - centres[peak][..., None, 1] * h) <= radius)
        q = p * near
        points = (q / q.sum(-1, keepdims=True)) @ centres
    return points, p.max(-1)


@pytest.mark.parametrize("mode", ["argmax", "soft_argmax", "local_soft_argmax"])
def test_readouts_match_the_numpy_reference(rng, mode):
    logits = (rng.normal(size=(3, 80, 80, 6)) * 3).astype("float32")
    logits[0, 0, 0, 0] = 40  # a peak in a corner: the local window is cut by the border
    logits[1, 79, 40, 1] = 40
    logits[2, 30, 50, 2] = logits[2, 31, 52, 2] = 25  # two close peaks: the first in row-major order wins
    out = rcn_keras.KeypointReadout(mode)(logits)
    points, confidence = _reference_readout(logits, mode)
    np.testing.assert_allclose(out["keypoints"], points, atol=2e-5)
    np.testing.assert_allclose(out["confidence"], confidence, rtol=1e-4)


def test_fast_layout_is_separable_normalised_and_emits_40x40_maps():
    model = rcn_keras.build_model("rcn_300w_fast")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"SeparableConv2D", "BatchNormalization"} <= kinds and "m1_bn" in {lay.name for lay in model.layers}
    assert "f1" not in {layer.name for layer in model.layers}  # output_level 1: no F branch
    assert model.get_layer("fout").output.shape[1:] == (40, 40, 68)
    assert model.output.shape[1:] == (80, 80, 68) and model.count_params() < 100_000
    depthwise = model.get_layer("m1").depthwise_kernel.numpy()  # fan = k * k, not k * k * channels
    assert np.abs(depthwise).max() <= np.sqrt(6 / (9 + 9 / 4)) + 1e-6 and depthwise.std() > 0.3
    with pytest.raises(ValueError, match="'fast' only for family='rcn'"):
        rcn_keras.model_config("sumnet_300w", layout="fast")
    with pytest.raises(ValueError, match="output_level"):
        rcn_keras.model_config("rcn_300w", output_level=3)


def test_fast_maps_without_upsampling_are_the_40x40_maps_read_and_saved_as_any(rng, tmp_path):
    """``upsample_maps=False``: the same network (the same weights fit) emitting its 40x40 maps, which the
    read-out, the loss, the shape prior, a saved Landmarker and the map drawing take as 80x80 ones."""
    from rcn_keras.models.head import as_map_model, is_map_side
    from rcn_keras.models.shape_prior import ShapePrior
    from rcn_keras.models.transfer import for_keypoints
    from rcn_keras.visualize import presoftmax_grid

    up = rcn_keras.build_model("rcn_300w_fast", num_keypoints=5)
    config = up.rcn_config.replace(upsample_maps=False)
    assert config.map_size == 40 and up.rcn_config.map_size == 80
    low, fresh = for_keypoints(up, config, 5)
    assert fresh == [] and low.output.shape[1:] == (40, 40, 5) and low.count_params() == up.count_params()
    x = rng.uniform(0, 255, (2, 80, 80, 1)).astype(np.float32)
    coarse = keras.Model(up.input, up.get_layer("fout").output).predict(x, verbose=0)
    np.testing.assert_allclose(low.predict(x, verbose=0), coarse, rtol=1e-5, atol=1e-5)
    y = np.concatenate([rng.uniform(0.3, 0.7, (2, 5, 2)), np.ones((2, 5, 1))], -1).astype("float32")
    assert np.isfinite(float(rcn_keras.PixelNLL("bilinear", coordinate_weight=1.0)(y, coarse)))
    prior = ShapePrior.from_shapes(rng.uniform(0.3, 0.7, (20, 5, 2)))
    model = rcn_keras.Landmarker(low, readout="soft_argmax", shape_prior=prior)
    model.save(tmp_path / "m.keras")
    again = rcn_keras.load_landmarker(tmp_path / "m.keras")
    assert again.network_config().map_size == 40
    out = again(x)
    assert out["presoftmax"].shape[1:] == (40, 40, 5) and out["keypoints"].shape == (2, 5, 2)
    np.testing.assert_allclose(out["keypoints"], model(x)["keypoints"], atol=1e-5)
    presoftmax_grid(x, coarse, y[..., :2], y[..., :2])  # drawn on the crop's pixels
    assert is_map_side(80, 80) and is_map_side(40, 40) and not is_map_side(30, 30) and not is_map_side(40, 20)
    with pytest.raises(ValueError, match="not a landmark model"):
        image = keras.Input((80, 80, 1))
        as_map_model(keras.Model(image, keras.layers.AveragePooling2D(3)(image)))  # 26x26 maps
    with pytest.raises(ValueError, match="upsample_maps=False is not allowed; allowed: true, or false with output_level=1"):
        rcn_keras.model_config("rcn_300w", upsample_maps=False)


def test_teacher_maps_pooled_onto_a_coarser_student(rng):
    """An 80x80 teacher teaches a 40x40 student each 2x2 block's probability mass."""
    import tensorflow as tf
    from rcn_keras.distillation import pooled_probabilities, teacher_probabilities, with_teacher_targets

    probs = rng.uniform(size=(2, 3, 6400)).astype("float32")
    probs /= probs.sum(-1, keepdims=True)
    pooled = keras.ops.convert_to_numpy(pooled_probabilities(probs, 80, 40))
    blocks = probs.reshape(2, 3, 40, 2, 40, 2).sum(axis=(3, 5)).reshape(2, 3, 1600)
    np.testing.assert_allclose(pooled, blocks, rtol=1e-5)
    np.testing.assert_allclose(pooled.sum(-1), 1.0, rtol=1e-5)
    assert pooled_probabilities(probs, 80, 80) is probs
    with pytest.raises(ValueError, match="cannot teach 30x30"):
        pooled_probabilities(probs, 80, 30)
    teacher = rcn_keras.build_model("rcn_mtfl", branches=4, width=0.25)
    crops = rng.uniform(0, 255, (2, 80, 80, 1)).astype("float32")
    targets = rng.uniform(size=(2, 5, 3)).astype("float32")
    _, packed = next(iter(with_teacher_targets(tf.data.Dataset.from_tensors((crops, targets)), [teacher], size=40)))
    assert packed.shape == (2, 5, 3 + 1600)
    full = keras.ops.convert_to_numpy(teacher_probabilities([teacher], crops))
    np.testing.assert_allclose(packed[..., 3:], full.reshape(2, 5, 40, 2, 40, 2).sum(axis=(3, 5)).reshape(2, 5, -1),
                               atol=1e-6)
    with pytest.raises(ValueError, match="cannot teach 30x30"):
        with_teacher_targets(tf.data.Dataset.from_tensors((crops, targets)), [teacher], size=30)


def test_a_few_steps_reduce_the_loss(rng):
    model = rcn_keras.build_model("rcn_mtfl", branches=5)
    x = rng.uniform(0, 255, (8, 80, 80, 1)).astype("float32")
    y = np.concatenate([rng.uniform(0.2, 0.8, (8, 5, 2)), np.ones((8, 5, 1))], -1).astype("float32")
    model.compile(keras.optimizers.Adadelta(1.0, rho=0.95, epsilon=1e-8), loss=rcn_keras.PixelNLL())
    history = model.fit(x, y, batch_size=8, epochs=15, verbose=0).history["loss"]
    assert min(history[-3:]) < history[0] - 1.0, history  # Adadelta at lr 1.0 on 8 faces: a noisy descent


@pytest.mark.parametrize("call, message", [
    (lambda: rcn_keras.build_model("rcn_foo"), "unknown preset 'rcn_foo'"),
    (lambda: rcn_keras.build_model("rcn_mtfl", branches=3), "branches=3 is not allowed"),
    (lambda: rcn_keras.build_model("rcn_mtfl", branches=4, branch_mask=(1, 1)), "4 values of 0 or 1"),
    (lambda: rcn_keras.build_model("rcn_mtfl", branch_mask=(0,) * 6), "all-zero mask"),
    (lambda: rcn_keras.build_model("rcn_mtfl", input_size=64), "input_size=64"),
    (lambda: rcn_keras.build_model("rcn_mtfl", widht=3), "unknown model option"),
    (lambda: rcn_keras.build_model("sumnet_mtfl", skip=True), "only for family='rcn'"),
])
def test_bad_arguments_raise_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_wrong_input_shape_is_a_value_error():
    model = rcn_keras.build_model("rcn_mtfl", branches=4)
    with pytest.raises(ValueError, match=r"expected shape=\(None, 80, 80, 1\)"):
        model(np.zeros((1, 64, 64, 1), "float32"))


def test_mixed_precision_keeps_logits_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = rcn_keras.build_model("rcn_mtfl", branches=4)
        assert model.get_layer("sh2").compute_dtype == "float16"
        assert model.get_layer("lcn").compute_dtype == "float32"
        assert model.get_layer("fout").compute_dtype == "float32"
        assert model.outputs[0].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
