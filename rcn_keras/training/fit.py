"""`train(config)`: load data, build and compile the model, `model.fit` with checkpoints, resume,
logs and map pictures, then evaluate the best model on the test set against a mean-shape baseline."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import keras
import numpy as np

from rcn_keras.data import datasets
from rcn_keras.data.faceset import FaceSet
from rcn_keras.data.formats import atomic_write_bytes
from rcn_keras.data.pipeline import make_dataset, make_denoiser_dataset
from rcn_keras.data.synthetic import synthetic_faces
from rcn_keras.evaluation.denoiser import denoiser_table, evaluate_denoiser
from rcn_keras.evaluation.report import evaluate_predictions, predict_faceset, write_report
from rcn_keras.models.denoising import build_denoiser
from rcn_keras.models.registry import build_model
from rcn_keras.runtime import resolve_precision
from rcn_keras.training.callbacks import (BestCheckpoint, MapVisualizer, TimeBudget, TrainingState,
                                         load_training_state)
from rcn_keras.training.config import TrainConfig
from rcn_keras.training.distributed import is_chief, make_strategy, train_multiworker
from rcn_keras.training.losses import PixelNLL
from rcn_keras.training.metrics import NME


@dataclasses.dataclass
class Splits:
    train: FaceSet
    validation: FaceSet
    test: FaceSet | None


def load_splits(config: TrainConfig) -> Splits:
    """Train / validation / test face sets for ``config.data`` with the model's keypoint count."""
    d, k = config.data, config.num_keypoints
    if d.source == "synthetic":
        return Splits(synthetic_faces(d.synthetic_train, k, seed=d.seed),
                      synthetic_faces(d.synthetic_validation, k, seed=d.seed + 1),
                      synthetic_faces(d.synthetic_test, k, seed=d.seed + 2))
    if d.source == "300w":
        faces = datasets.load_300w(d.root, d.train_subsets, k, on_error=d.on_error, cache_dir=d.cache_dir)
        train, val = faces.split(d.validation)
        test = (datasets.load_300w(d.root, d.test_subsets, k, on_error=d.on_error, cache_dir=d.cache_dir)
                if d.test_subsets else None)
        return Splits(train, val, test)
    if k != 5:
        raise ValueError(f"MTFL has 5 keypoints but model {config.model!r} predicts {k}")
    faces = datasets.load_mtfl(d.root, "training.txt", on_error=d.on_error, cache_dir=d.cache_dir)
    train, val = faces.split(1000 if len(faces) > 2000 else d.validation)
    test_list = pathlib.Path(d.root) / "testing.txt"
    test = (datasets.load_mtfl(d.root, "testing.txt", on_error=d.on_error, cache_dir=d.cache_dir)
            if test_list.is_file() else None)
    return Splits(train, val, test)


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
    lr = learning_rate(config, steps_per_epoch)
    if config.optimizer == "adadelta":
        return keras.optimizers.Adadelta(lr, rho=config.rho, epsilon=config.epsilon)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr)
    return keras.optimizers.Adam(lr)


def steps_per_epoch(config: TrainConfig, faces: FaceSet) -> int:
    return config.steps_per_epoch or math.ceil(len(faces) / config.batch_size)


def mean_shape_baseline(train: FaceSet, test: FaceSet) -> np.ndarray:
    """Predict the training set's mean (un-jittered) crop shape for every test face."""
    mean = np.concatenate([y.numpy()[..., :2] for _, y in make_dataset(train, "test", 256)]).mean(0)
    return np.broadcast_to(mean, (len(test),) + mean.shape).copy()


def _fit(config, splits, pipeline, build, strategy, jit, out, state_dir, resume, verbose):
    """`model.fit` under ``strategy`` (default or mirrored) with all callbacks; returns
    (history, best epoch, best validation NME, model, training seconds)."""
    with strategy.scope():
        restored = load_training_state(state_dir) if resume else None
        initial_epoch, best, best_epoch, spent = 0, float("inf"), None, 0.0
        if restored is not None:
            model, state = restored
            initial_epoch, best = state["epoch"], state.get("best", float("inf"))
            best_epoch, spent = state.get("best_epoch"), state.get("train_seconds", 0.0)
        else:
            model = build()
            model.compile(make_optimizer(config, steps_per_epoch(config, splits.train)),
                          loss=PixelNLL(config.loss_target), metrics=[NME()], jit_compile=jit)
    # a resumed run draws new shuffles and jitter (seed moved by the epoch it resumes at): tf.data's
    # random streams restart with the process, and the same seed would replay the first epochs' data
    train_ds = pipeline(splits.train, "train", config.batch_size, config.seed + initial_epoch)
    val_ds = pipeline(splits.validation, "validation", config.batch_size, 0)
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    best_cb = BestCheckpoint(out / "best.keras", best=best)
    best_cb.best_epoch = best_epoch
    budget = TimeBudget(config.time_budget_minutes, spent)
    callbacks = [
        budget, best_cb, TrainingState(state_dir, best_cb, budget),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=initial_epoch > 0),
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


def train(config: TrainConfig, resume: bool = False, verbose: int | str = "auto") -> dict:
    """Run one experiment; returns a summary dict (also written to ``output_dir/summary.json``).

    ``resume=True`` continues from the last finished epoch in ``output_dir`` (weights and optimizer).
    """
    out = pathlib.Path(config.output_dir)
    state_dir = out / "state"
    if not resume and (state_dir / "state.json").exists():
        raise ValueError(f"{out} already holds a training run; pass resume=True (--resume) to continue it "
                         f"or choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.json", config.to_json().encode())
    keras.utils.set_random_seed(config.seed)
    policy, jit = _device_switches(config)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        splits = load_splits(config)
        strategy = make_strategy(config.strategy)

        def build():
            return (build_denoiser(config.model, **config.model_options) if config.is_denoiser
                    else build_model(config.model, **config.model_options))

        if config.is_denoiser:
            def pipeline(faces, mode, batch, seed):
                return make_denoiser_dataset(faces, mode, batch, config.n_corrupt, config.augment, seed=seed)
        else:
            def pipeline(faces, mode, batch, seed):
                return make_dataset(faces, mode, batch, config.augment, seed=seed)

        if config.strategy == "multiworker":
            run = train_multiworker(config, splits, pipeline, build, make_optimizer, out, resume, strategy,
                                    verbose=1 if verbose else 0)
            history, best_value = run["history"], run["best"]
            best_epoch = int(np.argmin(history["val_nme"])) if history.get("val_nme") else None
            model, seconds = run["model"], None
            if not is_chief():  # the chief evaluates and writes the report
                return {"model": config.model, "strategy": config.strategy, "history": history,
                        "best_val_nme": best_value, "best_epoch": best_epoch}
        else:
            history, best_epoch, best_value, model, seconds = _fit(config, splits, pipeline, build, strategy,
                                                                   jit, out, state_dir, resume, verbose)
        best_model = keras.saving.load_model(out / "best.keras") if (out / "best.keras").exists() else model
        summary = {"model": config.model, "epochs": config.epochs, "best_epoch": best_epoch,
                   "best_val_nme": best_value, "train_seconds": seconds, "strategy": config.strategy,
                   "history": {k: [float(v) for v in vals]
                                                              for k, vals in history.items()}}
        test = splits.test or splits.validation
        if config.is_denoiser:
            rows = evaluate_denoiser(best_model, test, batch_size=config.batch_size)
            atomic_write_bytes(out / "report.md", denoiser_table(rows).encode())
            atomic_write_bytes(out / "report.json", json.dumps({"denoiser": rows}, indent=2).encode())
            at_n = min(rows, key=lambda r: abs(r["corrupted"] - config.n_corrupt))
            summary.update(test_nme=at_n["after"], mean_shape_nme=at_n["before"], denoiser=rows)
            atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
            return summary
        pred, gt, _ = predict_faceset(best_model, test, config.batch_size, config.readout)
        results = {"model": evaluate_predictions(pred, gt, test),
                   "mean shape": evaluate_predictions(mean_shape_baseline(splits.train, test), gt, test)}
        payload = write_report(out, results, {"test_set": "test" if splits.test else "validation"})
        first = lambda rows: next(r for r in rows if r["subset"] == "all")  # noqa: E731
        summary["test_nme"] = first(payload["results"]["model"])["nme"]
        summary["mean_shape_nme"] = first(payload["results"]["mean shape"])["nme"]
        atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
        return summary
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
