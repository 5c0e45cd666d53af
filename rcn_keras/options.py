"""The unknown-key check of the option dataclasses built from user dicts (JSON files, ``--set``,
keyword overrides): one error form for all of them."""

from __future__ import annotations

import dataclasses
from typing import Iterable


def check_fields(cls, keys: Iterable[str], what: str, prefix: str = "") -> None:
    """A ValueError naming each of ``keys`` that is not a field of the dataclass ``cls`` (shown as
    ``prefix + key``) and listing the valid ones; ``what`` says what a key is ("model option", ...)."""
    valid = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        raise ValueError(f"unknown {what}(s) {[prefix + k for k in unknown]}; valid: {valid}")
