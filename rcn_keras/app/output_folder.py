"""The rule for a command's output folder: a new or empty folder, or one the same command wrote, may be
written; a folder holding anything else is refused with one line unless the user passes ``--overwrite``.

A command marks its folder with ``.rcn-output`` (JSON: ``{"command": "predict", "version": ...}``); folders
written before the mark existed are recognised by their files (`RECOGNISERS`)."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Callable

from rcn_keras import __version__
from rcn_keras.files import atomic_write_text, ensure_folder

MARKER = ".rcn-output"  # JSON inside; no .json suffix, so that a glob of *.json finds only outputs
LOCK = ".lock"  # `FolderLock`'s file: it says nothing of who wrote the folder


def _json_keys(path: pathlib.Path, *keys: str) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and all(k in data for k in keys)


# command -> whether an unmarked folder is an earlier output of it (written before the mark existed)
RECOGNISERS: dict[str, Callable[[pathlib.Path], bool]] = {
    "train": lambda p: (p / "config.json").is_file() and ((p / "state").is_dir() or (p / "summary.json").is_file()),
    "evaluate": lambda p: not (p / "config.json").exists() and _json_keys(p / "report.json", "results"),
    "predict": lambda p: _json_keys(p / "keypoints.json", "schema") or any(
        _json_keys(f, "schema", "frames") for f in p.glob("*_keypoints.json")),  # photos, or videos
    "experiment": lambda p: _json_keys(p / "results.json", "experiment", "results") or (p / "splits").is_dir(),
}


def folder_owner(folder: str | os.PathLike) -> str | None:
    """The command that wrote ``folder`` (its mark, else `RECOGNISERS`), or ``None``."""
    path = pathlib.Path(folder)
    try:
        data = json.loads((path / MARKER).read_text())
        if isinstance(data, dict) and isinstance(data.get("command"), str):
            return data["command"]
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    if not path.is_dir():
        return None
    return next((command for command, recognise in RECOGNISERS.items() if recognise(path)), None)


def check_folder(folder: str | os.PathLike, command: str, overwrite: bool = False, option: str = "--out") -> str | None:
    """One line (a ValueError) unless ``folder`` may take the output of ``rcn command``: it is new, empty,
    written by this command, or ``overwrite`` is given. Returns the command that wrote it (or ``None``)."""
    path = pathlib.Path(folder)
    if os.path.lexists(path) and not path.is_dir():
        raise ValueError(f"{option} {path} is a file: it must be a folder (a new one, or an earlier "
                         f"`rcn {command}` output)")
    owner = folder_owner(path) if path.is_dir() else None
    if path.is_dir() and owner != command and not overwrite:
        if any(p.name not in (MARKER, LOCK) for p in path.iterdir()):
            held = f"an `rcn {owner}` output" if owner else "files that rcn did not write"
            raise ValueError(f"{option} {path} holds {held}, not an earlier `rcn {command}` output: choose a new or "
                             f"empty folder, or pass --overwrite to write into it (files of the same names are "
                             f"replaced)")
    return owner


def claim_folder(folder: str | os.PathLike, command: str, overwrite: bool = False, option: str = "--out"
                 ) -> pathlib.Path:
    """`check_folder`, then create ``folder`` and mark it as the output of ``rcn command``."""
    owner = check_folder(folder, command, overwrite, option)
    path = ensure_folder(folder, option)
    if owner != command or not _json_keys(path / MARKER, "command"):
        atomic_write_text(path / MARKER, json.dumps({"command": command, "version": __version__}) + "\n")
    return path


def is_unused(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds nothing but its mark and lock (a command that wrote nothing)."""
    return all(p.name in (MARKER, LOCK) for p in pathlib.Path(folder).iterdir())
