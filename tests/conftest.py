"""Test settings: quiet TensorFlow, oneDNN as in the CLI, paths to optional real data, and a check that
the suite leaves the checkout as it found it (every test writes under a temporary folder)."""

import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # data_fixtures for the tests in sub-folders
SHARED_300W = REPO.parent / "shared" / "data" / "300w"
SHARED_MTFL = REPO.parent / "shared" / "data" / "mtfl"


def checkout_status() -> set[str] | None:
    """``git status --porcelain`` lines of the checkout (untracked and modified files), or ``None``
    outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.splitlines()) if out.returncode == 0 else None


def pytest_sessionstart(session):
    session.config._checkout_before = checkout_status()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when the tests left new or changed files in the checkout."""
    before = getattr(session.config, "_checkout_before", None)
    after = checkout_status()
    if before is None or after is None or session.config.option.collectonly:
        return
    left = sorted(after - before)
    if left:
        print(f"\nthe tests left files in the checkout (write under tmp_path instead): {', '.join(left[:10])}",
              file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def shared_300w():
    """The shared real 300W subset, or a skip where it is absent."""
    if not SHARED_300W.is_dir():
        pytest.skip(f"real 300W data not found at {SHARED_300W}")
    return SHARED_300W


@pytest.fixture
def shared_mtfl():
    """The shared MTFL dataset (training.txt, testing.txt and images), or a skip where it is absent."""
    if not (SHARED_MTFL / "training.txt").is_file():
        pytest.skip(f"real MTFL data not found at {SHARED_MTFL}")
    return SHARED_MTFL


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small untrained 5-point model (rcn_mtfl, 4 branches) saved as a .keras file."""
    from rcn_keras.landmarker import Landmarker

    path = tmp_path_factory.mktemp("m") / "m.keras"
    Landmarker.from_preset("rcn_mtfl", branches=4).save(path)
    return path
