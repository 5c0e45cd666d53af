"""Atomic writes: a file or folder appears whole or not at all (temporary sibling, then a rename),
with the permissions a plain ``open(path, "w")`` or ``mkdir`` would give under the current umask.

Temporary siblings are named ``.<name>.<pid>-<random><suffix>``: one left by a killed process (whose pid
is gone) is removed by the next write to the same path. `check_output` is the rule for what an output
path may replace: nothing that exists and is not ours."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import stat
import tempfile
from typing import Callable, Iterator

PathLike = str | os.PathLike


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one we may not signal counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_prefix(path: pathlib.Path) -> str:
    """The name prefix of this process's temporary siblings of ``path``."""
    return f".{path.name}.{os.getpid()}-"


def remove_stale_temporaries(path: PathLike) -> list[pathlib.Path]:
    """Remove the temporary siblings of ``path`` (files or folders) left by processes that are gone, and
    the ``.<name>.old`` folder a killed `atomic_folder` may leave; returns what was removed."""
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)-")
    removed = []
    for sibling in path.parent.glob(f".{glob_escape(path.name)}.*"):
        match = pattern.match(sibling.name)
        stale = (match is not None and not process_alive(int(match.group(1)))) or \
            (sibling.name == f".{path.name}.old" and path.exists())
        if stale:
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters matched literally."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def check_output(path: PathLike, kind: str, what: str, ours: Callable[[pathlib.Path], bool] | None = None,
                 option: str = "--out", overwrite: bool = False) -> pathlib.Path:
    """The rule for an output ``path`` (``kind`` "file" or "folder", holding ``what``, e.g. "TFLite model"):
    a new path, an empty folder, or something ``ours(path)`` recognises as an earlier output of the same
    kind may be written (with ``overwrite``: any regular file, any folder); anything else that exists
    (another file, a folder with other files, a device or pipe) is refused with one line naming
    ``option`` and the path. A link to a file is followed. Returns the path to write."""
    path = pathlib.Path(path)
    if path.is_symlink() and path.is_file():
        path = path.resolve()
    if not os.path.lexists(path):
        return path
    mode = os.stat(path).st_mode if path.exists() else 0
    advice = f"remove it, choose another {option} or pass --overwrite"
    if overwrite:
        ours = None if kind == "folder" else (lambda _: True)
    if kind == "file":
        if stat.S_ISDIR(mode):
            raise ValueError(f"{option} {path} is a folder; a {what} is one file: give a file name")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{option} {path} exists and is not a regular file: {advice}")
        if ours is not None and not ours(path):
            raise ValueError(f"{option} {path} exists and is not a {what}: {advice}")
        return path
    if not stat.S_ISDIR(mode):
        raise ValueError(f"{option} {path} exists and is not a folder: a {what} is a folder; {advice}")
    if any(path.iterdir()) and not overwrite and (ours is None or not ours(path)):
        raise ValueError(f"{option} {path} holds other files: a {what} is written to a new or empty folder "
                         f"(or over an earlier {what}); {advice}")
    return path


def ensure_folder(path: PathLike, option: str = "--out") -> pathlib.Path:
    """Create the output folder ``path`` (and its parents); one line naming ``option`` when it is a file."""
    path = pathlib.Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise ValueError(f"{option} {path} is a file: it must be a folder (a new one, or one of our outputs)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"{option} {path}: a part of this path is a file, not a folder") from None
    except PermissionError:
        raise ValueError(f"{option} {path}: no permission to create this folder") from None
    return path


def temporary_sibling(path: pathlib.Path, suffix: str = ".tmp") -> pathlib.Path:
    """A new empty temporary file beside ``path`` (renamed onto it when complete); removes stale ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a normal write gives 0666 & ~umask
    return pathlib.Path(tmp)


def atomic_write_with(path: PathLike, write: Callable[[pathlib.Path], None], suffix: str = ".tmp") -> pathlib.Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    ``suffix`` keeps the extension writers such as ``model.save`` insist on (e.g. ".keras").
    """
    path = pathlib.Path(path)
    tmp = temporary_sibling(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # named by the file the user asked for, not the temporary one
        tmp.unlink(missing_ok=True)
        if type(exc).__module__ == "builtins" and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise
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
    remove_stale_temporaries(path)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=temporary_prefix(path), dir=path.parent))
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
