"""Multi-device and multi-worker training on tf.distribute.

* ``default``: the current (single-device) strategy, `model.fit`.
* ``mirrored``: `tf.distribute.MirroredStrategy` over the local GPUs (or logical CPUs), `model.fit`.
* ``multiworker``: `tf.distribute.MultiWorkerMirroredStrategy` configured from ``TF_CONFIG``. Keras 3's
  `model.fit` fails under it (keras-team/keras#20585, tensorflow/tensorflow#72388), so this module runs
  a custom distributed step (`strategy.run`, `tf.nn.compute_average_loss` over the global batch) with
  the same loss, NME, best-checkpoint, resumable state and CSV log as `fit.train`.

``batch_size`` is always the **global** batch: each of R replicas gets batch_size / R samples, and the
learning rate needs no change (the loss is averaged over the global batch, as on one device).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
import time

import numpy as np
import tensorflow as tf

from rcn_keras.app.training.callbacks import EpochLog, averaged_weights
from rcn_keras.evaluation.nme import per_sample_nme
from rcn_keras.evaluation.report import predict_faceset
from rcn_keras.files import atomic_save_model, atomic_write_bytes
from rcn_keras.runtime import STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called ``name``; ``multiworker`` needs a ``TF_CONFIG`` environment variable."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not allowed; allowed: {STRATEGIES}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ValueError("strategy 'multiworker' needs TF_CONFIG (cluster worker addresses and this "
                         "worker's task index); see the README's multi-worker section")
    try:
        spec = json.loads(tf_config)
        spec["cluster"]["worker"], spec["task"]["index"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"TF_CONFIG is not a valid cluster spec: {tf_config[:200]!r}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def local_cluster(workers: int) -> list[dict]:
    """TF_CONFIG dicts for ``workers`` processes on this machine (127.0.0.1, free ports chosen now)."""
    import socket

    socks = [socket.socket() for _ in range(workers)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()
    return [{"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}} for i in range(workers)]


def is_chief() -> bool:
    """Worker 0 (or a chief task) of TF_CONFIG, or True without one."""
    spec = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = spec.get("task", {})
    return task.get("type", "worker") == "chief" or (task.get("type", "worker") == "worker"
                                                     and task.get("index", 0) == 0
                                                     and "chief" not in spec.get("cluster", {}))


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Auto-shard by element (the pipelines read in-memory tensors, not files)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train_multiworker(config, splits, pipeline, build, make_optimizer, out: pathlib.Path, resume: bool,
                      strategy: tf.distribute.Strategy | None = None, verbose: int = 1, wrap=None) -> dict:
    """The custom distributed training loop; returns the fit-like history and the best validation NME.

    Checkpoints (weights + optimizer, `tf.train.CheckpointManager`) are written by every worker, the
    chief into ``out/state/ckpt`` and the others into throw-away folders (MultiWorkerMirroredStrategy
    needs all workers to take part); only the chief writes ``best.keras`` (atomically), ``state.json``
    and ``log.csv``. A restarted worker restores the latest checkpoint and goes on from its epoch.
    """

    strategy = strategy or make_strategy("multiworker")
    chief = is_chief()
    global_batch = config.batch_size
    steps = config.updates_per_epoch(len(splits.train))
    with strategy.scope():
        model = build()
        optimizer = make_optimizer(config, steps)
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        best_var = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
    loss_fn = config.loss(reduction="none")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, best=best_var)
    state_dir = out / "state"
    ckpt_dir = state_dir / "ckpt" if chief else pathlib.Path(tempfile.mkdtemp(prefix="rcn_worker_ckpt_"))
    manager = tf.train.CheckpointManager(ckpt, str(ckpt_dir), max_to_keep=2)
    latest = tf.train.latest_checkpoint(str(state_dir / "ckpt")) if resume else None
    if latest:
        ckpt.restore(latest)
    train_ds = shard_by_data(pipeline(splits.train, "train", global_batch, config.seed).repeat())
    dist_ds = iter(strategy.experimental_distribute_dataset(train_ds))

    @tf.function
    def train_step(iterator):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(y, logits), global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        x, y = next(iterator)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)

    history: dict[str, list[float]] = {"loss": [], "val_nme": [], "train_seconds": []}
    log = EpochLog(out / "log.csv", keep_epochs=int(epoch_var.numpy())) if chief else None
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        started = time.perf_counter()
        losses = [float(train_step(dist_ds)) for _ in range(steps)]
        history["train_seconds"].append(time.perf_counter() - started)
        with averaged_weights(optimizer):  # validated (and saved below) as the averaged weights, if kept
            pred, gt, _ = predict_faceset(model, splits.validation, global_batch, config.working_readout())
        val_nme = float(100 * per_sample_nme(pred, gt, scheme=config.scheme()).mean())
        history["loss"].append(float(np.mean(losses)))
        history["val_nme"].append(val_nme)
        if verbose:
            print(f"epoch {epoch + 1}/{config.epochs} - loss {np.mean(losses):.4f} - val_nme {val_nme:.3f}",
                  flush=True)
        improved = val_nme < float(best_var.numpy())
        if improved:
            best_var.assign(val_nme)
        epoch_var.assign(epoch + 1)
        manager.save()
        if chief:
            if improved:
                with averaged_weights(optimizer):
                    atomic_save_model(wrap(model) if wrap else model, out / "best.keras")
            atomic_write_bytes(state_dir / "state.json", json.dumps(
                {"epoch": epoch + 1, "best": float(best_var.numpy()), "strategy": "multiworker"}).encode())
            log.on_epoch_end(epoch, {"loss": history["loss"][-1], "val_nme": val_nme})
    if not chief:
        import shutil

        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {"history": history, "best": float(best_var.numpy()), "model": model}
