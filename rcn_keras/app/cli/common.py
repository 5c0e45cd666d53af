"""Argument types shared by the sub-commands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1, with the bad text named in the error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (not nan or inf), with the bad text named in the error."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_overwrite_option(parser: argparse.ArgumentParser, replaced: str) -> None:
    """``--overwrite``: write to --out even when it holds something this command did not write there."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"write to --out even when it holds files this command did not write ({replaced})")
