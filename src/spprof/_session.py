"""Every session transition of the Python layer.

This module is the only caller of the native start() and stop(). It owns:
opening and closing a native session (``_open``/``_close``) with the
Ctrl-C repair around them, the program's start/stop (``start_session``,
``stop_session``), a stop() that ran out of memory (kept for a retry), the
fork and exit hooks, and the sessions of ``spprof run`` (``host_start``,
``host_stop``, ``host_release``: the interface the command line uses).
State lives in ``_state``; the lock is ``_state.lock()``.
"""

from __future__ import annotations

import os
import sys
import warnings

# _results (the model, dataclasses) is imported with spprof, not at the
# first start(): an import there can meet an exhausted address space (the
# program's own), where CPython 3.13.0 was seen to crash unmarshalling it.
from . import _coverage, _hooks, _results, _signals, _state, _threads
from ._errors import ProfilerWarning
from ._state import SessionInfo

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any
    from ._model import Profile

def warn(message: str) -> None:
    warnings.warn(message, ProfilerWarning, stacklevel=3)


# -- opening and closing a native session ---------------------------------------------


def _open(params: dict[str, Any]) -> SessionInfo:
    """Start a native session with checked arguments (lock held); raises as
    start() does. A Ctrl-C anywhere in here, even as it returns, leaves no
    session running behind the program's back."""
    native = _state.native()
    was_active = native.is_active()
    try:
        info = SessionInfo(params["interval_ms"], params.get("output_path"), params["memory_limit_mb"])
        try:
            info.tasks_at_start = _coverage.snapshot()
        except MemoryError:
            pass  # the profile will not name the threads it does not cover
        native.start(
            interval_ns=round(info.interval_ms * 1_000_000),
            memory_limit_bytes=int(info.memory_limit_mb * 1024 * 1024),
            take_over_sigprof=params.get("take_over_sigprof", False),
            warning_category=ProfilerWarning,
            backend=params.get("backend", "auto"),
            mode=params.get("mode", "cpu"),
            native=_native_wanted(params.get("native")),
        )
        _state.current = info
        _signals.session_started()
        _threads.install()
        _hooks.ensure_installed()
        _hooks.stop_late_session_when_handler_returns()
        return info
    except BaseException:
        if not was_active and native.is_active():
            _abandon()
        raise


def _native_wanted(native: bool | None) -> bool:
    from ._native_frames import wanted

    return wanted(native)


def _abandon() -> None:
    """Stop a session whose start was interrupted, discarding it."""
    native = _state.native()
    try:
        if native.is_active():
            native.stop()
    finally:
        _state.current = None
        _session_gone()


def _session_gone() -> None:
    try:
        _threads.uninstall()
    finally:
        _signals.session_stopped()


# A session whose stop() ran out of memory while building the profile:
# (its info, the native result if it was built). The samples are kept and
# the next stop() returns the profile.
_unfinished: tuple[SessionInfo, Any] | None = None

KEPT_FOR_RETRY = (
    "not enough memory to build the profile; the session has ended and its samples are "
    "kept: call spprof.stop() again once memory is available to get the profile"
)


def _close(info: SessionInfo, raw: Any = None) -> Profile:
    """Stop the native session of ``info`` (unless ``raw``, its result, is
    given) and build its Profile, joined to the parts before a restart
    (lock held). Out of memory: the samples are kept for a retry."""
    global _unfinished
    try:
        prof = _close_or_keep(info, raw)
    except BaseException:
        # Interrupted (Ctrl-C) anywhere in here: the session ends all the
        # same (its profile is lost), then the interrupt goes on.
        finish_interrupted_stop()
        raise
    _unfinished = None
    return prof


def _close_or_keep(info: SessionInfo, raw: Any) -> Profile:
    global _unfinished
    native = _state.native()
    if raw is None:
        try:
            raw = native.stop()
        except MemoryError:
            if native.has_unbuilt_result():
                _unfinished = (info, None)
                raise MemoryError(KEPT_FOR_RETRY) from None
            _unfinished = None
            raise
        finally:
            # Interrupted before the native stop: still running, nothing
            # changes. After it: the session is over whatever else happens.
            if not native.is_active() and _state.current is info:
                _state.current = None
                _session_gone()
    try:
        prof = _results.profile_from_native(
            raw,
            interval_ms=info.interval_ms,
            start_wall_ns=info.start_wall_ns,
            tasks_at_start=info.tasks_at_start,
        )
        if info.earlier:
            prof = _results.joined([*info.earlier, prof])
    except MemoryError:
        _unfinished = (info, raw)
        raise MemoryError(KEPT_FOR_RETRY) from None
    return prof


def _reconcile() -> None:
    """Forget a session the native core no longer runs: a Ctrl-C that
    landed right after the native stop (or an interrupted start) can leave
    the Python side behind. Lock held."""
    if _state.standalone_session() is not None and not _state.native().is_active():
        _state.current = None
    if _state.current is None:
        _session_gone()


# -- the program's sessions ------------------------------------------------------------


def start_session(params: dict[str, Any]) -> None:
    """The program's start() with checked arguments."""
    native = _state.native()
    was_active = native.is_active()
    try:
        with _state.lock():
            _reconcile()
            current = _state.current
            if current is not None and current.ours():
                if current.host is None:
                    raise RuntimeError("the profiler is already running; call spprof.stop() first")
                # spprof run profiles this program: its own session runs inside
                _start_nested(params)
                return
            global _unfinished
            _unfinished = None  # a profile nobody asked for again (see stop_session)
            _open(params)
    except BaseException:
        # A Ctrl-C can arrive anywhere in here, even as start() returns: a
        # session this call created must not go on behind the program's back.
        if not was_active and native.is_active():
            _abandon()
        raise


def stop_session() -> Profile:
    """The program's stop(): its Profile, saved to its output_path."""
    try:
        with _state.lock():
            _reconcile()
            current = _state.current
            if _unfinished is not None and (current is None or not current.ours()):
                info, raw = _unfinished
                prof = _close(info, raw)
            else:
                # spprof run's own session is not the program's to stop
                if current is None or not current.ours() or current.host is not None:
                    raise RuntimeError("the profiler is not running; call spprof.start() first")
                if current.nested_in is not None:
                    return _stop_nested()
                info = current
                prof = _close(info)
    except BaseException:
        # Interrupted (Ctrl-C) anywhere in stop(): the session ends all the
        # same (its profile is lost), then the interrupt goes on.
        finish_interrupted_stop()
        raise
    if info.output_path is not None:
        save_or_warn(prof, info.output_path)
    return prof


def finish_interrupted_stop() -> None:
    """After stop() raised: a program session the native core still runs
    is stopped (its profile is lost), and the Python side reconciled."""
    with _state.lock():
        if _state.standalone_session() is not None and _state.native().is_active():
            _state.native().stop()
        _reconcile()


def save_or_warn(prof: Profile, path: str) -> None:
    try:
        prof.save(path)
    except (OSError, ValueError) as exc:
        warnings.warn(
            f"spprof: could not save the profile to {path}: {exc}; "
            "the returned Profile is intact, call profile.save() with another path",
            RuntimeWarning,
            stacklevel=4,
        )


def is_active() -> bool:
    """True while the program's own session runs in this process."""
    return _state.program_session() is not None and _state.native().is_active()


# -- at exit ---------------------------------------------------------------------------


def _stop_at_exit() -> None:
    """The exit hook (see _hooks.py): stop and save whatever still runs."""
    if _detached is not None:
        # spprof run ended without handing the program's session back: it
        # ends here, saved like any other
        host_release()
    current = _state.current
    if current is None or not current.ours():
        return
    try:
        if current.host is not None:
            host_stop()  # spprof run did not get to stop it; nobody reads it
        else:
            stop_session()
    except Exception as exc:  # never turn the program's exit into a traceback
        print(f"spprof: could not stop the profiler at exit: {exc}", file=sys.stderr)


_hooks.set_exit_handler(_stop_at_exit)


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


class HostState:
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


_host: HostState | None = None
# The program's session that was running when the host stopped, with its
# part so far, until host_release continues it.
_detached: tuple[SessionInfo, list[Profile]] | None = None


def host_start(
    interval_ms: float,
    memory_limit_mb: float,
    trim: Callable[[Profile], Profile] | None = None,
    mode: str = "cpu",
    backend: str = "auto",
    native: bool = False,
) -> None:
    """Start spprof run's session (raises as start() does)."""
    global _host
    from ._limits import check_backend, check_interval, check_interval_for_mode, check_memory_limit, check_mode

    params: dict[str, Any] = {
        "interval_ms": check_interval(interval_ms),
        "memory_limit_mb": check_memory_limit(memory_limit_mb),
        "mode": check_mode(mode),
        "backend": check_backend(backend),
        "native": bool(native),
    }
    check_interval_for_mode(params["interval_ms"], params["mode"])
    with _state.lock():
        start_session(params)
        assert _state.current is not None
        state = HostState(params, trim)
        _state.current.host = state
        _host = state


def host_stop() -> Profile:
    """Stop spprof run's session; its Profile covers every part, the
    program's own sessions included."""
    global _host
    with _state.lock():
        state = _host
        if state is None or state.owner_pid != os.getpid():
            raise RuntimeError("spprof run's session is not running")
        _host = None
        current = _state.current if _state.current is not None and _state.current.ours() else None
        if current is not None and current.host is state:
            current.host = None
            state.parts.append(_close(current))
        elif current is not None and current.nested_in is state:
            _detach_nested(current, state)
        # else: the host could not resume after a session of the program's
        if not state.parts:
            raise RuntimeError("spprof run's session recorded nothing")
        return _results.joined(state.parts)


def host_release() -> None:
    """After spprof run has written its profile: a session of the program's
    that was running when the host stopped goes on (spprof's own writing is
    not in it)."""
    global _detached
    with _state.lock():
        detached, _detached = _detached, None
        if detached is None or not detached[0].ours():
            return
        info, earlier = detached
        try:
            _reconcile()
            session = _open(info.params)
        except Exception as exc:
            warn(f"spprof: could not continue the program's profiling session: {exc}")
            if info.output_path is not None:
                save_or_warn(_results.joined(earlier), info.output_path)
            return
        session.earlier = earlier
        session.params = info.params


def _start_nested(params: dict[str, Any]) -> None:
    """start() of the program's own session while the host runs (lock
    held)."""
    host_session = _state.current
    assert host_session is not None and host_session.host is not None
    state = host_session.host
    host_session.host = None
    state.parts.append(_close(host_session))
    try:
        session = _open(params)
    except BaseException:
        _resume_host(state)
        raise
    session.nested_in = state
    session.params = params


def _stop_nested() -> Profile:
    """stop() of the program's own session inside the host's (lock held)."""
    info = _state.current
    assert info is not None and info.nested_in is not None
    state = info.nested_in
    path = info.output_path
    info.nested_in = None
    part = _close(info)
    state.parts.append(part)
    _resume_host(state)
    prof = state.trimmed(part)
    if path is not None:
        save_or_warn(prof, path)
    return prof


def _resume_host(state: HostState) -> None:
    try:
        session = _open(state.params)
    except Exception as exc:  # the program goes on; the rest is not in the profile
        warn(f"spprof: could not resume profiling the program: {exc}")
        return
    session.host = state


def _detach_nested(info: SessionInfo, state: HostState) -> None:
    """The host ends while the program's own session runs: the session so
    far goes into the host's profile, and the program's goes on alone once
    spprof run has written its profile (see host_release)."""
    global _detached
    info.nested_in = None
    part = _close(info)
    state.parts.append(part)
    _detached = (info, [*info.earlier, state.trimmed(part)])
