"""The ``rcn`` command. Arguments are parsed before TensorFlow is imported, so ``rcn --help`` and
argument errors answer at once; TensorFlow's start-up log lines are hidden unless ``--verbose``.

Every user error (unknown preset, missing path, unreadable model, bad image or option) ends in one line
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from rcn_keras import __version__
from rcn_keras.app.cli import data, evaluate, experiment, export, models, predict, train
from rcn_keras.errors import first_line, os_error_line
from rcn_keras.extras import MissingExtra
from rcn_keras.runtime import import_tensorflow_quietly, prepare_tensorflow_env

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
COMMANDS = (models, data, train, evaluate, predict, export, experiment)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (``rcn CMD: error: ...``) and exit code 2, no usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rcn", description="Recombinator Networks for facial landmarks")
    parser.add_argument("--version", action="version", version=f"rcn-keras {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's and Keras' log lines")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _stop_on_terminate():
    """SIGTERM (``kill``, a scheduler stopping the job) ends the command as Ctrl-C does: partial outputs are
    removed and a training run keeps its last finished epoch. Returns the handler it replaced."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        return None


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or an argument error already printed as one line
        return int(stop.code or 0)
    prepare_tensorflow_env(args.verbose)
    previous = _stop_on_terminate()
    import warnings

    shown = warnings.showwarning
    if not args.verbose:
        warnings.showwarning = _warning_line
    try:
        return _run(args)
    finally:
        warnings.showwarning = shown
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the command's own line (``rcn: warning: ...``), without the library's source line."""
    print(f"rcn: warning: {first_line(message, limit=1000)}", file=sys.stderr)


def _run(args) -> int:
    try:
        if not args.verbose and getattr(args, "needs_tensorflow", True):
            import_tensorflow_quietly()
        return args.func(args)
    except (ValueError, OSError, KeyError, json.JSONDecodeError, MissingExtra) as exc:
        message = os_error_line(exc) if isinstance(exc, OSError) else first_line(exc, limit=1000)
        print(f"rcn: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nrcn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
