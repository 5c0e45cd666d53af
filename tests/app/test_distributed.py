"""tf.distribute training: MirroredStrategy on 2 logical CPUs matches one device; two local
MultiWorkerMirroredStrategy workers (127.0.0.1, free ports) end with identical weights; a restarted
worker resumes from the chief's checkpoint; a worker saves the moving average of the weights. Every
process runs with a time limit and is always ended."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TINY = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
import rcn_keras
from rcn_keras.app.training import distributed, preset_train_config, train

def config(out, strategy, epochs=2, **extra):
    return preset_train_config(
        "rcn_mtfl", epochs=epochs, batch_size=16, steps_per_epoch=2, output_dir=out, strategy=strategy,
        precision="float32", **extra,
        visualize_every=100, **{"data.synthetic_train": 32, "data.synthetic_validation": 8,
        "data.synthetic_test": 8, "model_options": {"branches": 4}, "augment.occlusion": False})
"""


def run_python(code: str, env: dict | None = None, timeout: int = 420) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    code = TINY + textwrap.dedent(f"""
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        single = train(config({str(tmp_path / 'single')!r}, "default"), verbose=0)
        mirrored = train(config({str(tmp_path / 'mirrored')!r}, "mirrored"), verbose=0)
        print(json.dumps({{"single": single["history"]["loss"], "mirrored": mirrored["history"]["loss"],
                          "replicas": distributed.make_strategy("mirrored").num_replicas_in_sync}}))
    """)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    np.testing.assert_allclose(out["mirrored"], out["single"], rtol=2e-3)


WORKER = TINY + """
out, weights_path = sys.argv[1], sys.argv[2]
epochs, resume = int(sys.argv[3]), sys.argv[4] == "1"
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
result = train(config(out, "multiworker", epochs, **extra), resume=resume, verbose=0)
summary = result.summary  # the trained weights, as this worker holds them:
np.savez(weights_path, *[np.asarray(v) for v in result.model.weights])
print(json.dumps({"loss": summary["history"]["loss"]}))
"""


def start_workers(tmp_path, n, epochs=2, resume=False, **extra):
    from rcn_keras.app.training.distributed import local_cluster

    procs = []
    for i, tf_config in enumerate(local_cluster(n)):
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "run"), str(tmp_path / f"w{i}.npz"), str(epochs),
             "1" if resume else "0", json.dumps(extra)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def wait_all(procs, timeout=420):
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return outs


def test_two_local_workers_end_with_identical_weights(tmp_path):
    wait_all(start_workers(tmp_path, 2))
    a, b = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(a.files) == len(b.files) > 0
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    run = tmp_path / "run"
    assert (run / "best.keras").is_file() and json.loads((run / "state" / "state.json").read_text())["epoch"] == 2
    assert (run / "report.md").is_file()  # written by the chief only


def test_restarted_worker_resumes_from_last_checkpoint(tmp_path):
    wait_all(start_workers(tmp_path, 1, epochs=1))
    (out1,) = wait_all(start_workers(tmp_path, 1, epochs=2, resume=True))
    loss = json.loads(out1[0].strip().splitlines()[-1])["loss"]
    assert len(loss) == 1  # only the second epoch ran
    run = tmp_path / "run"
    assert json.loads((run / "state" / "state.json").read_text())["epoch"] == 2
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs


def test_strategy_errors(monkeypatch):
    from rcn_keras.app.training.distributed import make_strategy

    with pytest.raises(ValueError, match="allowed"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not a valid cluster spec"):
        make_strategy("multiworker")


def test_worker_saves_the_moving_average_of_the_weights(tmp_path):
    """``weight_average`` in the custom loop: after one epoch of two updates ``best.keras`` holds
    0.9 w1 + 0.1 w2, not the weights w2 the same run without averaging saves."""
    import keras

    from rcn_keras.landmarker import load_landmarker

    saved = {}
    for name, extra in (("plain", {}), ("averaged", {"weight_average": 0.9})):
        wait_all(start_workers(tmp_path / name, 1, epochs=1, **extra))
        saved[name] = [keras.ops.convert_to_numpy(v)
                       for v in load_landmarker(tmp_path / name / "run" / "best.keras").weights]
    assert max(float(np.abs(a - b).max()) for a, b in zip(saved["plain"], saved["averaged"])) > 1e-4
