"""Training runs with model.fit (checkpoint, resume, logs, maps, report, the saved Landmarker), predict
and export of what they save, and the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_fixtures import TINY_TRAINING

import keras
import rcn_keras
from rcn_keras.app.cli import main as cli
from rcn_keras.app.training import TrainConfig, preset_train_config, train
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.prediction_files import write_predictions
from rcn_keras.landmarker import Landmarker, load_landmarker

pytestmark = pytest.mark.slow

TINY = {**TINY_TRAINING, "visualize_every": 1}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = preset_train_config("rcn_mtfl", epochs=2, output_dir=str(out), **TINY)
    result = train(config, verbose=0)
    return out, config, result


def test_training_writes_everything(trained_run):
    out, _, summary = trained_run
    assert isinstance(summary.model, Landmarker) and summary.model.readout == "argmax"
    saved = load_landmarker(out / "best.keras")
    assert saved.preset == "rcn_mtfl" and all(layer.compute_dtype == "float32" for layer in saved.backbone.layers)
    for name in ("best.keras", "config.json", "log.csv", "report.md", "report.json", "ced.png", "summary.json",
                 "state/last.keras", "state/state.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "maps").glob("*.png")) == ["maps_epoch_0001.png", "maps_epoch_0002.png"]
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3
    assert np.isfinite(summary["test_nme"]) and np.isfinite(summary["mean_shape_nme"])
    assert json.loads((out / "state" / "state.json").read_text())["epoch"] == 2
    assert not list(out.rglob("*.tmp*"))


def test_resume_continues_from_last_epoch(trained_run, tmp_path):
    out, config, _ = trained_run
    with pytest.raises(ValueError, match="already holds a training run"):
        train(config, verbose=0)
    more = TrainConfig.from_dict({**config.to_dict(), "epochs": 3})
    summary = train(more, resume=True, verbose=0)
    assert list(summary["history"]["loss"]) and len(summary["history"]["loss"]) == 1  # only epoch 3 ran
    assert json.loads((out / "state" / "state.json").read_text())["epoch"] == 3
    assert len((out / "log.csv").read_text().strip().splitlines()) == 4


def test_config_overrides_and_errors():
    cfg = preset_train_config("rcn_300w", **{"augment.rotation": 40, "model_options.branches": 6})
    assert cfg.augment.rotation == 40 and cfg.num_keypoints == 68 and cfg.epochs == 3000
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown option 'augment.rotaton'"):
        preset_train_config("rcn_mtfl", **{"augment.rotaton": 3})
    with pytest.raises(ValueError, match="unknown preset 'rcn_foo'"):
        preset_train_config("rcn_foo")
    with pytest.raises(ValueError, match="needs data.root"):
        preset_train_config("rcn_mtfl", **{"data.source": "300w"})


def test_init_from_a_keras_file_keeps_its_preset_and_points(tmp_path):
    """`rcn train --init FILE` with no --preset trains the file's own preset and keypoint scheme (as a shipped
    name gives its own), not the default 5-point preset; --preset and --keypoints still win."""
    from rcn_keras.app.cli.main import build_parser
    from rcn_keras.app.cli.train import DEFAULT_PRESET, config_from_args
    from rcn_keras.keypoints import KeypointScheme
    from rcn_keras.models.registry import build_model

    fast = tmp_path / "fast.keras"
    Landmarker.from_preset("rcn_300w_fast").save(fast)
    own = tmp_path / "own.keras"
    Landmarker(build_model("rcn_mtfl", num_keypoints=7), preset="rcn_mtfl", keypoints=KeypointScheme(7)).save(own)
    other = tmp_path / "net.keras"
    build_model("rcn_mtfl", num_keypoints=5).save(other)  # a bare network: nothing to read, the default preset

    def config(*argv):
        return config_from_args(build_parser().parse_args(["train", *argv]))

    c = config("--init", str(fast), "--data", "300w", "--root", str(tmp_path))
    assert (c.model, c.num_keypoints, c.optimizer, c.keypoints) == ("rcn_300w_fast", 68, "adam", None)
    c = config("--init", str(own))
    assert (c.model, c.num_keypoints, c.scheme()) == ("rcn_mtfl", 7, KeypointScheme(7))
    assert config("--init", str(own), "--keypoints", "face5").num_keypoints == 5
    c = config("--init", str(fast), "--preset", "rcn_mtfl")
    assert (c.model, c.num_keypoints) == ("rcn_mtfl", 5)
    assert config("--init", str(other)).model == DEFAULT_PRESET


def test_point_weights_by_region_or_index_reach_the_loss():
    cfg = preset_train_config("rcn_300w", point_weights={"jaw": 2, "30": 0.5})
    weights = cfg.point_weight_vector()
    assert weights[:17] == (2.0,) * 17 and weights[30] == 0.5 and sum(weights) == 68 + 17 - 0.5
    assert cfg.loss().point_weights == weights and preset_train_config("rcn_300w").loss().point_weights == ()
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match=r"key 'chin' is not a region \(jaw, brows, nose, eyes, mouth\) or a point"):
        preset_train_config("rcn_300w", point_weights={"chin": 2})
    with pytest.raises(ValueError, match="key 'jaw' is not a point index 0-4"):
        preset_train_config("rcn_mtfl", point_weights={"jaw": 2})
    with pytest.raises(ValueError, match=r"point_weights\['eyes'\]=-1 must be a number >= 0"):
        preset_train_config("rcn_300w", point_weights={"eyes": -1})


def test_predict_on_crop_and_box_in_original_pixels(trained_run, tmp_path):
    out, _, _ = trained_run
    model = load_landmarker(out / "best.keras")
    face = synthetic_faces(1, 5, seed=9)
    img = face.images[0]
    big = np.zeros((300, 400), np.uint8)
    big[50:210, 100:260] = img
    Image.fromarray(big).save(tmp_path / "big.png")
    x, y, s = face.rects[0]
    crop_res = model.predict([img[int(y):int(y + s), int(x):int(x + s)]])[0]["faces"][0]
    box = (100 + x + s * (1 - 1 / 1.3) / 2, 50 + y + s * (1 - 1 / 1.3) / 2, s / 1.3, s / 1.3)
    result = model.predict([tmp_path / "big.png"], boxes=[box])[0]
    box_res = result["faces"][0]
    # the same face through the box path: the same crop (but for its border, where the Lanczos resize sees
    # the photo around the face in one case and padding in the other), keypoints shifted by the offset
    diff = np.abs(box_res["crop"][4:-4, 4:-4] - crop_res["crop"][4:-4, 4:-4])
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 6, (diff.mean(), np.percentile(diff, 99))
    np.testing.assert_allclose(box_res["keypoints"] - [100 + int(x), 50 + int(y)], crop_res["keypoints"], atol=1.5)
    written = write_predictions([result], tmp_path / "pred")
    assert (tmp_path / "pred" / "big_keypoints.png").is_file()
    rows = (tmp_path / "pred" / "keypoints.csv").read_text().splitlines()
    assert rows[0] == "image,face,point,x,y,confidence" and len(rows) == 6 and len(written) == 3


def test_export_saved_model_and_tflite(trained_run, tmp_path):
    out, _, _ = trained_run
    model = load_landmarker(out / "best.keras").with_readout("soft_argmax")
    x = np.random.default_rng(0).uniform(0, 255, (3, 80, 80, 1)).astype("float32")
    expected = model(x)  # the export carries the model's read-out
    sm = model.export(tmp_path / "sm")
    script = f"""
import json, sys, numpy as np, tensorflow as tf
m = tf.saved_model.load({str(sm)!r})
x = np.load({str(tmp_path / 'x.npy')!r})
out = m.serve(tf.constant(x))
maps = m.presoftmax(tf.constant(x[:1]))
print(json.dumps({{"kp": out["keypoints"].numpy().tolist(), "conf": out["confidence"].numpy().tolist(),
                  "maps": list(maps.shape), "imported": "rcn_keras" in sys.modules}}))
"""
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1500:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got["kp"], expected["keypoints"], atol=1e-6)
    np.testing.assert_allclose(got["conf"], expected["confidence"], atol=1e-5)
    assert got["maps"] == [1, 80, 80, 5] and got["imported"] is False
    import tensorflow as tf

    tfl = model.export(tmp_path / "m.tflite", format="tflite", batch_size=3)
    runner = tf.lite.Interpreter(model_path=str(tfl)).get_signature_runner("serve")
    lite = runner(image=x)
    np.testing.assert_allclose(lite["keypoints"], expected["keypoints"], atol=1.5 / 80)


def run_cli(*args):
    return cli.main([str(a) for a in args])


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    cases = [
        (["train", "--preset", "rcn_foo", "--out", tmp_path / "x"], "unknown preset 'rcn_foo'"),
        (["train", "--data", "300w", "--root", tmp_path / "none", "--epochs", "1", "--out", tmp_path / "y"],
         "dataset folder not found"),
        (["predict", tmp_path / "a.png", "--model", tmp_path / "missing.keras", "--out", tmp_path / "p"],
         "model not found"),
        (["export", "--model", tmp_path / "bad.keras", "--out", tmp_path / "e"], "cannot load model"),
        (["predict", tmp_path / "notimage.png", "--model", "MODEL", "--out", tmp_path / "p"], "cannot decode image"),
        (["train", "--set", "epochs", "--out", tmp_path / "z"], "--set expects key=value"),
    ]
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    (tmp_path / "notimage.png").write_text("text")
    model = rcn_keras.build_model("rcn_mtfl", branches=4)
    model.save(tmp_path / "ok.keras")
    for argv, message in cases:
        argv = [tmp_path / "ok.keras" if a == "MODEL" else a for a in argv]
        assert run_cli(*argv) == cli.EXIT_USER_ERROR, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_unknown_custom_layer_is_a_clear_error(tmp_path, capsys):
    @keras.saving.register_keras_serializable(package="elsewhere")
    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x

    inp = keras.Input((80, 80, 1))
    keras.Model(inp, Mystery()(inp)).save(tmp_path / "mystery.keras")
    del keras.saving.get_custom_objects()["elsewhere>Mystery"]
    assert run_cli("export", "--model", tmp_path / "mystery.keras", "--out", tmp_path / "e") == cli.EXIT_USER_ERROR
    assert "cannot load model" in capsys.readouterr().err


def test_cli_predict_and_evaluate(trained_run, tmp_path, capsys):
    out, _, _ = trained_run
    Image.fromarray(synthetic_faces(1, 5, seed=4).images[0]).save(tmp_path / "face.png")
    assert run_cli("predict", tmp_path / "face.png", "--model", out / "best.keras", "--detector", "none",
                   "--out", tmp_path / "p") == 0
    assert json.loads((tmp_path / "p" / "keypoints.json").read_text())["images"][0]["faces"][0]["keypoints"]
    assert run_cli("evaluate", "--model", out / "best.keras", "--faces", 8, "--out", tmp_path / "ev") == 0
    assert (tmp_path / "ev" / "report.md").is_file() and (tmp_path / "ev" / "ced.png").is_file()
    assert "| all |" in capsys.readouterr().out


def test_cli_train_interrupt_then_resume(tmp_path, monkeypatch, capsys):
    from rcn_keras.app.training import callbacks

    out = tmp_path / "run"
    argv = ["train", "--preset", "sumnet_mtfl", "--epochs", 2, "--batch-size", 16, "--out", out, "--progress", 0,
            "--set", "data.synthetic_train=32", "--set", "data.synthetic_validation=8",
            "--set", "data.synthetic_test=8", "--set", 'model_options={"branches": 4}']
    original = callbacks.MapVisualizer.on_epoch_begin

    def interrupt_in_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt  # as Ctrl-C while the second epoch runs
        return original(self, epoch, logs)

    monkeypatch.setattr(callbacks.MapVisualizer, "on_epoch_begin", interrupt_in_second_epoch)
    assert run_cli(*argv) == cli.EXIT_INTERRUPTED
    assert "epoch 1 is the last saved one" in capsys.readouterr().err
    assert json.loads((out / "state" / "state.json").read_text())["epoch"] == 1
    assert not list(out.rglob("*.tmp*"))
    monkeypatch.setattr(callbacks.MapVisualizer, "on_epoch_begin", original)
    assert run_cli(*argv, "--resume") == 0
    printed = capsys.readouterr().out
    assert "test NME" in printed and "mean-shape baseline" in printed
    assert json.loads((out / "state" / "state.json").read_text())["epoch"] == 2


def test_widened_fine_tuning_with_coordinate_loss(trained_run, tmp_path):
    """`--init` a trained model at a larger width: the run starts from its maps (same validation NME
    before any update) and trains the wider network; the in-training NME reads with the run's read-out."""
    out, _, _ = trained_run
    source = load_landmarker(out / "best.keras")
    config = preset_train_config("rcn_mtfl", epochs=1, steps_per_epoch=1, output_dir=str(tmp_path / "wide"),
                                 init_from=str(out / "best.keras"), coordinate_loss=0.5, readout="soft_argmax",
                                 **{**TINY, "model_options": {"width": 1.25}, "learning_rate": 1e-12})
    result = train(config, verbose=0)
    wide = load_landmarker(tmp_path / "wide" / "best.keras")
    assert wide.network_config().width == 1.25 and wide.count_params() > 1.4 * source.count_params()
    assert result["val_readout"] == "soft_argmax"
    x = np.random.default_rng(0).uniform(0, 255, (2, 80, 80, 1)).astype(np.float32)
    np.testing.assert_allclose(wide.backbone.predict(x, verbose=0), source.backbone.predict(x, verbose=0),
                               atol=1e-3, rtol=1e-3)  # a learning rate of ~0: still the source's maps


def test_distillation_from_the_model_itself_adds_only_its_flip_disagreement(trained_run, tmp_path, capsys):
    """A student that starts as its teacher (learning rate ~0) has nothing to learn from it: the training
    loss equals the plain run's; from the flip-averaged teacher it grows by the model's left-right
    disagreement. Validation losses never carry the term. The teacher check scores the teacher's maps and
    the --init model alike on the same crops, and warns that such a teacher is no better."""
    out, _, _ = trained_run
    common = dict(epochs=1, steps_per_epoch=2, init_from=str(out / "best.keras"),
                  **{**TINY, "visualize_every": 0, "learning_rate": 1e-12})
    runs, summaries = {}, {}
    for name, extra in (("plain", {}), ("same", {"distill_from": str(out / "best.keras"), "distill_flip": False}),
                        ("flipped", {"distill_from": [str(out / "best.keras")], "distill_weight": 2.0})):
        config = preset_train_config("rcn_mtfl", output_dir=str(tmp_path / name), **common, **extra)
        capsys.readouterr()
        summaries[name] = train(config, verbose=0).summary
        runs[name] = summaries[name]["history"]
        if name == "same":
            assert "teachers are no better than the --init model" in capsys.readouterr().err
    check = summaries["same"]["teacher_check"]
    assert check["crops"] > 0 and check["teacher_nme"] == pytest.approx(check["student_nme"], abs=1e-3)
    assert "teacher_check" not in summaries["plain"]
    assert runs["same"]["loss"][0] == pytest.approx(runs["plain"]["loss"][0], rel=1e-4)
    assert runs["flipped"]["loss"][0] > runs["plain"]["loss"][0] + 1e-3
    assert runs["flipped"]["val_loss"][0] == pytest.approx(runs["plain"]["val_loss"][0], rel=1e-4)
    saved = json.loads((tmp_path / "flipped" / "config.json").read_text())
    assert saved["distill_from"] == [str(out / "best.keras")] and saved["distill_weight"] == 2.0


def test_a_finer_teacher_trains_the_student_on_its_faces_at_the_students_pixels(trained_run, tmp_path, capsys):
    """A 160x160 teacher of an 80x80 run: the training faces are cut for the teacher and the student sees
    their block means. The teacher made from the --init model itself (the same function on the averaged
    crop, `for_keypoints`) scores as the student on the crops it is shown and adds nothing to its loss."""
    from rcn_keras.landmarker import Landmarker
    from rcn_keras.models.transfer import for_keypoints

    out, _, _ = trained_run
    source = load_landmarker(out / "best.keras")
    hr = source.network_config().replace(input_size=160, branches=5, output_level=1)
    teacher, _ = for_keypoints(source.backbone, hr, source.num_keypoints)
    Landmarker(teacher, readout=source.readout).save(tmp_path / "teacher160.keras")
    common = dict(epochs=1, steps_per_epoch=2, init_from=str(out / "best.keras"),
                  **{**TINY, "visualize_every": 0, "learning_rate": 1e-12})
    plain = train(preset_train_config("rcn_mtfl", output_dir=str(tmp_path / "plain"), **common), verbose=0).summary
    capsys.readouterr()
    taught = train(preset_train_config("rcn_mtfl", output_dir=str(tmp_path / "taught"), distill_flip=False,
                                       distill_from=str(tmp_path / "teacher160.keras"), **common), verbose=0).summary
    check = taught["teacher_check"]
    assert check["crops"] > 0 and check["teacher_nme"] == pytest.approx(check["student_nme"], abs=1e-2)
    assert taught["history"]["loss"][0] == pytest.approx(plain["history"]["loss"][0], rel=0.02)
    assert load_landmarker(tmp_path / "taught" / "best.keras").input_size == 80
    small = preset_train_config("rcn_mtfl", output_dir=str(tmp_path / "bad"), distill_from=str(out / "best.keras"),
                                **{**common, "model_options": {"branches": 5, "input_size": 160, "output_level": 1},
                                   "init_from": None})
    with pytest.raises(ValueError, match="takes 80x80 crops; this run trains on 160x160 crops"):
        train(small, verbose=0)


def test_ship_models_scores_the_network_alone_without_its_saved_prior(trained_run, tmp_path):
    """`tools/ship_models.py --no-shape-prior`: a run whose best model saved a shape prior competes (and
    ships) as its network alone, under every read-out; by default with its own prior."""
    import pathlib
    import shutil

    from rcn_keras.app.training.fit import training_shapes
    from rcn_keras.data.sources import load_splits
    from rcn_keras.models.config import READOUTS
    from rcn_keras.models.shape_prior import ShapePrior

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
    from ship_models import score_candidate

    out, config, _ = trained_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    prior = ShapePrior.from_shapes(training_shapes(load_splits(config.data, config.num_keypoints).train))
    load_landmarker(out / "best.keras").with_shape_prior(prior).save(run / "best.keras")
    own = score_candidate(run, {})
    assert len(own) == 1 and own[0]["shape_prior"] is not None
    alone = score_candidate(run, {}, network_alone=True)
    assert [r["readout"] for r in alone] == list(READOUTS) and all(r["shape_prior"] is None for r in alone)
    assert own[0]["val_nme"] != alone[0]["val_nme"]


def test_weight_average_is_validated_and_saved_and_resume_keeps_the_weights(trained_run, tmp_path):
    """``weight_average``: validation and ``best.keras`` use the optimizer's moving average of the weights;
    the state for ``--resume`` keeps the weights themselves, with the average in the optimizer, and a
    resumed run goes on from them."""
    from rcn_keras.app.training.callbacks import AveragedWeights, averaged_weights
    from rcn_keras.data.pipeline import make_dataset
    from rcn_keras.data.sources import load_splits

    out, _, _ = trained_run
    with pytest.raises(ValueError, match="weight_average=1 must be below 1"):
        preset_train_config("rcn_mtfl", weight_average=1)
    config = preset_train_config("rcn_mtfl", epochs=1, steps_per_epoch=3, init_from=str(out / "best.keras"),
                                 weight_average=0.9, output_dir=str(tmp_path / "avg"),
                                 **{**TINY, "visualize_every": 0, "optimizer": "adam", "learning_rate": 1e-2,
                                    "precision": "float32"})
    train(config, verbose=0)

    def weights_and_averages():
        state = keras.saving.load_model(tmp_path / "avg" / "state" / "last.keras")
        averages = [keras.ops.convert_to_numpy(v) for v in state.optimizer._model_variables_moving_average]
        return state, [keras.ops.convert_to_numpy(v) for v in state.trainable_weights], averages

    state, weights, averages = weights_and_averages()
    saved = [keras.ops.convert_to_numpy(v) for v in load_landmarker(tmp_path / "avg" / "best.keras").trainable_weights]
    assert len(saved) == len(averages) == len(weights)
    for s, a in zip(saved, averages):
        np.testing.assert_allclose(s, a, atol=1e-6)
    assert max(float(np.abs(w - a).max()) for w, a in zip(weights, averages)) > 1e-4
    x, y = next(iter(make_dataset(load_splits(config.data, 5).validation, "validation", 8)))
    plain = state.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    validated = state.evaluate(x, y, verbose=0, return_dict=True, callbacks=[AveragedWeights()])["loss"]
    with averaged_weights(state.optimizer):
        averaged = state.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert validated == pytest.approx(averaged, rel=1e-6) and abs(validated - plain) > 1e-3 * abs(plain)
    assert state.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(plain, rel=1e-6)  # swapped back
    train(TrainConfig.from_dict({**config.to_dict(), "epochs": 2}), resume=True, verbose=0)
    resumed, after, _ = weights_and_averages()
    assert int(resumed.optimizer.iterations) == 6
    assert max(float(np.abs(w - b).max()) for w, b in zip(weights, after)) > 1e-4  # trained on from them
