"""Optional packages (the pip extras): import one, or fail with one line that names the extra to install."""

from __future__ import annotations

import importlib


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the pip extra that installs it."""

    def __init__(self, what: str, package: str, extra: str):
        super().__init__(f"{what} needs the optional package {package!r}: pip install 'rcn-keras[{extra}]'")


def require(module: str, what: str, package: str, extra: str):
    """``module`` imported, or `MissingExtra` saying that ``what`` needs ``package`` from ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(what, package, extra) from None
