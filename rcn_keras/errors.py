"""One-line error messages: what a user sees of an exception from a library we call."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message (its type name when it has none), cut at ``limit``."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
