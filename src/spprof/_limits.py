"""Argument checks and limits shared by the API and the command line.

Each check returns the value to use or raises ``ValueError`` naming the
argument and what is allowed. The command line words its own messages from
the same limits (``cli/_options.py``).
"""

from __future__ import annotations

import math
import os

# Milliseconds of CPU (in wall mode also of real) time between samples of a
# thread, to the microsecond. Below HIGH_RES_BELOW_MS only the perf_event
# backend honours the interval (the native layer says so at start: a POSIX
# CPU timer fires at most once per scheduler tick), and wall mode, whose
# reader thread visits every thread each interval, does not go there.
MIN_INTERVAL_MS = 0.1
MAX_INTERVAL_MS = 1000
HIGH_RES_BELOW_MS = 1

# The native layer takes the limit in bytes as an unsigned 64-bit number:
# 2**40 MB (one exbibyte, far beyond any machine's address space) keeps the
# byte count below 2**60, so it can never wrap around to a tiny limit.
MIN_MEMORY_LIMIT_MB = 0.1
MAX_MEMORY_LIMIT_MB = 2**40

BACKENDS = ("auto", "perf_event", "timer_create")
# cpu: CPU time only; wall: real time, off CPU too (each sample's state says which).
from ._states import MODES  # noqa: E402


INTERVAL_RULE = "a number of milliseconds from 0.1 to 1000 (below 1 needs the perf_event backend)"


def interval_or_none(value: float) -> int | float | None:
    """``value`` milliseconds to the microsecond (an int when whole), or
    None when it is outside MIN_INTERVAL_MS..MAX_INTERVAL_MS."""
    if not math.isfinite(value):
        return None
    ms = round(value * 1000) / 1000
    if not MIN_INTERVAL_MS <= ms <= MAX_INTERVAL_MS:
        return None
    return int(ms) if ms.is_integer() else ms


def check_interval(interval_ms: object) -> int | float:
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, (int, float)):
        raise ValueError(f"interval_ms must be {INTERVAL_RULE}, got {interval_ms!r}")
    value = interval_or_none(float(interval_ms))
    if value is None:
        raise ValueError(f"interval_ms must be {INTERVAL_RULE}, got {interval_ms!r}")
    return value


def check_interval_for_mode(interval_ms: float, mode: str) -> None:
    if mode == "wall" and interval_ms < HIGH_RES_BELOW_MS:
        raise ValueError(
            f"interval_ms below {HIGH_RES_BELOW_MS} is for CPU mode only: wall mode samples "
            f"every thread at most every {HIGH_RES_BELOW_MS} ms, got interval_ms={interval_ms!r} "
            f"with mode='wall'"
        )


def memory_limit_ok(memory_limit_mb: float) -> bool:
    return math.isfinite(memory_limit_mb) and MIN_MEMORY_LIMIT_MB <= memory_limit_mb <= MAX_MEMORY_LIMIT_MB


def check_memory_limit(memory_limit_mb: object) -> float:
    if (
        isinstance(memory_limit_mb, bool)
        or not isinstance(memory_limit_mb, (int, float))
        or not memory_limit_ok(memory_limit_mb)
    ):
        raise ValueError(
            f"memory_limit_mb must be a number of megabytes from 0.1 to "
            f"{MAX_MEMORY_LIMIT_MB} (2**40), got {memory_limit_mb!r}"
        )
    return float(memory_limit_mb)


def check_take_over_sigprof(take_over_sigprof: object) -> bool:
    # bool only: "no", "false" or 0.0 are not obviously meant as True or False
    if not isinstance(take_over_sigprof, bool):
        raise ValueError(f"take_over_sigprof must be True or False, got {take_over_sigprof!r}")
    return take_over_sigprof


def check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}, got {backend!r}"
        )
    assert isinstance(backend, str)
    return backend


def check_native(native: object) -> bool | None:
    """``native``: True, False, or None (what ``set_native_unwinding()``
    chose, False by default)."""
    if native is not None and not isinstance(native, bool):
        raise ValueError(f"native must be True, False or None, got {native!r}")
    return native


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    assert isinstance(mode, str)
    return mode


# What can be wrong with an output path before anything runs, as
# (problem, detail); the API and the command line word it their own way.
NUL = "nul"
IS_DIRECTORY = "directory"
NO_DIRECTORY = "no directory"


def output_path_problem(path: str, *, follow_links: bool) -> tuple[str, str] | None:
    """The first thing that rules ``path`` out as an output file, or None."""
    if "\0" in path:
        return NUL, path
    if os.path.isdir(path):
        return IS_DIRECTORY, path
    resolve = os.path.realpath if follow_links else os.path.abspath
    directory = os.path.dirname(resolve(path))
    if not os.path.isdir(directory):
        return NO_DIRECTORY, directory
    return None


def check_output_path(output_path: object) -> str | None:
    if output_path is None:
        return None
    if not isinstance(output_path, (str, os.PathLike)):
        raise ValueError(f"output_path must be a path or None, got {output_path!r}")
    path = os.fspath(output_path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("output_path must not be empty")
    problem = output_path_problem(path, follow_links=False)
    if problem is not None:
        kind, detail = problem
        if kind == NUL:
            raise ValueError(f"output_path must not contain a NUL character, got {path!r}")
        if kind == IS_DIRECTORY:
            raise ValueError(f"output_path is a directory: {path} (give a file name inside it)")
        raise ValueError(f"output_path directory does not exist: {detail}")
    from .writers import format_for_path

    format_for_path(path, default="speedscope")
    return path
