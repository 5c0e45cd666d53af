"""tools/wider_context.py (the jaw-context experiment): every split's crop square grows about its centre."""
import os
import pathlib
import subprocess
import sys

import numpy as np

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "wider_context.py"
PROBE = """
import sys, numpy as np
from rcn_keras.data.sources import DataConfig, load_splits
s = load_splits(DataConfig(source="synthetic", synthetic_train=4, synthetic_validation=2, synthetic_test=2), 68)
np.save(sys.argv[1], s.validation.rects)
"""


def _rects(tmp_path, context):
    script, out = tmp_path / "probe.py", tmp_path / f"rects{context}.npy"
    script.write_text(PROBE)
    env = {**os.environ, "RCN_CONTEXT": str(context), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, str(TOOL), str(script), str(out)], check=True, env=env)
    return np.load(out)


def test_rectangles_grow_about_their_centres(tmp_path):
    plain, wide = _rects(tmp_path, 1.3), _rects(tmp_path, 1.5)
    np.testing.assert_allclose(wide[:, 2], plain[:, 2] * 1.5 / 1.3, rtol=1e-5)
    np.testing.assert_allclose(wide[:, :2] + wide[:, 2:] / 2, plain[:, :2] + plain[:, 2:] / 2, atol=1e-3)


def test_refuses_a_context_the_loose_crop_cannot_hold():
    run = subprocess.run([sys.executable, str(TOOL), "rcn"], env={**os.environ, "RCN_CONTEXT": "2"},
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "[1.3, 1.7]" in run.stderr
