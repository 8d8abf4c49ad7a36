"""Options of ``spprof run`` and the one place where they are checked together."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from datetime import datetime

from .._groups import GROUP_ABOVE
from .._limits import (
    BACKENDS,
    HIGH_RES_BELOW_MS,
    IS_DIRECTORY,
    MAX_MEMORY_LIMIT_MB,
    MODES,
    NUL,
    interval_or_none,
    memory_limit_ok,
    output_path_problem,
)
from ..writers import format_for_path, formats, get_writer

DEFAULT_FORMAT = "html"
STDOUT = "-"


class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit code 2."""


@dataclass(frozen=True)
class _Option:
    flags: tuple[str, ...]
    takes_value: bool
    kwargs: dict


# One table drives both argparse and the split of the command line into
# spprof's options and the target's arguments, so they cannot disagree on
# which flags consume the next word.
RUN_OPTIONS: tuple[_Option, ...] = (
    _Option(
        ("-o", "--output"),
        True,
        dict(
            metavar="PATH",
            help="where to write the profile (default: spprof-<name>-<time>.<ext> in the "
            "current directory; '-' writes to stdout)",
        ),
    ),
    _Option(
        ("-f", "--format"),
        True,
        dict(
            metavar="FORMAT",
            help="html, speedscope, pprof, collapsed or text (default: from the output "
            "file's extension, else html)",
        ),
    ),
    _Option(
        ("-i", "--interval"),
        True,
        dict(
            metavar="MS",
            help="milliseconds between samples of a thread (of CPU time; in wall mode "
            "also of time off CPU), 0.1..1000, below 1 with the perf_event backend "
            "only (default 10)",
        ),
    ),
    _Option(
        ("-r", "--rate"),
        True,
        dict(metavar="HZ", help="samples per CPU second of a thread (instead of --interval)"),
    ),
    _Option(
        ("--mode",),
        True,
        dict(
            metavar="MODE",
            help="cpu: where CPU time goes (default); wall: where real time goes, also "
            "while threads are blocked, sleeping or waiting for the GIL",
        ),
    ),
    _Option(
        ("--backend",),
        True,
        dict(
            metavar="NAME",
            help="how each thread's CPU time is measured: auto (default: perf_event where "
            "allowed, else timer_create), perf_event or timer_create",
        ),
    ),
    _Option(
        ("--native",),
        False,
        dict(
            action="store_true",
            help="also record native (C/C++/Cython) frames: what each sample's innermost "
            "Python frame called, and the stacks of threads without Python",
        ),
    ),
    _Option(
        ("--idle",),
        False,
        dict(
            dest="idle",
            action="store_const",
            const=True,
            help="wall mode: show the time threads spend off CPU (the default)",
        ),
    ),
    _Option(
        ("--no-idle",),
        False,
        dict(
            dest="idle",
            action="store_const",
            const=False,
            help="wall mode: leave the time off CPU out of the outputs",
        ),
    ),
    _Option(
        ("--memory-limit",),
        True,
        dict(metavar="MB", help="memory spprof may use for samples (default 100)"),
    ),
    _Option(
        ("--threads",),
        False,
        dict(
            dest="thread_view",
            action="store_const",
            const="threads",
            help="show each thread on its own (by default reports show each thread up to "
            f"{GROUP_ABOVE} threads, and above that groups of threads whose names differ "
            "only by numbers)",
        ),
    ),
    _Option(
        ("--thread-groups",),
        False,
        dict(
            dest="thread_view",
            action="store_const",
            const="groups",
            help="show groups of threads whose names differ only by numbers",
        ),
    ),
    _Option(
        ("--no-threads",),
        False,
        dict(
            dest="thread_view",
            action="store_const",
            const="merged",
            help="merge all threads into one",
        ),
    ),
    _Option(("-q", "--quiet"), False, dict(action="store_true", help="print no summary")),
)

_VALUE_FLAGS = frozenset(f for opt in RUN_OPTIONS if opt.takes_value for f in opt.flags)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    for opt in RUN_OPTIONS:
        parser.add_argument(*opt.flags, **opt.kwargs)
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module, like python -m")
    parser.add_argument("script", nargs="?", help="the script to run")


def split_run_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``run``'s arguments into (what argparse should see, the target's
    arguments). Everything after the script name or ``-m MODULE`` belongs to
    the target untouched, even words that look like spprof's own flags."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            if i + 1 < len(argv):
                return argv[:i] + ["--", argv[i + 1]], argv[i + 2 :]
            return argv[:i], []
        if tok == "-m":
            return argv[: i + 2], argv[i + 2 :]
        if tok.startswith("-m") and not tok.startswith("--"):
            # python accepts "-mpkg.mod" too
            return argv[:i] + ["-m", tok[2:]], argv[i + 1 :]
        if tok == STDOUT or not tok.startswith("-"):
            # "--" keeps argparse from reading a script named like a flag
            return argv[:i] + ["--", tok], argv[i + 1 :]
        if tok.startswith("--"):
            i += 2 if tok in _VALUE_FLAGS else 1
        else:
            i += 2 if tok[:2] in _VALUE_FLAGS and len(tok) == 2 else 1
    return argv, []


@dataclass(frozen=True)
class RunConfig:
    script: str | None  # exactly one of script / module is set
    module: str | None
    target_args: list[str]
    interval_ms: float
    memory_limit_mb: float
    format: str
    output: str  # STDOUT for standard output
    merge_threads: bool
    threads: str  # one of _groups.THREAD_VIEWS
    quiet: bool
    mode: str = "cpu"  # one of _limits.MODES
    idle: bool = True  # wall mode: outputs show the time off CPU
    backend: str = "auto"  # one of _limits.BACKENDS
    native: bool = False  # native frames in the samples



def target_name(script: str | None, module: str | None) -> str:
    """The name a default output file is called after."""
    if module is not None:
        return module
    base = os.path.basename(os.path.normpath(script or ""))
    return base[:-3] if base.endswith(".py") else base or "script"


def _bad_interval(text: str) -> UsageError:
    return UsageError(
        f"bad interval: {text!r} (give milliseconds from 0.1 to 1000, e.g. -i 10 or -i 0.5; "
        "below 1 needs the perf_event backend)"
    )


def _parse_interval(text: str) -> float:
    try:
        value = interval_or_none(float(text))
    except ValueError:
        raise _bad_interval(text) from None
    if value is None:
        raise _bad_interval(text)
    return value


def _parse_rate(text: str) -> float:
    """Rate in Hz -> interval in ms, which is what the sampler takes."""
    hint = (
        f"bad rate: {text!r} (give samples per second from 1 to 10000, e.g. -r 100; "
        "above 1000 needs the perf_event backend)"
    )
    try:
        hz = float(text)
    except ValueError:
        raise UsageError(hint) from None
    if not math.isfinite(hz) or not 1 <= hz <= 10000:
        raise UsageError(hint)
    value = interval_or_none(1000.0 / hz)
    if value is None:
        raise UsageError(hint)
    return value


def _parse_memory_limit(text: str | None) -> float:
    if text is None:
        return 100.0
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not memory_limit_ok(mb):
        raise UsageError(
            f"bad memory limit: {text!r} (give megabytes from 0.1 to {MAX_MEMORY_LIMIT_MB}, "
            "e.g. --memory-limit 200)"
        )
    return mb


def file_safe(name: str) -> str:
    """``name`` usable inside a file name on any platform."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "script"


def _default_output(name: str, fmt: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"spprof-{file_safe(name)}-{stamp}{get_writer(fmt).extension}"


def check_output_path(path: str) -> None:
    """Fail before the target runs, rather than after it, when the profile
    could not be written (spprof._files.check_output_target tries what the
    save will do; os.access says yes to root everywhere)."""
    from .._files import check_output_target

    found = output_path_problem(path, follow_links=True)
    if found is not None:
        kind, detail = found
        if kind == NUL:
            raise UsageError(f"output path contains a NUL character: {path!r}")
        if kind == IS_DIRECTORY:
            raise UsageError(f"output path is a directory: {path} (give a file name with -o)")
        raise UsageError(
            f"output directory does not exist: {detail} (create it or choose another -o path)"
        )
    problem = check_output_target(path)
    if problem is not None:
        raise UsageError(f"{problem} (choose another -o path)")


def validate_run(ns: argparse.Namespace, target_args: list[str]) -> RunConfig:
    """Every check of ``spprof run``'s options, alone and in combination.

    Raises :class:`UsageError` with a message that says what to change."""
    if ns.script is None and ns.module is None:
        raise UsageError(
            "missing script or module (usage: spprof run [options] script.py [args...] "
            "or spprof run [options] -m module [args...])"
        )
    if ns.script is not None and ns.module is not None:
        raise UsageError(
            f"give either a script or -m module, not both ({ns.script!r} and -m {ns.module})"
        )
    if ns.module is not None and not ns.module.strip():
        raise UsageError("missing module name after -m (e.g. spprof run -m mypackage.main)")
    if ns.script is not None and not _is_runnable(ns.script):
        if os.path.isdir(ns.script):
            raise UsageError(
                f"not a script: {ns.script} is a directory without __main__.py (check the path)"
            )
        raise UsageError(f"script not found: {ns.script} (check the path)")

    if ns.interval is not None and ns.rate is not None:
        raise UsageError("give either -i/--interval or -r/--rate, not both")
    if ns.rate is not None:
        interval = _parse_rate(ns.rate)
    elif ns.interval is not None:
        interval = _parse_interval(ns.interval)
    else:
        interval = 10
    memory_limit = _parse_memory_limit(ns.memory_limit)
    mode = "cpu" if ns.mode is None else ns.mode
    if mode not in MODES:
        raise UsageError(f"--mode must be cpu or wall, got {ns.mode!r}")
    if mode == "wall" and interval < HIGH_RES_BELOW_MS:
        raise UsageError(
            f"intervals below {HIGH_RES_BELOW_MS} ms are for --mode cpu only "
            f"(wall mode samples every thread at most every {HIGH_RES_BELOW_MS} ms)"
        )
    backend = "auto" if ns.backend is None else ns.backend
    if backend not in BACKENDS:
        raise UsageError(
            f"--backend must be {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}, got {ns.backend!r}"
        )
    if ns.idle is not None and mode != "wall":
        raise UsageError(
            f"--{'idle' if ns.idle else 'no-idle'} applies to --mode wall only "
            "(CPU mode samples only threads that run)"
        )

    available = formats()
    output = ns.output
    if output is not None:
        output = os.path.expanduser(output)
        if not output:
            raise UsageError("empty output path (give a file name with -o, or '-' for stdout)")
    if ns.format is not None:
        fmt = ns.format.lower()
        if fmt not in available:
            raise UsageError(
                f"unknown format: {ns.format!r} (choose one of: {', '.join(available)})"
            )
    elif output == STDOUT:
        fmt = "text" if "text" in available else DEFAULT_FORMAT
    elif output is not None:
        fmt = format_for_path(output, default=DEFAULT_FORMAT) or DEFAULT_FORMAT
    else:
        fmt = DEFAULT_FORMAT
    if fmt not in available:
        raise UsageError(
            f"format {fmt!r} is not available here (choose one of: {', '.join(available)})"
        )

    if output is None:
        output = _default_output(target_name(ns.script, ns.module), fmt)
    if output != STDOUT:
        check_output_path(output)
    return RunConfig(
        script=ns.script,
        module=ns.module,
        target_args=list(target_args),
        interval_ms=interval,
        memory_limit_mb=memory_limit,
        format=fmt,
        output=output,
        merge_threads=ns.thread_view == "merged",
        threads=ns.thread_view or "auto",
        quiet=ns.quiet,
        mode=mode,
        idle=ns.idle is not False,
        backend=backend,
        native=bool(ns.native),
    )


def _is_runnable(path: str) -> bool:
    # python runs files, and directories or zip files holding __main__.py
    if os.path.isfile(path):
        return True
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "__main__.py"))
