"""Test settings: quiet TensorFlow, oneDNN as in the CLI, and paths to optional real data."""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # data_fixtures for the tests in sub-folders
SHARED_300W = REPO.parent / "shared" / "data" / "300w"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def shared_300w():
    """The shared real 300W subset, or a skip where it is absent."""
    if not SHARED_300W.is_dir():
        pytest.skip(f"real 300W data not found at {SHARED_300W}")
    return SHARED_300W
