"""Atomic writes: a file or folder appears whole or not at all (temporary sibling, then a rename),
with the permissions a plain ``open(path, "w")`` or ``mkdir`` would give under the current umask."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import Callable, Iterator

PathLike = str | os.PathLike


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_sibling(path: pathlib.Path, suffix: str = ".tmp") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a normal write gives 0666 & ~umask
    return pathlib.Path(tmp)


def atomic_write_with(path: PathLike, write: Callable[[pathlib.Path], None], suffix: str = ".tmp") -> pathlib.Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    ``suffix`` keeps the extension writers such as ``model.save`` insist on (e.g. ".keras").
    """
    path = pathlib.Path(path)
    tmp = _temporary_sibling(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: PathLike, text: str) -> pathlib.Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_model(model, path: PathLike) -> pathlib.Path:
    """``model.save`` to a `.keras` file atomically (never a half-written model file)."""
    return atomic_write_with(path, lambda tmp: model.save(tmp), suffix=".tmp.keras")


@contextlib.contextmanager
def atomic_folder(path: PathLike) -> Iterator[pathlib.Path]:
    """Yield an empty temporary folder beside ``path``; when the block ends without error it replaces
    ``path`` (an existing folder is moved aside first, then deleted), else it is deleted."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
