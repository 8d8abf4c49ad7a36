"""The ``spprof`` command line.

Every failure of spprof itself ends as ONE line on stderr that says what to
do, with exit code 2 for bad input and 1 when profiling could not be done;
the profiled program's own exit code and tracebacks are passed through.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from .._errors import ProfilerError
from . import run as _run
from ._options import UsageError

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILURE = 1

# command name -> module with configure(subparsers), split_argv(argv)
_COMMANDS = {"run": _run}


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and a message over several lines; report one."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="spprof",
        description="spprof: a sampling profiler for CPython.",
        epilog="Example: spprof run -o profile.html myscript.py --its-own-flag",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"spprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _COMMANDS.values():
        module.configure(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and args[0] in _COMMANDS else None
    help_hint = f"spprof {command} --help" if command else "spprof --help"
    try:
        target_args: list[str] = []
        if command is not None:
            # The target's arguments must not reach argparse: they may look
            # like spprof's own flags.
            head, target_args = _COMMANDS[command].split_argv(args[1:])
            args = [command, *head]
        parser = _build_parser()
        try:
            ns = parser.parse_args(args)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else 0
        if ns.command is None:
            raise UsageError("missing command (e.g. spprof run script.py)")
        return ns.handler(ns, target_args)
    except UsageError as exc:
        msg = str(exc)
        if not msg.endswith(")"):
            msg += f" (see '{help_hint}')"
        return _fail(msg, EXIT_USAGE)
    except ProfilerError as exc:
        return _fail(f"cannot profile: {exc} (the program was not run)", EXIT_FAILURE)
    except ValueError as exc:
        return _fail(f"{exc} (see '{help_hint}')", EXIT_USAGE)
    except OSError as exc:
        return _fail(f"{exc} (check the path and permissions)", EXIT_FAILURE)
    except KeyboardInterrupt:
        # Ctrl-C outside the target (e.g. while -m imports its package)
        return _run.EXIT_INTERRUPTED


def _fail(message: str, code: int) -> int:
    one_line = " ".join(message.split())
    print(f"spprof: error: {one_line}", file=sys.stderr)
    return code
