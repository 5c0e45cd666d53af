"""`.keras` and SavedModel round trips give identical outputs; the SavedModel loads without rcn_keras."""

import json
import subprocess
import sys

import numpy as np
import pytest

import keras
import rcn_keras


@pytest.mark.parametrize("name, overrides", [
    ("rcn_300w_released", {"branches": 6}),  # learned upsampling + max-only (incl. the 3x3/2 pool)
    ("sumnet_mtfl", {"weight_per_pixel": True, "dropout": True}),
    ("rcn_mtfl_skip", {"branches": 7, "lcn_floor": "batch"}),
])
def test_keras_round_trip(tmp_path, rng, name, overrides):
    model = rcn_keras.build_model(name, **overrides)
    x = rng.uniform(0, 255, (2, 80, 80, 1)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    readout = rcn_keras.with_readout(loaded, "soft_argmax")
    readout.save(tmp_path / "readout.keras")
    again = keras.saving.load_model(tmp_path / "readout.keras")
    np.testing.assert_array_equal(readout.predict(x, verbose=0)["keypoints"],
                                  again.predict(x, verbose=0)["keypoints"])


def test_saved_model_loads_in_fresh_process_without_rcn_keras(tmp_path, rng):
    model = rcn_keras.build_model("rcn_300w_released", branches=5)
    x = rng.uniform(0, 255, (3, 80, 80, 1)).astype("float32")
    expected = model.predict(x, verbose=0)
    model.export(str(tmp_path / "sm"), verbose=False)
    np.save(tmp_path / "x.npy", x)
    script = f"""
import sys, json, numpy as np, tensorflow as tf
loaded = tf.saved_model.load({str(tmp_path / 'sm')!r})
out = loaded.serve(tf.constant(np.load({str(tmp_path / 'x.npy')!r}))).numpy()
np.save({str(tmp_path / 'y.npy')!r}, out)
print(json.dumps({{"rcn_keras_imported": "rcn_keras" in sys.modules}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rcn_keras_imported": False}
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)
