"""`train(config)`: load data, build and compile the model, `model.fit` with checkpoints, resume,
logs and map pictures, then evaluate the best model on the test set against a mean-shape baseline.
The best model is saved as a float32 `Landmarker` that knows its read-out (picked on the validation
split when the config asks for ``readout="auto"``)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Callable

import keras
import numpy as np

from rcn_keras.app.lock import FolderLock
from rcn_keras.app.training.callbacks import (AveragedWeights, BestCheckpoint, EpochLog, MapVisualizer, TimeBudget,
                                              TrainingState, load_training_state)
from rcn_keras.app.training.config import TrainConfig, describe_changes, resume_changes
from rcn_keras.app.training.distributed import is_chief, make_strategy, train_multiworker
from rcn_keras.data.crop import crop_side
from rcn_keras.data.faceset import FaceSet
from rcn_keras.data.pipeline import make_dataset, make_denoiser_dataset
from rcn_keras.data.sources import load_splits
from rcn_keras.distillation import teacher_check, with_teacher_targets
from rcn_keras.evaluation.calibration import measure_label_offsets
from rcn_keras.evaluation.denoiser import denoiser_table, evaluate_denoiser
from rcn_keras.evaluation.nme import per_sample_nme
from rcn_keras.evaluation.report import evaluate_predictions, predict_faceset, write_report
from rcn_keras.files import atomic_save_model, atomic_write_bytes
from rcn_keras.grid import MAP_SIZE
from rcn_keras.landmarker import Landmarker, float32_copy, load_landmarker
from rcn_keras.metrics import NME
from rcn_keras.models.config import READOUTS, ModelConfig
from rcn_keras.models.denoising import build_denoiser
from rcn_keras.models.registry import build_model
from rcn_keras.models.shape_prior import ShapePrior
from rcn_keras.models.transfer import for_keypoints
from rcn_keras.presets import get_preset
from rcn_keras.runtime import resolve_precision


@dataclasses.dataclass
class TrainResult:
    """What `train` returns: the best model (a float32 `Landmarker`, or the denoiser's map model) and
    the summary also written to ``summary.json``."""

    model: keras.Model
    summary: dict

    def __getitem__(self, key: str):  # result["test_nme"] reads the summary
        return self.summary[key]


def _device_switches(config: TrainConfig):
    """(Keras dtype policy, jit_compile argument) for this machine."""
    jit = {"auto": "auto", "on": True, "off": False}[config.jit_compile]
    return resolve_precision(config.precision), jit


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The learning rate or schedule: constant, or a linear warm-up over ``warmup_epochs`` followed by a
    cosine decay to zero at ``epochs`` (updates counted by the optimizer, so a resumed run continues it)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    all_steps = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), all_steps // 2)
    total = max(1, all_steps - warmup)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total)
    return keras.optimizers.schedules.CosineDecay(0.0, total, warmup_target=config.learning_rate,
                                                  warmup_steps=warmup)


def make_optimizer(config: TrainConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """The run's optimizer; with ``weight_average`` it also keeps the moving average of the weights."""
    lr = learning_rate(config, steps_per_epoch)
    average = {"use_ema": True, "ema_momentum": config.weight_average} if config.weight_average else {}
    if config.optimizer == "adadelta":
        return keras.optimizers.Adadelta(lr, rho=config.rho, epsilon=config.epsilon, **average)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, **average)
    return keras.optimizers.Adam(lr, **average)


def mean_shape_baseline(train: FaceSet, test: FaceSet) -> np.ndarray:
    """Predict the training set's mean (un-jittered) crop shape for every test face (the mean of each
    point over the faces where it trains: not annotated and group-mean points are left out)."""
    y = np.concatenate([y.numpy() for _, y in make_dataset(train, "test", 256)])
    own = y[..., 2:3] > 0
    mean = np.where(own, y[..., :2], 0.0).sum(0) / np.maximum(own.sum(0), 1)
    return np.broadcast_to(mean, (len(test),) + mean.shape).copy()


def _fit(config, splits, pipeline, build, strategy, jit, out, state_dir, resume, verbose, wrap):
    """`model.fit` under ``strategy`` (default or mirrored) with all callbacks; returns
    (history, best epoch, best validation NME, model, training seconds)."""
    with strategy.scope():
        restored = load_training_state(state_dir) if resume else None
        initial_epoch, best, best_epoch, spent = 0, float("inf"), None, 0.0
        if restored is not None:
            model, state = restored
            initial_epoch, best = state["epoch"], state.get("best", float("inf"))
            best_epoch, spent = state.get("best_epoch"), state.get("train_seconds", 0.0)
            if best_epoch is not None and state.get("epochs_count_from") != 1:  # saved by an older version
                best_epoch += 1
            given = model.output_shape[-1]
            if not config.is_denoiser and given != config.num_keypoints:
                raise ValueError(f"--resume: the saved run predicts {given} points, this configuration "
                                 f"{config.num_keypoints}: start a new --out")
            # the schedule as configured now (the same one, or re-planned over a changed number of epochs)
            model.optimizer.learning_rate = learning_rate(config, config.updates_per_epoch(len(splits.train)))
        else:
            model = build()
            model.compile(make_optimizer(config, config.updates_per_epoch(len(splits.train))),
                          loss=config.loss(),
                          metrics=[NME(scheme=config.scheme().to_dict(), readout=config.working_readout())],
                          jit_compile=jit)
    # a resumed run draws new shuffles and jitter (seed moved by the epoch it resumes at): tf.data's
    # random streams restart with the process, and the same seed would replay the first epochs' data
    train_ds = pipeline(splits.train, "train", config.batch_size, config.seed + initial_epoch)
    val_ds = pipeline(splits.validation, "validation", config.batch_size, 0)
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    best_cb = BestCheckpoint(out / "best.keras", best=best, wrap=wrap)
    best_cb.best_epoch = best_epoch
    budget = TimeBudget(config.time_budget_minutes, spent)
    callbacks = [
        AveragedWeights(), budget, best_cb, TrainingState(state_dir, best_cb, budget),
        EpochLog(out / "log.csv", keep_epochs=initial_epoch),
        keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False),
    ]
    if config.visualize_every > 0:
        vis_x, vis_y = next(iter(pipeline(splits.validation.take(range(min(4, len(splits.validation)))),
                                          "validation", 4, 0)))
        callbacks.append(MapVisualizer(vis_x.numpy(), vis_y.numpy(), out / "maps", config.visualize_every,
                                       tensorboard_dir=out / "tensorboard" / "maps"))
    history = {}
    if initial_epoch < config.epochs and not budget.exhausted:
        history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch,
                            steps_per_epoch=config.steps_per_epoch, callbacks=callbacks, verbose=verbose).history
    return history, best_cb.best_epoch, best_cb.best, model, budget.spent


def landmarker_for(config: TrainConfig, network=None) -> Callable[[keras.Model], Landmarker]:
    """The function that turns the trained map model into the saved float32 `Landmarker`, with the
    config's read-out (the preset's until ``"auto"`` picks one after training), keypoint scheme and
    ``network`` (the `ModelConfig` it was built from)."""
    preset = get_preset(config.model)
    chosen = config.working_readout()
    scheme = config.scheme()

    def wrap(model: keras.Model) -> Landmarker:
        return Landmarker(float32_copy(model), chosen, preset.box_formats if scheme.is_standard else None,
                          preset=config.model, keypoints=scheme, network=network)

    return wrap


def mean_nme(model: Landmarker, faces: FaceSet, batch_size: int = 64, readout: str | None = None) -> float:
    """NME (%) of ``model`` (with ``readout``, else its own) on ``faces`` in its keypoint scheme."""
    pred, gt, _ = predict_faceset(model, faces, batch_size, readout)
    return float(100 * per_sample_nme(pred, gt, scheme=model.keypoints).mean())


def pick_readout(model: Landmarker, faces: FaceSet, batch_size: int = 64) -> tuple[str, dict[str, float]]:
    """The read-out with the lowest NME on ``faces`` (the validation split) and every read-out's NME."""
    scores = {readout: mean_nme(model, faces, batch_size, readout) for readout in READOUTS}
    return min(scores, key=scores.get), scores


def training_shapes(faces: FaceSet, batch_size: int = 64) -> np.ndarray:
    """Keypoints (N, K, 2) of ``faces`` in their un-jittered crops (normalised), NaN where unannotated."""
    shapes = []
    for _, y in make_dataset(faces, "test", batch_size=batch_size):
        y = y.numpy()
        shapes.append(np.where(y[..., 2:3] > 0, y[..., :2], np.nan))
    return np.concatenate(shapes)


def keep_if_better(option: str, setting: str, model: Landmarker, without: Landmarker, candidate: Landmarker,
                   splits, config: TrainConfig, summary: dict) -> tuple[Landmarker, bool]:
    """``candidate`` (``model`` with what ``option`` adds) when ``setting`` is "on", or when it scores a lower
    validation NME than ``without`` (``model`` without it; "auto", both NMEs in ``summary[option +
    "_validation_nme"]``), else ``without``; ``summary[option]`` says which. Also: whether the model changed
    (``model`` may already hold an older one, e.g. the best checkpoint of a resumed run)."""
    if setting == "auto":
        scores = {name: mean_nme(m, splits.validation, config.batch_size)
                  for name, m in (("off", without), ("on", candidate))}
        summary[f"{option}_validation_nme"] = scores
        if scores["on"] >= scores["off"]:
            summary[option] = False
            had = getattr(model, option) is not None
            return (without, True) if had else (model, False)
    summary[option] = True
    return candidate, True


def choose_shape_prior(model: Landmarker, splits, config: TrainConfig, summary: dict) -> tuple[Landmarker, bool]:
    """``model`` with a `ShapePrior` of the training faces' shapes (``shape_prior`` "on"), or with it only
    when it lowers the validation NME ("auto"); both NMEs go into ``summary``. Also: whether it changed."""
    if model.num_keypoints < 3:  # a shape of one or two points has no modes beyond pose
        summary["shape_prior"] = False
        return model, False
    candidate = model.with_shape_prior(ShapePrior.from_shapes(training_shapes(splits.train, config.batch_size)))
    return keep_if_better("shape_prior", config.shape_prior, model, model.with_shape_prior(None), candidate,
                          splits, config, summary)


def choose_label_offsets(model: Landmarker, splits, config: TrainConfig, summary: dict) -> tuple[Landmarker, bool]:
    """``model`` with `LabelOffsets` measured on the training faces (``label_offsets`` "on"), or with them only
    when they lower the validation NME ("auto"); both NMEs go into ``summary``. Also: whether it changed."""
    candidate = model.with_label_offsets(measure_label_offsets(model, splits.train, config.batch_size))
    return keep_if_better("label_offsets", config.label_offsets, model, model.with_label_offsets(None), candidate,
                          splits, config, summary)


def test_set_name(config: TrainConfig) -> str:
    """What the run's test faces are, in words (e.g. "AFLW (testing.txt)", "300W helen_test + ibug")."""
    d = config.data
    if d.source == "mtfl":
        return "AFLW (MTFL testing.txt)"
    if d.source == "300w":
        return "300W " + " + ".join(d.test_subsets)
    return str(d.test_root) if d.test_root else "synthetic test faces"


def build_network(config: TrainConfig, source: Landmarker | None = None) -> keras.Model:
    """The network a run starts from: the preset's, or (``init_from``: the trained ``source``) its network
    rebuilt for the run's keypoints with its weights wherever they fit (``model.rcn_config``: its `ModelConfig`)."""
    if config.is_denoiser:
        return build_denoiser(config.model, **config.model_options)
    if not config.init_from:
        return build_model(config.model_config())
    model, _ = for_keypoints(source.backbone, network_of(config, source), config.num_keypoints, config.init_points)
    return model


def network_of(config: TrainConfig, source: Landmarker | None = None) -> ModelConfig:
    """The `ModelConfig` a run trains: the preset's with its options, or that of the ``init_from`` model
    (``source``) with the run's options and point count."""
    if not config.init_from:
        return config.model_config()
    options = {k: v for k, v in config.model_options.items() if k != "num_keypoints"}
    return source.network_config().replace(num_keypoints=config.num_keypoints, **options)


def load_teachers(config: TrainConfig, side: int = MAP_SIZE) -> list[Landmarker]:
    """The ``distill_from`` models, each checked to give the run's point count and to take crops of the
    run's ``side`` or of a multiple of it (a 160x160 teacher of an 80x80 student sees the faces at twice the
    pixels), all of one side (one line naming the model if not)."""
    teachers = []
    for spec in config.distill_from or []:
        teacher = load_landmarker(spec)
        if teacher.num_keypoints != config.num_keypoints:
            raise ValueError(f"distill_from={spec!r} gives {teacher.num_keypoints} points; this run trains "
                             f"{config.num_keypoints}")
        if teacher.input_size % side or (teachers and teacher.input_size != teachers[0].input_size):
            raise ValueError(f"distill_from={spec!r} takes {teacher.input_size}x{teacher.input_size} crops; this "
                             f"run trains on {side}x{side} crops: its teachers must take crops of that side or "
                             f"of one multiple of it")
        teachers.append(teacher)
    return teachers


def check_teachers(config: TrainConfig, dataset, source: Landmarker | None) -> dict:
    """The teachers' maps and the ``--init`` model (``source``) scored on a few training crops
    (`teacher_check`), said on stderr, with a warning where the teachers are no better."""
    checked = teacher_check(dataset, config.scheme(), config.working_readout(), source)
    line = (f"rcn: on {checked['crops']} training crops the teachers' maps score {checked['teacher_nme']:.2f} % NME"
            + (f", the --init model {checked['student_nme']:.2f} %" if "student_nme" in checked else ""))
    print(line, file=sys.stderr)
    if checked.get("student_nme", float("inf")) <= checked["teacher_nme"]:
        print("rcn: warning: the teachers are no better than the --init model on these crops, so distilling them "
              "teaches worse maps; train with the augmentation the teachers learned (e.g. augment.occlusion=false)",
              file=sys.stderr)
    return checked


def calibrate_detectors(model: Landmarker, faces: FaceSet) -> dict:
    """For a keypoint scheme of the user's own: each installed detector's box format for the model's crops,
    measured on the training faces (kept where it finds at least half of them); the measurements."""
    from rcn_keras.detection.registry import installed_detectors

    measured = {}
    policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")  # TensorFlow detectors (MTCNN) build in float32
    try:
        for name in installed_detectors():
            measured[name] = _measure(name, faces)
            if measured[name].get("format") is not None and measured[name]["recall"] >= 0.5:
                model.box_formats[name] = tuple(measured[name]["format"])
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return measured


def _measure(name: str, faces: FaceSet) -> dict:
    from rcn_keras.detection.calibration import measure_on_faces
    from rcn_keras.detection.registry import make_detector

    try:
        return measure_on_faces(make_detector(name), faces)
    except Exception as exc:  # noqa: BLE001  (a detector that cannot run here is left out, said in the summary)
        return {"error": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}


def train(config: TrainConfig, resume: bool = False, verbose: int | str = "auto") -> TrainResult:
    """Run one training run in ``config.output_dir`` (locked against a second process); returns a
    `TrainResult`. ``resume=True`` continues from the last finished epoch (weights and optimizer)."""
    out = pathlib.Path(config.output_dir)
    if config.strategy == "multiworker" and not is_chief():  # every worker shares out; the chief holds it
        return _train_locked(config, out, resume, verbose)
    with FolderLock(out):
        return _train_locked(config, out, resume, verbose)


def accept_resume(config: TrainConfig, out: pathlib.Path) -> None:
    """Check a resumed run against the configuration it was started with (``out/config.json``): a changed
    network, data or recipe is refused with one line naming what differs; the changes `RESUME_SAFE`
    allows are applied and said on stderr."""
    saved_path = out / "config.json"
    if not saved_path.is_file():
        raise ValueError(f"--resume: {out} holds a run without its config.json, so its settings cannot be "
                         f"checked: start a new --out")
    saved = TrainConfig.load(saved_path)
    safe, refused = resume_changes(saved, config)
    if refused:
        raise ValueError(f"--resume: {out} was started with other settings ({describe_changes(refused)}); "
                         f"resume it as it was (rcn train --config {saved_path} --resume) or start a new --out")
    if safe:
        print(f"rcn: resuming {out} with {describe_changes(safe)}", file=sys.stderr)


def _train_locked(config: TrainConfig, out: pathlib.Path, resume: bool, verbose) -> TrainResult:
    state_dir = out / "state"
    if not resume and (state_dir / "state.json").exists():
        raise ValueError(f"{out} already holds a training run; pass resume=True (--resume) to continue it "
                         f"or choose another output folder")
    if resume and (state_dir / "state.json").exists():
        accept_resume(config, out)  # before config.json is rewritten
    atomic_write_bytes(out / "config.json", config.to_json().encode())
    keras.utils.set_random_seed(config.seed)
    policy, jit = _device_switches(config)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        scheme = config.scheme()
        # the model a fine-tuning run starts from: read once, for its network and its weights
        source = load_landmarker(config.init_from) if config.init_from and not config.is_denoiser else None
        network = None if config.is_denoiser else network_of(config, source)
        side = MAP_SIZE if network is None else network.input_size
        splits = load_splits(config.data, config.num_keypoints, scheme.crop, crop_side(side))
        teachers = [] if network is None else load_teachers(config, side)
        teacher_side = teachers[0].input_size if teachers else side
        # teachers of a finer input train the student on the same faces cut for them (`student_crops`)
        finer = (load_splits(config.data, config.num_keypoints, scheme.crop, crop_side(teacher_side)).train
                 if teacher_side != side else None)
        strategy = make_strategy(config.strategy)

        def build():
            return build_network(config, source)

        if config.is_denoiser:
            def pipeline(faces, mode, batch, seed):
                return make_denoiser_dataset(faces, mode, batch, config.n_corrupt, config.augment, seed=seed,
                                             scheme=scheme)
        else:
            map_size = network.map_size if teachers else None

            def pipeline(faces, mode, batch, seed):
                if not (teachers and mode == "train"):
                    return make_dataset(faces, mode, batch, config.augment, seed=seed, scheme=scheme, out_size=side)
                if finer is not None:  # teachers train on the training set: its faces as they see them
                    faces = finer
                ds = make_dataset(faces, mode, batch, config.augment, seed=seed, scheme=scheme, out_size=teacher_side)
                return with_teacher_targets(ds, teachers, scheme.flip if config.distill_flip else None, map_size,
                                            student_side=side)

            if teachers:
                start = source if source is not None and source.num_keypoints == config.num_keypoints else None
                checked = check_teachers(config, pipeline(splits.train, "train", config.batch_size, config.seed),
                                         start)

        wrap = float32_copy if config.is_denoiser else landmarker_for(config, network)
        if config.strategy == "multiworker":
            run = train_multiworker(config, splits, pipeline, build, make_optimizer, out, resume, strategy,
                                    verbose=1 if verbose else 0, wrap=wrap)
            history, best_value = run["history"], run["best"]
            best_epoch = int(np.argmin(history["val_nme"])) + 1 if history.get("val_nme") else None
            model, seconds = run["model"], None
            if not is_chief():  # the chief evaluates and writes the report
                summary = {"model": config.model, "strategy": config.strategy, "history": history,
                           "best_val_nme": best_value, "best_epoch": best_epoch}
                return TrainResult(wrap(model), summary)
        else:
            history, best_epoch, best_value, model, seconds = _fit(config, splits, pipeline, build, strategy,
                                                                   jit, out, state_dir, resume, verbose, wrap)
        best_path = out / "best.keras"
        best_model = keras.saving.load_model(best_path, compile=False) if best_path.exists() else wrap(model)
        summary = {"model": config.model, "epochs": config.epochs, "best_epoch": best_epoch,
                   "best_val_nme": best_value, "val_readout": config.working_readout(),
                   "train_seconds": seconds, "strategy": config.strategy,
                   "precision": policy, "train_faces": len(splits.train),
                   "steps_per_epoch": config.updates_per_epoch(len(splits.train)),
                   "history": {k: [float(v) for v in vals] for k, vals in history.items()}}
        if not config.is_denoiser and teachers:
            summary["teacher_check"] = checked
        test = splits.test or splits.validation
        if config.is_denoiser:
            rows = evaluate_denoiser(best_model, test, batch_size=config.batch_size)
            atomic_write_bytes(out / "report.md", denoiser_table(rows).encode())
            atomic_write_bytes(out / "report.json", json.dumps({"denoiser": rows}, indent=2).encode())
            at_n = min(rows, key=lambda r: abs(r["corrupted"] - config.n_corrupt))
            summary.update(test_nme=at_n["after"], mean_shape_nme=at_n["before"], denoiser=rows)
            atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
            return TrainResult(best_model, summary)
        changed = False
        if config.resolved_readout() == "auto":  # picked on the validation split, never the test set
            chosen, scores = pick_readout(best_model, splits.validation, config.batch_size)
            summary.update(readout=chosen, readout_validation_nme=scores)
            if chosen != best_model.readout:
                best_model, changed = best_model.with_readout(chosen), True
        if config.shape_prior != "off":  # also picked on the validation split
            best_model, prior_changed = choose_shape_prior(best_model, splits, config, summary)
            changed = changed or prior_changed
        if config.label_offsets != "off":  # measured on the training faces, kept by the validation split
            best_model, offsets_changed = choose_label_offsets(best_model, splits, config, summary)
            changed = changed or offsets_changed
        if not scheme.is_standard and is_chief():
            summary["detector_calibration"] = calibrate_detectors(best_model, splits.train)
            changed = changed or any(n in best_model.box_formats for n in summary["detector_calibration"])
        if changed:
            atomic_save_model(best_model, best_path)
        summary["readout"] = best_model.readout
        summary["test_set"] = test_set_name(config) if splits.test else None
        summary["validation_faces"], summary["test_faces"] = len(splits.validation), len(test)
        if splits.test is not None:  # the saved model on un-jittered validation crops (comparable to test)
            summary["validation_nme"] = mean_nme(best_model, splits.validation, config.batch_size)
        pred, gt, _ = predict_faceset(best_model, test, config.batch_size)
        results = {"model": evaluate_predictions(pred, gt, test, scheme=scheme),
                   "mean shape": evaluate_predictions(mean_shape_baseline(splits.train, test), gt, test,
                                                      scheme=scheme)}
        payload = write_report(out, results, {"test_set": "test" if splits.test else "validation",
                                              "readout": best_model.readout})
        first = lambda rows: next(r for r in rows if r["subset"] == "all")  # noqa: E731
        summary["test_nme"] = first(payload["results"]["model"])["nme"]
        if splits.test is None:  # "test_nme" is then the validation split's (kept for older readers)
            summary["validation_nme"] = summary["test_nme"]
        summary["mean_shape_nme"] = first(payload["results"]["mean shape"])["nme"]
        atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
        return TrainResult(best_model, summary)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
