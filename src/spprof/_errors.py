"""spprof's exception base."""

from __future__ import annotations

__all__ = ["ProfilerError", "ProfilerWarning"]


class ProfilerError(RuntimeError):
    """The profiler could not do what was asked (e.g. no timer could be
    created, or another SIGPROF handler is installed). The program itself is
    unaffected: it keeps running unprofiled."""


class ProfilerWarning(RuntimeWarning):
    """Profiling goes on, but something is missing from the profile (a
    thread without a timer, a thread that blocks SIGPROF, dropped samples)."""
