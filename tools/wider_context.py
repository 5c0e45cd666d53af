"""Experiment (issue 47, the jaw's context): the network's crop widened from the landmark box x 1.3 to x RCN_CONTEXT
about the same centre, in training and in evaluation alike; runs `rcn ...` or a benchmark script with every
`load_splits` giving the wider stage-B rectangles. Not a library feature: the shipped models keep 1.3.

    RCN_CONTEXT=1.5 python tools/wider_context.py rcn train --init rcn-300w-hr --data 300w --root DATA ...
    RCN_CONTEXT=1.5 python tools/wider_context.py benchmarks/self_training.py runs/ctx15 --results context15
"""
import dataclasses
import os
import runpy
import sys

import numpy as np

import rcn_keras.data.sources as sources
from rcn_keras.data.crop import W300_STAGE_A_ENLARGE, W300_STAGE_B_ENLARGE


def _refuse(line: str) -> None:
    """One line on stderr and exit code 2, as the CLI does for bad input."""
    print(f"wider_context: {line}", file=sys.stderr)
    sys.exit(2)


try:
    CONTEXT = float(os.environ["RCN_CONTEXT"])
except (KeyError, ValueError):
    _refuse("set RCN_CONTEXT to the crop's enlargement of the landmark box, e.g. 1.5")
if not W300_STAGE_B_ENLARGE <= CONTEXT <= W300_STAGE_A_ENLARGE:
    _refuse(f"RCN_CONTEXT must lie in [{W300_STAGE_B_ENLARGE}, {W300_STAGE_A_ENLARGE}] (the loose crop holds no more)")
if len(sys.argv) < 2:
    _refuse("give what to run: `rcn ...` or a script and its arguments")
FACTOR = CONTEXT / W300_STAGE_B_ENLARGE
_orig = sources.load_splits


def _wider(faces):
    """``faces`` with each stage-B square grown by FACTOR about its centre (the loose crop, x 1.7, holds it)."""
    if faces is None:
        return None
    r = np.asarray(faces.rects, np.float32).copy()
    grow = (FACTOR - 1.0) / 2.0 * r[:, 2]
    r[:, 0] -= grow
    r[:, 1] -= grow
    r[:, 2] *= FACTOR
    return dataclasses.replace(faces, rects=r)


def load_splits(*a, **k):
    """`sources.load_splits` with every split's rectangles widened."""
    s = _orig(*a, **k)
    return sources.Splits(_wider(s.train), _wider(s.validation), _wider(s.test))


sources.load_splits = load_splits
import rcn_keras.app.training.fit as fit  # noqa: E402
fit.load_splits = load_splits
print(f"context: stage-B rectangles x {FACTOR:.4f}", file=sys.stderr)
if sys.argv[1] == "rcn":
    from rcn_keras.app.cli.main import main
    sys.exit(main(sys.argv[2:]))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
