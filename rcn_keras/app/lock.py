"""`FolderLock`: one process at a time in an output folder (a training run, an experiment row).

``<folder>/.lock`` holds the host and pid of its holder. A lock whose process is gone (same host) is
stale and taken over, so a crashed run never leaves a folder stuck; a lock of another host is
respected (the folder may be on a shared file system) and must be removed by hand if its run is dead.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket

from rcn_keras.files import ensure_folder, process_alive


class FolderInUse(ValueError):
    """The folder is locked by another live process."""


class FolderLock:
    def __init__(self, folder: str | os.PathLike, what: str = "a training run"):
        self.path = pathlib.Path(folder) / ".lock"
        self.what = what
        self.held = False

    def holder(self) -> dict | None:
        """``{"host", "pid"}`` of the lock's holder, or ``None`` when there is no lock."""
        try:
            data = json.loads(self.path.read_text() or "{}")
            return {"host": str(data.get("host", "")), "pid": int(data.get("pid", 0))}
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, AttributeError):
            return {"host": "", "pid": 0}  # unreadable: treated as stale

    def _alive(self, holder: dict) -> bool:
        if holder["host"] and holder["host"] != socket.gethostname():
            return True  # cannot check another machine's processes
        return process_alive(holder["pid"])

    def acquire(self) -> bool:
        """Take the lock; ``False`` when a live process (or another host) holds it."""
        ensure_folder(self.path.parent)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and self._alive(holder):
                    return False
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
            self.held = True
            return True
        return False

    def held_by_another(self) -> bool:
        """Whether a live process (or another host) holds the lock now."""
        holder = self.holder()
        return holder is not None and self._alive(holder)

    def describe(self) -> str:
        holder = self.holder() or {}
        return f"process {holder.get('pid', '?')} on {holder.get('host') or 'this machine'}"

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        if not self.acquire():
            raise FolderInUse(f"{self.path.parent} is in use by {self.describe()} ({self.what}): wait for it to finish, "
                             f"or choose another output folder (remove {self.path} if that run is dead)")
        return self

    def __exit__(self, *exc) -> None:
        self.release()
