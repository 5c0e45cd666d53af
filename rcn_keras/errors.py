"""One-line error messages: what a user sees of an exception from a library we call."""

from __future__ import annotations

import errno

# What to do about the operating system's errors a user meets, by errno.
OS_ADVICE = {errno.ENOSPC: "no space left on the device: free some space or write elsewhere (--out)",
             errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere (--out)",
             errno.EACCES: "permission denied: choose a place you may read or write (--out)",
             errno.EPERM: "operation not permitted: choose a place you may write (--out)",
             errno.EROFS: "read-only file system: write elsewhere (--out)",
             errno.ENOTDIR: "a part of this path is a file, not a folder (--out must be a folder)",
             errno.EISDIR: "a folder where a file was expected",
             errno.ENOENT: "not found",
             errno.EEXIST: "a file is in the way: a part of this path exists and is not a folder",
             errno.ENAMETOOLONG: "file name too long"}


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``exc``'s message (its type name when it has none), cut at ``limit``."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def os_error_line(exc: OSError) -> str:
    """An `OSError` as one line naming the file and saying what to do (``[Errno 28] ...`` otherwise)."""
    advice = OS_ADVICE.get(exc.errno) if isinstance(exc.errno, int) else None
    if advice is None or type(exc).__module__ != "builtins":  # not a plain system error (ours have text)
        return first_line(exc, limit=1000)
    name = exc.filename if exc.filename is not None else ""
    return f"{name}: {advice}" if name else advice
