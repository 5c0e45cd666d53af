"""Training callbacks: best-validation checkpoint (a float32 `Landmarker`), resumable state, the
per-epoch CSV log (all written atomically), the time budget, the pre-softmax map visualiser (PNG grids
and TensorBoard images) and validation on the moving average of the weights."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import pathlib
import time
from typing import Callable

import keras
import numpy as np

from rcn_keras.files import atomic_save_model, atomic_write_bytes
from rcn_keras.grid import argmax_points
from rcn_keras.visualize import figure_to_png, presoftmax_grid


def _averaging(optimizer):
    """The optimizer (inside a loss-scale wrapper) that keeps a moving average of the weights, or None."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(inner, "use_ema", False) and hasattr(inner, "_model_variables_moving_average"):
        return inner
    return None


def swap_averaged_weights(optimizer) -> bool:
    """Exchange the weights and their moving average (Keras' ``use_ema``) in place; False if there is none.
    Swapped twice, everything is as before, so training goes on from its own weights."""
    inner = _averaging(optimizer)
    if inner is None:
        return False
    for weight, average in zip(inner._trainable_variables, inner._model_variables_moving_average):
        if average is not None:
            current = keras.ops.convert_to_numpy(weight)
            weight.assign(average)
            average.assign(current)
    return True


@contextlib.contextmanager
def averaged_weights(optimizer):
    """The model holds the moving average of its weights inside the block (unchanged without one)."""
    swapped = swap_averaged_weights(optimizer)
    try:
        yield
    finally:
        if swapped:
            swap_averaged_weights(optimizer)


class AveragedWeights(keras.callbacks.Callback):
    """Validate on the moving average of the weights where the optimizer keeps one (``weight_average``),
    as `BestCheckpoint` saves it; the state saved for ``--resume`` keeps the weights themselves."""

    def __init__(self):
        super().__init__()
        self._swapped = False

    def on_test_begin(self, logs=None):
        self._swapped = swap_averaged_weights(getattr(self.model, "optimizer", None))

    def on_test_end(self, logs=None):
        if self._swapped:
            swap_averaged_weights(self.model.optimizer)
            self._swapped = False


class BestCheckpoint(keras.callbacks.Callback):
    """Keep the model of the lowest ``monitor`` epoch (model selection, docs/model.md 6), with the moving
    average of its weights where there is one. ``wrap`` turns the trained map model into what is saved
    (the training run saves a float32 `Landmarker`).
    ``best_epoch`` counts from 1, as the screen, ``log.csv`` and ``summary.json`` do."""

    def __init__(self, path: str | os.PathLike, monitor: str = "val_nme", best: float = math.inf,
                 wrap: Callable[[keras.Model], keras.Model] | None = None):
        super().__init__()
        self.path, self.monitor, self.best, self.wrap = pathlib.Path(path), monitor, best, wrap
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            with averaged_weights(getattr(self.model, "optimizer", None)):
                atomic_save_model(self.wrap(self.model) if self.wrap else self.model, self.path)


class TimeBudget(keras.callbacks.Callback):
    """Count training wall time across resumes and stop after the epoch that spends ``minutes``
    (``None``: no limit). A budget per model makes runs of different cost comparable on one machine."""

    def __init__(self, minutes: float | None, spent_seconds: float = 0.0):
        super().__init__()
        self.minutes, self.spent = minutes, float(spent_seconds)
        self._start: float | None = None

    @property
    def exhausted(self) -> bool:
        return self.minutes is not None and self.spent >= 60.0 * self.minutes

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:
            self.spent += time.perf_counter() - self._start
            self._start = None
        if logs is not None:  # wall-clock learning curves: minutes of training at the end of each epoch
            logs["train_minutes"] = self.spent / 60.0
        if self.exhausted:
            self.model.stop_training = True


class TrainingState(keras.callbacks.Callback):
    """After every epoch, save the full model (weights + optimizer) and a JSON state atomically, so that
    an interrupted run resumes from the last finished epoch (`load_training_state`)."""

    def __init__(self, directory: str | os.PathLike, best: BestCheckpoint | None = None,
                 budget: TimeBudget | None = None):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.best, self.budget = best, budget

    def on_epoch_end(self, epoch, logs=None):
        atomic_save_model(self.model, self.directory / "last.keras")
        state = {"epoch": epoch + 1, "epochs_count_from": 1,
                 "logs": {k: float(v) for k, v in (logs or {}).items()}}
        if self.best is not None:
            state.update(best=self.best.best, best_epoch=self.best.best_epoch)
        if self.budget is not None:
            state.update(train_seconds=self.budget.spent, budget_exhausted=self.budget.exhausted)
        atomic_write_bytes(self.directory / "state.json", json.dumps(state, indent=2).encode())


def load_training_state(directory: str | os.PathLike) -> tuple[keras.Model, dict] | None:
    """The model and state saved by `TrainingState`, or ``None`` if there is nothing to resume."""
    directory = pathlib.Path(directory)
    state_path, model_path = directory / "state.json", directory / "last.keras"
    if not (state_path.is_file() and model_path.is_file()):
        return None
    state = json.loads(state_path.read_text())
    return keras.saving.load_model(model_path), state


class MapVisualizer(keras.callbacks.Callback):
    """Every ``every`` epochs, draw a fixed batch's image (predicted vs true points) and pre-softmax maps
    to ``out_dir/maps_epoch_XXXX.png`` and, if given, to a TensorBoard image summary."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, out_dir: str | os.PathLike, every: int = 1,
                 keypoints: list[int] | None = None, tensorboard_dir: str | os.PathLike | None = None):
        super().__init__()
        self.images, self.targets = np.asarray(images), np.asarray(targets)
        self.out_dir, self.every, self.keypoints = pathlib.Path(out_dir), max(1, int(every)), keypoints
        self.tensorboard_dir = tensorboard_dir
        self.written: list[pathlib.Path] = []

    def render(self, epoch: int) -> bytes:
        with averaged_weights(getattr(self.model, "optimizer", None)):
            maps = self.model.predict(self.images, verbose=0)
        pred = np.asarray(argmax_points(maps))
        # a denoiser's inputs are K one-hot maps: show them all in one picture
        shown = self.images if self.images.shape[-1] == 1 else self.images.max(-1, keepdims=True)
        fig = presoftmax_grid(shown, maps, pred, self.targets[..., :2], self.keypoints)
        path = self.out_dir / f"maps_epoch_{epoch + 1:04d}.png"
        png = figure_to_png(fig, path)
        self.written.append(path)
        return png

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        png = self.render(epoch)
        if self.tensorboard_dir is not None:
            import tensorflow as tf

            writer = tf.summary.create_file_writer(str(self.tensorboard_dir))
            with writer.as_default():
                tf.summary.image("presoftmax_maps", tf.image.decode_png(png)[None], step=epoch + 1)
            writer.close()


class EpochLog(keras.callbacks.Callback):
    """The per-epoch log as CSV (``epoch``, counted from 1, then the sorted log keys), rewritten atomically
    after every epoch so that a kill never leaves a torn line; a resumed run keeps the finished epochs'
    rows (a log of an older version, counted from 0, is renumbered)."""

    def __init__(self, path: str | os.PathLike, keep_epochs: int = 0):
        super().__init__()
        self.path = pathlib.Path(path)
        rows = read_log(self.path)
        shift = 1 if any(r["epoch"] == 0 for r in rows) else 0
        self.rows = [{**r, "epoch": int(r["epoch"]) + shift} for r in rows if r["epoch"] + shift <= keep_epochs]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        keys = ["epoch"] + sorted({k for r in self.rows for k in r} - {"epoch"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, keys, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())


def read_log(path: str | os.PathLike) -> list[dict]:
    """The rows of a per-epoch CSV log as dicts of floats (empty when absent); blank cells are left out."""
    path = pathlib.Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in rec.items() if v not in ("", None)} for rec in csv.DictReader(f)]
