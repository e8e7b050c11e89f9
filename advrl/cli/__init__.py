"""``advrl`` command line: a thin layer over the Python API.

One module per group of commands (train, studies, analysis, recipes, data), each adding its
parsers; nothing here imports torch before :func:`main` has set the threads (advrl.threads).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from advrl import registry, threads  # neither imports torch (see main)
from advrl.cli import analysis, data, recipes, studies, train

COMMAND_GROUPS = (train, analysis, studies, recipes, data)  # the order of `advrl --help`


def _expected_errors() -> tuple[type[BaseException], ...]:
    from advrl.compare import CompareError
    from advrl.data.dataset import DatasetError
    from advrl.learner.checkpoint import CheckpointError
    from advrl.learner.update import NonFiniteLossError
    from advrl.probe import ProbeError
    from advrl.recipe import RecipeError
    from advrl.sweep import SweepError

    return (RecipeError, registry.RegistryError, DatasetError, CompareError, SweepError, ProbeError, CheckpointError, NonFiniteLossError, FileNotFoundError)


class _Parser(argparse.ArgumentParser):
    """Options may stand between a command's positionals: ``advrl sweep R.yaml --out D seed=0,1``
    and ``advrl train R.yaml --vectorize seed=0,1`` parse as the user means them (plain argparse
    takes the overrides for unrecognised arguments once an option has come between)."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        # argparse's intermixed parsing calls parse_known_args itself, and supports no subcommands:
        # used for the leaf parsers (one per command), once per call
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="advrl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before any command imports torch: OpenMP reads its variables once, when torch starts
    threads.prepare_environment()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _expected_errors() as err:
        print(f"advrl: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` & co., which stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
            raise
        # a run or sweep folder that cannot be written: name it instead of a traceback
        print(
            f"advrl: error: cannot write {err.filename or 'a file'} ({err.strerror}); make that folder writable "
            "or choose another one (--run-dir, --out, MINARI_DATASETS_PATH).",
            file=sys.stderr,
        )
        return 1

