"""HDF5 cache of preprocessed face sets (stage A/B output), keyed by a hash of the sources.

Written atomically (temporary file + rename). A cache whose format version or source key differs
from the request is rebuilt, never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Callable

import h5py

from rcn_keras.data.faceset import FaceSet
from rcn_keras.files import atomic_write_with

CACHE_VERSION = 1


def source_key(files: list[pathlib.Path], options: dict) -> str:
    """Hash of the cache format, the options and each source file's path, size and mtime: every file
    a face set is built from (annotations **and** images), so that a changed file is never served
    from a stale cache."""
    h = hashlib.sha256(json.dumps({"version": CACHE_VERSION, "options": options}, sort_keys=True).encode())
    for f in sorted(files):
        try:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:  # missing now: the build reports it; the key must still differ
            h.update(f"{f}|missing\n".encode())
    return h.hexdigest()


def save_faceset(path: str | os.PathLike, faces: FaceSet, key: str) -> None:
    """Write ``faces`` to an HDF5 file atomically, with ``key`` and the format version as attributes."""
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["version"] = CACHE_VERSION
            f.attrs["key"] = key
            f.create_dataset("images", data=faces.images, compression="gzip", compression_opts=1)
            for name in ("keypoints", "rects", "border_codes", "pads"):
                f.create_dataset(name, data=getattr(faces, name))
            f.attrs["names"] = json.dumps(faces.names)
            f.attrs["groups"] = json.dumps(faces.groups)
            f.attrs["skipped"] = json.dumps(faces.skipped)

    atomic_write_with(path, write)


def load_faceset(path: str | os.PathLike, key: str | None = None) -> FaceSet | None:
    """Read a cached face set, or ``None`` if it is missing, unreadable, of another version or key."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("version") != CACHE_VERSION or (key is not None and f.attrs.get("key") != key):
                return None
            arrays = {name: f[name][()] for name in ("images", "keypoints", "rects", "border_codes", "pads")}
            return FaceSet(**arrays, names=json.loads(f.attrs["names"]), groups=json.loads(f.attrs["groups"]),
                           skipped=[tuple(s) for s in json.loads(f.attrs["skipped"])])
    except (OSError, KeyError, ValueError):
        return None


def cached(cache_dir: str | os.PathLike | None, name: str, files: list[pathlib.Path], options: dict,
           build: Callable[[], FaceSet]) -> FaceSet:
    """Load ``name`` from ``cache_dir`` if its key matches, else ``build()`` it and store it."""
    if cache_dir is None:
        return build()
    key = source_key(files, options)
    path = pathlib.Path(cache_dir) / f"{name}.h5"
    faces = load_faceset(path, key)
    if faces is None:
        faces = build()
        save_faceset(path, faces, key)
    return faces
