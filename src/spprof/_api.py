"""The public functions: start/stop, pause/resume, stats, thread control.

Arguments are checked here (``_limits``); every session transition is
``_session``'s; ``Profiler`` and ``@profile`` are in ``_profiler``.
"""

from __future__ import annotations

import os

from . import _session, _state
from ._limits import (
    check_backend,
    check_mode,
    check_native,
    check_interval,
    check_interval_for_mode,
    check_memory_limit,
    check_output_path,
    check_take_over_sigprof,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from ._model import Profile
    from ._results import ProfilerStats

__all__ = [
    "ThreadProfiler",
    "is_active",
    "is_paused",
    "pause",
    "register_thread",
    "resume",
    "start",
    "stats",
    "stop",
    "unregister_thread",
]


def start(
    interval_ms: float = 10,
    output_path: str | os.PathLike[str] | None = None,
    memory_limit_mb: float = 100,
    *,
    take_over_sigprof: bool = False,
    backend: str = "auto",
    mode: str = "cpu",
    native: bool | None = None,
) -> None:
    """Start sampling every Python thread of this process.

    ``interval_ms``: time between samples of one thread, 0.1..1000 ms to the
    microsecond: CPU time, and in wall mode also real time off CPU. Below
    1 ms it needs the perf_event backend (``ProfilerError`` where it is not
    available) and CPU mode.
    ``output_path``: where ``stop()`` (or interpreter exit) saves the profile;
    the format follows the extension (speedscope by default).
    ``memory_limit_mb``: cap on the memory spprof uses for samples; past it
    new samples are dropped and counted.
    ``take_over_sigprof``: replace a SIGPROF handler the program already has
    (restored on stop) instead of refusing to start.
    ``backend``: how each thread's CPU time is measured. ``"perf_event"``
    (a task-clock event per thread: exact at any interval, also for threads
    shorter than a scheduler tick; needs perf_event_open), ``"timer_create"``
    (a POSIX CPU timer per thread: checked on scheduler ticks only, so
    intervals below 4 ms become overruns and a thread's last partial tick is
    not sampled), or ``"auto"``: perf_event where allowed, else timer_create.
    ``mode``: ``"cpu"`` samples where CPU time goes; ``"wall"`` where real
    time goes: also the time threads spend blocked, sleeping or waiting for
    the GIL (read without signals, so no blocked call is interrupted), each
    sample marked with its ``state``.
    ``native``: also record the native (C/C++/Cython) frames each sample's
    innermost Python frame called, and the native stacks of threads without
    Python (``ProfilerError`` where native unwinding is not available).
    None: as ``set_native_unwinding()`` chose (off by default).

    Raises ``ValueError`` for bad arguments, ``RuntimeError`` if a session is
    running, :class:`ProfilerError` if sampling cannot start (the program is
    unaffected either way).
    """
    params = {
        "interval_ms": check_interval(interval_ms),
        "memory_limit_mb": check_memory_limit(memory_limit_mb),
        "output_path": check_output_path(output_path),
        "take_over_sigprof": check_take_over_sigprof(take_over_sigprof),
        "backend": check_backend(backend),
        "mode": check_mode(mode),
        "native": check_native(native),
    }
    check_interval_for_mode(params["interval_ms"], params["mode"])
    _session.start_session(params)


def stop() -> Profile:
    """Stop sampling and return the :class:`Profile`.

    If ``start()`` was given an ``output_path`` the profile is saved there
    too; a failed save is reported with a warning and the profile is still
    returned. Raises ``RuntimeError`` when no session is running.
    """
    try:
        return _session.stop_session()
    except BaseException:
        # A Ctrl-C can land as stop_session() is entered, before its own
        # handler: the session ends all the same (a no-op otherwise).
        _session.finish_interrupted_stop()
        raise


def is_active() -> bool:
    """True while a session is running in this process (spprof run's own
    session does not count: the program sees only its own)."""
    return _session.is_active()


def is_paused() -> bool:
    """True while this process's session is paused (see ``pause()``)."""
    return is_active() and _state.native().is_paused()


def pause() -> bool:
    """Disarm every timer (no samples) until ``resume()``. Timers are kept,
    not recreated. Returns False if not running or already paused."""
    return is_active() and _state.native().pause()


def resume() -> bool:
    """Re-arm the timers with the session's interval. Returns False if not
    running or not paused."""
    return is_active() and _state.native().resume()


def stats() -> ProfilerStats:
    """Counters of the running session (or of an idle profiler: zeros)."""
    from ._results import ProfilerStats

    with _state.lock():
        return ProfilerStats.from_native(_state.native().stats())


# -- explicit thread control --------------------------------------------------------


def register_thread() -> bool:
    """Make sure the calling thread is sampled. Threads are found
    automatically; this makes it immediate. Idempotent. Returns True if
    the thread is sampled after the call (False when not profiling or when
    no timer could be created for it)."""
    return is_active() and _state.native().register_thread()


def unregister_thread() -> bool:
    """Stop sampling the calling thread (until it registers again).
    Idempotent. Returns True if the thread was sampled before the call."""
    return is_active() and _state.native().unregister_thread()


class ThreadProfiler:
    """``with ThreadProfiler(): ...`` samples the calling thread inside the
    block and leaves its registration as it was before afterwards."""

    def __init__(self) -> None:
        self._was_registered = False
        self.registered = False

    def __enter__(self) -> ThreadProfiler:
        self._was_registered = is_active() and _state.native().is_thread_registered()
        self.registered = register_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._was_registered:
            unregister_thread()
