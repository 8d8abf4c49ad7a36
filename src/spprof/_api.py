"""The public profiling API: start/stop, Profiler, @profile, thread control."""

from __future__ import annotations

import atexit
import functools
import inspect
import math
import os
import platform as _platform
import sys
import threading
import warnings
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, overload

from . import _signals
from . import _threads
from ._errors import ProfilerError, ProfilerWarning
from ._model import Frame, Profile, name_module_code

__all__ = [
    "Profiler",
    "ProfilerStats",
    "ThreadProfiler",
    "is_active",
    "is_paused",
    "pause",
    "profile",
    "register_thread",
    "resume",
    "start",
    "stats",
    "stop",
    "unregister_thread",
]

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.RLock()


class _SessionInfo:
    """What the Python layer remembers about the running session."""

    def __init__(self, interval_ms: int, output_path: str | None, memory_limit_mb: float) -> None:
        self.interval_ms = interval_ms
        self.output_path = output_path
        self.memory_limit_mb = memory_limit_mb
        self.start_time = datetime.now(timezone.utc)
        self.start_wall_ns = 0
        self.owner_pid = os.getpid()
        # Set on spprof run's own session, which the program's API calls
        # do not see (see "sessions inside spprof run" below).
        self.host: _HostState | None = None
        # Set on the program's own session while it runs inside the host's.
        self.nested_in: _HostState | None = None
        self.params: dict[str, Any] = {}  # start() arguments, to continue it
        self.earlier: list[Profile] = []  # parts recorded before a restart


_session: _SessionInfo | None = None


_native_module: Any = None


def _native() -> Any:
    # Imported once and kept: an import on every call would run importlib's
    # Python code (where a Ctrl-C can land) in start() and stop().
    global _native_module
    if _native_module is None:
        from . import _native as native

        _native_module = native
    return _native_module


def _reconcile() -> None:
    """Forget a session the native core no longer runs: a Ctrl-C that
    landed right after the native stop (or an interrupted start) can leave
    the Python side behind. Lock held."""
    global _session
    session = _session
    if (
        session is not None
        and session.owner_pid == os.getpid()
        and session.host is None
        and session.nested_in is None
        and not _native().is_active()
    ):
        _session = None
    if _session is None:
        try:
            _threads.uninstall()
        finally:
            _signals.session_stopped()


# -- argument checks -----------------------------------------------------------


def _check_interval(interval_ms: object) -> int:
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, int):
        if isinstance(interval_ms, float) and math.isfinite(interval_ms) and interval_ms.is_integer():
            interval_ms = int(interval_ms)
        else:
            raise ValueError(
                f"interval_ms must be a whole number of milliseconds from 1 to 1000, "
                f"got {interval_ms!r}"
            )
    assert isinstance(interval_ms, int)
    if not 1 <= interval_ms <= 1000:
        raise ValueError(
            f"interval_ms must be a whole number of milliseconds from 1 to 1000, got {interval_ms}"
        )
    return interval_ms


# The native layer takes the limit in bytes as an unsigned 64-bit number:
# 2**40 MB (one exbibyte, far beyond any machine's address space) keeps the
# byte count below 2**60, so it can never wrap around to a tiny limit.
MAX_MEMORY_LIMIT_MB = 2**40


def _check_memory_limit(memory_limit_mb: object) -> float:
    if (
        isinstance(memory_limit_mb, bool)
        or not isinstance(memory_limit_mb, (int, float))
        or not math.isfinite(memory_limit_mb)
        or not 0.1 <= memory_limit_mb <= MAX_MEMORY_LIMIT_MB
    ):
        raise ValueError(
            f"memory_limit_mb must be a number of megabytes from 0.1 to "
            f"{MAX_MEMORY_LIMIT_MB} (2**40), got {memory_limit_mb!r}"
        )
    return float(memory_limit_mb)


def _check_take_over_sigprof(take_over_sigprof: object) -> bool:
    # bool only: "no", "false" or 0.0 are not obviously meant as True or False
    if not isinstance(take_over_sigprof, bool):
        raise ValueError(f"take_over_sigprof must be True or False, got {take_over_sigprof!r}")
    return take_over_sigprof


BACKENDS = ("auto", "perf_event", "timer_create")


def _check_backend(backend: object) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}, got {backend!r}"
        )
    assert isinstance(backend, str)
    return backend


def _check_output_path(output_path: object) -> str | None:
    if output_path is None:
        return None
    if not isinstance(output_path, (str, os.PathLike)):
        raise ValueError(f"output_path must be a path or None, got {output_path!r}")
    path = os.fspath(output_path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("output_path must not be empty")
    if "\0" in path:
        raise ValueError(f"output_path must not contain a NUL character, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"output_path is a directory: {path} (give a file name inside it)")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"output_path directory does not exist: {directory}")
    from .writers import format_for_path

    format_for_path(path, default="speedscope")
    return path


def _warn(message: str) -> None:
    warnings.warn(message, ProfilerWarning, stacklevel=2)


def _thread_names() -> dict[int, str]:
    names = {}
    for t in threading.enumerate():
        tid = getattr(t, "native_id", None)
        if tid:
            names[tid] = t.name
    return names


# -- start / stop ----------------------------------------------------------------


def start(
    interval_ms: int = 10,
    output_path: str | os.PathLike[str] | None = None,
    memory_limit_mb: float = 100,
    *,
    take_over_sigprof: bool = False,
    backend: str = "auto",
) -> None:
    """Start sampling every Python thread of this process.

    ``interval_ms``: CPU time between samples of one thread (1..1000).
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

    Raises ``ValueError`` for bad arguments, ``RuntimeError`` if a session is
    running, :class:`ProfilerError` if sampling cannot start (the program is
    unaffected either way).
    """
    global _session
    interval = _check_interval(interval_ms)
    limit = _check_memory_limit(memory_limit_mb)
    path = _check_output_path(output_path)
    take_over = _check_take_over_sigprof(take_over_sigprof)
    backend = _check_backend(backend)
    native = _native()
    was_active = native.is_active()
    try:
        _start_locked(interval, path, limit, take_over, backend)
    except BaseException:
        # A Ctrl-C can arrive anywhere in here, even as start() returns: a
        # session this call created must not go on behind the program's back.
        if not was_active and native.is_active():
            _abandon_session()
        raise


def _start_locked(interval: int, path: str | None, limit: float, take_over: bool, backend: str) -> None:
    global _session
    with _lock:
        _reconcile()
        if _session is not None and _session.owner_pid == os.getpid():
            if _session.host is None:
                raise RuntimeError("the profiler is already running; call spprof.stop() first")
            # spprof run profiles this program: its own session runs inside
            _start_nested(
                {
                    "interval_ms": interval,
                    "output_path": path,
                    "memory_limit_mb": limit,
                    "take_over_sigprof": take_over,
                    "backend": backend,
                }
            )
            return
        native = _native()
        global _unfinished
        _unfinished = None  # a profile nobody asked for again (see _stop)
        info = _SessionInfo(interval, path, limit)
        info.start_wall_ns = _wall_ns()
        native.start(
            interval_ns=interval * 1_000_000,
            memory_limit_bytes=int(limit * 1024 * 1024),
            take_over_sigprof=take_over,
            warning_category=ProfilerWarning,
            backend=backend,
        )
        _session = info
        _signals.session_started()
        _threads.install()
        _ensure_process_hooks()
        _stop_late_session_when_handler_returns()


def _abandon_session() -> None:
    """Stop a session whose start() was interrupted, discarding it."""
    global _session
    native = _native()
    try:
        if native.is_active():
            native.stop()
    finally:
        _session = None
        try:
            _threads.uninstall()
        finally:
            _signals.session_stopped()


def _platform_string() -> str:
    u = os.uname()
    return f"{u.sysname}-{u.release}-{u.machine}"


def _wall_ns() -> int:
    import time

    return time.time_ns()


def stop() -> Profile:
    """Stop sampling and return the :class:`Profile`.

    If ``start()`` was given an ``output_path`` the profile is saved there
    too; a failed save is reported with a warning and the profile is still
    returned. Raises ``RuntimeError`` when no session is running.
    """
    try:
        return _stop()
    except BaseException:
        # Interrupted (Ctrl-C) anywhere in stop(): the session ends all the
        # same (its profile is lost), then the interrupt goes on.
        _finish_interrupted_stop()
        raise


def _finish_interrupted_stop() -> None:
    with _lock:
        session = _session
        if (
            session is not None
            and session.owner_pid == os.getpid()
            and session.host is None
            and session.nested_in is None
            and _native().is_active()
        ):
            _native().stop()
        _reconcile()


# A session whose stop() ran out of memory while building the profile:
# (its info, the native result if it was built). The samples are kept and
# the next stop() returns the profile.
_unfinished: tuple[_SessionInfo, Any] | None = None

_KEPT_FOR_RETRY = (
    "not enough memory to build the profile; the session has ended and its samples are "
    "kept: call spprof.stop() again once memory is available to get the profile"
)


def _stop() -> Profile:
    global _session, _unfinished
    with _lock:
        _reconcile()
        if _unfinished is not None and (_session is None or _session.owner_pid != os.getpid()):
            info, raw = _unfinished
        else:
            # spprof run's own session is not the program's to stop
            if _session is None or _session.owner_pid != os.getpid() or _session.host is not None:
                raise RuntimeError("the profiler is not running; call spprof.start() first")
            if _session.nested_in is not None:
                return _stop_nested()
            info, raw = _session, None
        native = _native()
        if raw is None:
            try:
                raw = native.stop()
            except MemoryError:
                if native.has_unbuilt_result():
                    _unfinished = (info, None)
                    raise MemoryError(_KEPT_FOR_RETRY) from None
                _unfinished = None
                raise
            finally:
                # Interrupted before the native stop: still running, nothing
                # changes. After it: the session is over whatever else happens.
                if not native.is_active() and _session is info:
                    _session = None
                    try:
                        _threads.uninstall()
                    finally:
                        _signals.session_stopped()
        try:
            prof = _profile_from_native(raw, info)
            if info.earlier:
                prof = _joined([*info.earlier, prof])
        except MemoryError:
            _unfinished = (info, raw)
            raise MemoryError(_KEPT_FOR_RETRY) from None
        _unfinished = None
    if info.output_path is not None:
        _save_or_warn(prof, info.output_path)
    return prof


def _save_or_warn(prof: Profile, path: str) -> None:
    try:
        prof.save(path)
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"spprof: could not save the profile to {path}: {exc}; "
            "the returned Profile is intact, call profile.save() with another path",
            RuntimeWarning,
            stacklevel=3,
        )


def is_active() -> bool:
    """True while a session is running in this process (spprof run's own
    session does not count: the program sees only its own)."""
    session = _session  # read once: another thread may end the session meanwhile
    return (
        session is not None
        and session.owner_pid == os.getpid()
        and session.host is None
        and _native().is_active()
    )


def is_paused() -> bool:
    """True while this process's session is paused (see ``pause()``)."""
    return is_active() and _native().is_paused()


def pause() -> bool:
    """Disarm every timer (no samples) until ``resume()``. Timers are kept,
    not recreated. Returns False if not running or already paused."""
    return is_active() and _native().pause()


def resume() -> bool:
    """Re-arm the timers with the session's interval. Returns False if not
    running or not paused."""
    return is_active() and _native().resume()


# -- stats ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfilerStats:
    """The profiler's own health, measured."""

    active: bool
    paused: bool
    backend: str
    interval_ms: float
    collected_samples: int  # resolved and stored
    dropped_samples: int  # lost: buffer full or memory limit reached
    timer_overruns: int  # expirations folded into other samples' weights
    timer_create_failures: int
    sigprof_blocked_threads: int  # threads seen blocking SIGPROF (not sampled)
    registered_threads: int
    duration_ms: float
    effective_rate_hz: float  # samples per second of sampled CPU time
    signals: int  # SIGPROFs received from our timers
    handler_cpu_ms: float  # time spent in the signal handler, summed
    service_cpu_ms: float  # CPU of spprof's service thread
    process_cpu_ms: float  # CPU of the whole process during the session
    overhead_percent: float  # (handler + service) / process CPU
    memory_bytes: int
    walk_errors: int
    truncated_stacks: int
    no_thread_state: int
    raw: dict[str, Any]

    @classmethod
    def from_native(cls, raw: dict[str, Any]) -> ProfilerStats:
        interval_ms = raw.get("interval_ns", 0) / 1e6
        handler_ms = raw["handler_ns"] / 1e6
        service_ms = raw["service_cpu_ns"] / 1e6
        process_ms = raw["process_cpu_ns"] / 1e6
        captured = raw["captured_samples"]
        cpu_ms = (captured + raw["timer_overruns"]) * interval_ms
        return cls(
            active=bool(raw["active"]),
            paused=bool(raw["paused"]),
            backend=raw.get("backend", "timer_create"),
            interval_ms=interval_ms,
            collected_samples=raw["collected_samples"],
            dropped_samples=raw["buffer_dropped"] + raw["memory_dropped"],
            timer_overruns=raw["timer_overruns"],
            timer_create_failures=raw["timer_create_failures"],
            sigprof_blocked_threads=raw["sigprof_blocked_threads"],
            registered_threads=raw["registered_threads"],
            duration_ms=raw["duration_ns"] / 1e6,
            effective_rate_hz=captured / (cpu_ms / 1000.0) if cpu_ms > 0 else 0.0,
            signals=raw["signals"],
            handler_cpu_ms=handler_ms,
            service_cpu_ms=service_ms,
            process_cpu_ms=process_ms,
            overhead_percent=100.0 * (handler_ms + service_ms) / process_ms if process_ms > 0 else 0.0,
            memory_bytes=raw["memory_bytes"],
            walk_errors=raw["walk_errors"],
            truncated_stacks=raw["truncated_stacks"],
            no_thread_state=raw["no_thread_state"],
            raw=dict(raw),
        )


def stats() -> ProfilerStats:
    """Counters of the running session (or of an idle profiler: zeros)."""
    with _lock:
        return ProfilerStats.from_native(_native().stats())


# -- native result -> Profile ------------------------------------------------------


_RESULT_ONLY = frozenset(
    ("strings", "frames", "stacks", "timestamps", "thread_ids", "stack_ids", "weights", "thread_names")
)


def _profile_from_native(raw: dict[str, Any], info: _SessionInfo) -> Profile:
    strings: list[str] = raw["strings"]
    fcols = array("q")
    fcols.frombytes(raw["frames"])
    # Module-level code is named after its module while sys.path is still
    # the one the profiled code imported with.
    frames = name_module_code(
        [
            Frame(strings[fcols[i]], strings[fcols[i + 1]], fcols[i + 2])
            for i in range(0, len(fcols), 3)
        ]
    )
    scols = array("q")
    scols.frombytes(raw["stacks"])
    parents = scols[0::2]
    leaf_frames = scols[1::2]

    columns = {}
    for key in ("timestamps", "thread_ids", "stack_ids", "weights"):
        col = array("q")
        col.frombytes(raw[key])
        columns[key] = col

    # Native stack ids name trie nodes; keep the ones samples use, as
    # root-first tuples of Frame.
    built: dict[int, tuple[Frame, ...]] = {0: ()}

    def stack_tuple(sid: int) -> tuple[Frame, ...]:
        chain = []
        while sid not in built:
            chain.append(sid)
            sid = parents[sid]
        base = built[sid]
        for node in reversed(chain):
            base = base + (frames[leaf_frames[node]],)
            built[node] = base
        return base

    remap: dict[int, int] = {}
    stacks: list[tuple[Frame, ...]] = []
    indices = array("q")
    for sid in columns["stack_ids"]:
        idx = remap.get(sid)
        if idx is None:
            idx = remap[sid] = len(stacks)
            stacks.append(stack_tuple(sid))
        indices.append(idx)

    # Monotonic capture times -> wall-clock nanoseconds since the epoch.
    offset = info.start_wall_ns - raw["start_monotonic_ns"]
    timestamps = array("q", (t + offset for t in columns["timestamps"]))
    end_time = info.start_time + timedelta(microseconds=raw["duration_ns"] / 1000)
    prof = Profile.from_columns(
        start_time=info.start_time,
        end_time=end_time,
        interval_ms=info.interval_ms,
        stacks=stacks,
        timestamps_ns=timestamps,
        thread_ids=columns["thread_ids"],
        stack_indices=indices,
        weights=columns["weights"],
        thread_names=dict(raw["thread_names"]),
        dropped_count=raw["buffer_dropped"] + raw["memory_dropped"],
        python_version=_platform.python_version(),
        # Not platform.platform(): it runs `uname -p` in a subprocess, a
        # fork of the program at every first stop().
        platform=_platform_string(),
    )
    prof.stats = ProfilerStats.from_native({k: v for k, v in raw.items() if k not in _RESULT_ONLY})
    return prof


# -- process hooks ----------------------------------------------------------------

_hooks_installed = False


def _ensure_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    native = _native()
    # The parent's hooks are the native functions themselves: no Python code
    # of spprof runs inside os.fork(), so the service thread is restarted
    # (from a pending call) only after os.fork() counted the process's
    # threads for its "multi-threaded" warning (3.13 counts after the hooks).
    os.register_at_fork(
        before=native.before_fork,
        after_in_parent=native.after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
    # os.exec*: nothing of the session may reach the new image (a pending
    # SIGPROF there would end it); a C audit hook sees the exec coming.
    native.install_exec_hook()


def _stop_at_exit() -> None:
    global _exit_hook_ran
    _exit_hook_ran = True
    if _detached is not None:
        # spprof run ended without handing the program's session back: it
        # ends here, saved like any other
        _host_release()
    if _session is None or _session.owner_pid != os.getpid():
        return
    try:
        if _session.host is not None:
            _host_stop()  # spprof run did not get to stop it; nobody reads it
        else:
            stop()
    except Exception as exc:  # never turn the program's exit into a traceback
        print(f"spprof: could not stop the profiler at exit: {exc}", file=sys.stderr)


# The exit hook that stops (and saves) a session still running at exit.
# atexit runs handlers last-registered-first, and a handler registered while
# the handlers run is never called. Registered when spprof is imported, the
# hook runs after every handler registered later, so it sees sessions those
# start. A session started after the hook ran (from a handler registered
# before spprof was imported, or when spprof itself is first imported at
# exit) is stopped when the handler that started it returns.
def _exiting() -> bool:
    # threading marks the main thread stopped just before atexit runs
    return not threading.main_thread().is_alive()


_exit_hook_ran = False
_exit_hook_registered_late = _exiting()
atexit.register(_stop_at_exit)


def _stop_late_session_when_handler_returns() -> None:
    """For a session started after the exit hook ran: stop it (saving it to
    its output_path) when the outermost function of this thread returns,
    i.e. the exit handler that started it."""
    if not (_exit_hook_ran or _exit_hook_registered_late) or not _exiting():
        return
    root = sys._getframe()
    while root.f_back is not None:
        root = root.f_back
    previous = sys.getprofile()
    if previous is not None and not callable(previous):
        _warn(
            "spprof: a session started this late at exit is not saved automatically "
            "while another profiler is active; call spprof.stop()"
        )
        return

    def watch(frame: Any, event: str, arg: Any) -> None:
        if previous is not None:
            previous(frame, event, arg)
        if event == "return" and frame is root:
            sys.setprofile(previous)
            _stop_at_exit()

    sys.setprofile(watch)


def _after_fork_in_child() -> None:
    """The child inherits memory but no timers: start clean, unprofiled."""
    global _session, _lock
    _lock = threading.RLock()  # the parent's lock may be held by a thread that is not here
    _threads.uninstall()
    if _session is not None:
        _session = None
        try:
            _native().after_fork_in_child()
        except Exception:
            pass


# -- sessions inside spprof run ------------------------------------------------------
#
# ``spprof run`` profiles the whole program with a session of its own (the
# "host"), which the program's own API calls do not see: is_active() is
# False, stop() says nothing is running. When the program starts a session
# of its own (start(), Profiler, @profile), the host's native session is
# stopped (its samples kept) and the program's starts with the program's
# arguments; when the program stops it, it gets a Profile of exactly its
# window, and the host resumes. The host's profile joins all the parts, so it
# covers the program's session too. If the program's session is still
# running when spprof run stops, it goes on alone, as it would without
# spprof run, until the program stops it or exits.


class _HostState:
    def __init__(self, params: dict[str, Any], trim: Callable[[Profile], Profile] | None) -> None:
        self.params = params  # start() arguments, to resume
        self.trim = trim  # cuts spprof run's own frames from a Profile
        self.parts: list[Profile] = []
        self.owner_pid = os.getpid()

    def trimmed(self, prof: Profile) -> Profile:
        if self.trim is None:
            return prof
        out = self.trim(prof)
        out.stats = prof.stats
        return out


_host: _HostState | None = None


def _host_start(
    interval_ms: int, memory_limit_mb: float, trim: Callable[[Profile], Profile] | None = None
) -> None:
    """Start spprof run's session (raises as start() does)."""
    global _host
    params: dict[str, Any] = {"interval_ms": interval_ms, "memory_limit_mb": memory_limit_mb}
    with _lock:
        start(**params)
        assert _session is not None
        state = _HostState(params, trim)
        _session.host = state
        _host = state


def _host_stop() -> Profile:
    """Stop spprof run's session; its Profile covers every part, the
    program's own sessions included."""
    global _host
    with _lock:
        state = _host
        if state is None or state.owner_pid != os.getpid():
            raise RuntimeError("spprof run's session is not running")
        _host = None
        current = _session if _session is not None and _session.owner_pid == os.getpid() else None
        if current is not None and current.host is state:
            current.host = None
            state.parts.append(stop())
        elif current is not None and current.nested_in is state:
            _detach_nested(current, state)
        # else: the host could not resume after a session of the program's
        if not state.parts:
            raise RuntimeError("spprof run's session recorded nothing")
        return _joined(state.parts)


def _host_release() -> None:
    """After spprof run has written its profile: a session of the program's
    that was running when the host stopped goes on (spprof's own writing is
    not in it)."""
    global _detached
    with _lock:
        detached, _detached = _detached, None
        if detached is None or detached[0].owner_pid != os.getpid():
            return
        info, earlier = detached
        try:
            start(**info.params)
        except Exception as exc:
            _warn(f"spprof: could not continue the program's profiling session: {exc}")
            if info.output_path is not None:
                _save_or_warn(_joined(earlier), info.output_path)
            return
        assert _session is not None
        _session.earlier = earlier
        _session.params = info.params


def _start_nested(params: dict[str, Any]) -> None:
    """start() of the program's own session while the host runs (the
    caller holds _lock)."""
    assert _session is not None and _session.host is not None
    state = _session.host
    _session.host = None
    state.parts.append(stop())
    try:
        start(**params)
    except BaseException:
        _resume_host(state)
        raise
    _session.nested_in = state
    _session.params = params


def _stop_nested() -> Profile:
    """stop() of the program's own session inside the host's (the caller
    holds _lock)."""
    info = _session
    assert info is not None and info.nested_in is not None
    state = info.nested_in
    path = info.output_path
    info.nested_in = None
    info.output_path = None
    part = stop()
    state.parts.append(part)
    _resume_host(state)
    prof = state.trimmed(part)
    if path is not None:
        _save_or_warn(prof, path)
    return prof


def _resume_host(state: _HostState) -> None:
    try:
        start(**state.params)
    except Exception as exc:  # the program goes on; the rest is not in the profile
        _warn(f"spprof: could not resume profiling the program: {exc}")
        return
    assert _session is not None
    _session.host = state


# The program's session that was running when the host stopped, with its
# part so far, until _host_release continues it.
_detached: tuple[_SessionInfo, list[Profile]] | None = None


def _detach_nested(info: _SessionInfo, state: _HostState) -> None:
    """The host ends while the program's own session runs: the session so
    far goes into the host's profile, and the program's goes on alone once
    spprof run has written its profile (see _host_release)."""
    global _detached
    path = info.output_path
    info.nested_in = None
    info.output_path = None
    part = stop()
    info.output_path = path
    state.parts.append(part)
    _detached = (info, [*info.earlier, state.trimmed(part)])


_SUMMED_NEVER = frozenset(("active", "paused", "interval_ns", "last_create_errno", "backend"))
_MAXIMUM = frozenset(("registered_threads", "memory_bytes", "buffer_capacity"))


def _joined(parts: list[Profile]) -> Profile:
    """Profile.joined, with the profiler's counters of all parts added up."""
    prof = Profile.joined(parts)
    raws = [p.stats.raw for p in parts if isinstance(p.stats, ProfilerStats)]
    if raws:
        total: dict[str, Any] = dict(raws[-1])
        total["interval_ns"] = prof.interval_ns
        for key, value in raws[-1].items():
            if key in _SUMMED_NEVER or isinstance(value, bool) or not isinstance(value, int):
                continue
            values = [r.get(key, 0) for r in raws]
            total[key] = max(values) if key in _MAXIMUM else sum(values)
        prof.stats = ProfilerStats.from_native(total)
    return prof


# -- context manager, decorator -------------------------------------------------------


class Profiler:
    """Profile a block: ``with Profiler() as p: ...`` then ``p.profile``.

    Also usable with explicit ``start()``/``stop()``, and ``pause()``/
    ``resume()`` in between.
    """

    def __init__(
        self,
        interval_ms: int = 10,
        output_path: str | os.PathLike[str] | None = None,
        memory_limit_mb: float = 100,
        *,
        take_over_sigprof: bool = False,
        backend: str = "auto",
    ) -> None:
        self.interval_ms = _check_interval(interval_ms)
        self.backend = _check_backend(backend)
        self.output_path = _check_output_path(output_path)
        self.memory_limit_mb = _check_memory_limit(memory_limit_mb)
        self.take_over_sigprof = _check_take_over_sigprof(take_over_sigprof)
        self.profile: Profile | None = None
        self._running = False
        self._info: _SessionInfo | None = None

    def start(self) -> Profiler:
        start(
            self.interval_ms,
            self.output_path,
            self.memory_limit_mb,
            take_over_sigprof=self.take_over_sigprof,
            backend=self.backend,
        )
        self._info = _session
        self._running = True
        return self

    def stop(self) -> Profile:
        if not self._running:
            raise RuntimeError("this Profiler is not running")
        try:
            self.profile = stop()
        finally:
            # Only once the session really ended (a Ctrl-C can interrupt
            # stop() before it did: then it is still this Profiler's to stop).
            if _session is not self._info:
                self._running = False
        return self.profile

    def pause(self) -> bool:
        return self._running and pause()

    def resume(self) -> bool:
        return self._running and resume()

    def __enter__(self) -> Profiler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        # The block is over: the session ends here even if a Ctrl-C
        # interrupts the first attempt to stop it; the interrupt is then
        # re-raised, once.
        interrupted: BaseException | None = None
        for _ in range(3):
            if not self._running:
                break
            try:
                self.stop()
            except BaseException as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted


@overload
def profile(func: F) -> F: ...
@overload
def profile(
    func: None = None, *, interval_ms: int = 10, output_path: str | os.PathLike[str] | None = None
) -> Callable[[F], F]: ...


def profile(
    func: Callable[..., Any] | None = None,
    *,
    interval_ms: int = 10,
    output_path: str | os.PathLike[str] | None = None,
) -> Any:
    """Decorator: profile every call of the function.

    ``@profile`` or ``@profile(interval_ms=5, output_path="out.html")``. The
    last call's profile is on ``wrapper.last_profile``. If another session
    is already running, the call simply runs inside it.

    A generator (or async generator) function is profiled over its whole
    iteration: the session starts when the first item is asked for, is
    paused while the consumer has an item (the consumer's own work is not
    in the profile), and ends when the generator is exhausted or closed.
    """
    interval = _check_interval(interval_ms)
    path = _check_output_path(output_path)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                gen = fn(*args, **kwargs)
                if is_active():
                    return (yield from gen)
                prof = Profiler(interval, path)
                prof.start()
                try:
                    return (yield from _paused_while_suspended(gen, prof))
                finally:
                    if prof._running:
                        prof.stop()
                    gen_wrapper.last_profile = prof.profile  # type: ignore[attr-defined]

            gen_wrapper.last_profile = None  # type: ignore[attr-defined]
            return gen_wrapper

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                agen = fn(*args, **kwargs)
                prof = None if is_active() else Profiler(interval, path)
                if prof is not None:
                    prof.start()
                try:
                    # async generators have no "yield from": delegate by hand
                    try:
                        item = await agen.__anext__()
                    except StopAsyncIteration:
                        return
                    while True:
                        paused = prof is not None and prof.pause()
                        try:
                            sent = yield item
                        except GeneratorExit:
                            if paused:
                                prof.resume()
                            await agen.aclose()
                            raise
                        except BaseException as exc:
                            if paused:
                                prof.resume()
                            try:
                                item = await agen.athrow(exc)
                            except StopAsyncIteration:
                                return
                        else:
                            if paused:
                                prof.resume()
                            try:
                                item = await agen.asend(sent)
                            except StopAsyncIteration:
                                return
                finally:
                    if prof is not None:
                        if prof._running:
                            prof.stop()
                        agen_wrapper.last_profile = prof.profile  # type: ignore[attr-defined]

            agen_wrapper.last_profile = None  # type: ignore[attr-defined]
            return agen_wrapper

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if is_active():
                    return await fn(*args, **kwargs)
                prof = Profiler(interval, path)
                try:
                    with prof:
                        result = await fn(*args, **kwargs)
                finally:
                    if prof._running:
                        prof.stop()
                    async_wrapper.last_profile = prof.profile  # type: ignore[attr-defined]
                return result

            async_wrapper.last_profile = None  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if is_active():
                return fn(*args, **kwargs)
            prof = Profiler(interval, path)
            try:
                with prof:
                    return fn(*args, **kwargs)
            finally:
                # A Ctrl-C landing as __exit__ is entered skips its body:
                # the session still ends with the call.
                if prof._running:
                    prof.stop()
                wrapper.last_profile = prof.profile  # type: ignore[attr-defined]

        wrapper.last_profile = None  # type: ignore[attr-defined]
        return wrapper

    if func is not None:
        if not callable(func):
            raise ValueError(f"profile() decorates a function, got {func!r}")
        return decorate(func)
    return decorate


def _paused_while_suspended(gen: Any, prof: Profiler) -> Any:
    """``yield from gen`` with ``prof`` paused whenever ``gen`` is suspended
    at a yield (so only the generator's own running time is sampled)."""
    try:
        item = next(gen)
    except StopIteration as done:
        return done.value
    while True:
        paused = prof.pause()
        try:
            sent = yield item
        except GeneratorExit:
            if paused:
                prof.resume()
            gen.close()
            raise
        except BaseException as exc:
            if paused:
                prof.resume()
            try:
                item = gen.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            if paused:
                prof.resume()
            try:
                item = gen.send(sent)
            except StopIteration as done:
                return done.value


# -- explicit thread control --------------------------------------------------------


def register_thread() -> bool:
    """Make sure the calling thread is sampled. Threads are found
    automatically; this makes it immediate. Idempotent. Returns True if
    the thread is sampled after the call (False when not profiling or when
    no timer could be created for it)."""
    return is_active() and _native().register_thread()


def unregister_thread() -> bool:
    """Stop sampling the calling thread (until it registers again).
    Idempotent. Returns True if the thread was sampled before the call."""
    return is_active() and _native().unregister_thread()


class ThreadProfiler:
    """``with ThreadProfiler(): ...`` samples the calling thread inside the
    block and leaves its registration as it was before afterwards."""

    def __init__(self) -> None:
        self._was_registered = False
        self.registered = False

    def __enter__(self) -> ThreadProfiler:
        self._was_registered = is_active() and _native().is_thread_registered()
        self.registered = register_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._was_registered:
            unregister_thread()


# Keep a reference so ProfilerError is importable from here too.
_ = ProfilerError
