"""SIGPROF stays the program's while spprof samples with it.

spprof's timers signal SIGPROF, so its C handler holds SIGPROF's
disposition during a session. Python's signal module does not know that:
``signal.getsignal(SIGPROF)`` would report what Python last installed, and
a program (or library) that saves and later restores the disposition, or
installs SIG_DFL, would put SIG_DFL in the kernel and the next timer signal
would end the process. So while a session runs, the ``_signal`` module's
``signal`` and ``getsignal`` (which ``signal.signal`` and
``signal.getsignal`` call) are wrapped, for SIGPROF only:

- ``getsignal`` returns what the program believes is installed: what Python
  reported before ``start()``, or what the program installed since;
- ``signal`` records the program's wish and returns the previous one, like
  the original. A handler is installed by Python itself (the same checks and
  errors, Python's own C trampoline), then spprof's handler goes back in its
  place and passes every foreign SIGPROF (ITIMER_PROF, kill, another tool's
  timer) to it; SIG_IGN drops foreign SIGPROFs; SIG_DFL is never put in the
  kernel while our timers run (it travels through Python as SIG_IGN), and a
  foreign SIGPROF then ends the process as SIG_DFL would. spprof's own timer
  signals never reach the program's disposition.

On ``stop()`` the native side deletes the timers, discards pending SIGPROFs
and, if its handler is still installed, puts back the disposition the
program believes in; if someone replaced it at the C level (sigaction,
faulthandler, another profiler), theirs stays. The originals of
``signal``/``getsignal`` go back if they are still our wrappers (a wrapper
someone else put over ours keeps calling ours, which then passes through).
Python's own record of SIGPROF's handler is brought in line with the
program's (it can differ only for SIG_DFL); that takes the main thread, so
from another thread it is done by a pending call there.
"""

from __future__ import annotations

import _signal
import operator
import os

from . import _native, _state

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SIGPROF = int(_signal.SIGPROF)

# Whether our wrappers speak for SIGPROF now, and what the program believes
# SIGPROF's handler is (in _signal's terms: an int SIG_DFL/SIG_IGN, a
# callable, or None for a handler Python did not install).
_active = False
_believed: Any = None
# Each session's wrappers carry a token; a wrapper from an earlier session
# (still inside someone else's wrapper) passes through.
_token: object | None = None
# name -> (original, wrapper) while our wrappers are installed.
_wrapped: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}
# After a stop() outside the main thread: (what Python records, what the
# program believes) until the main thread brings them in line.
_unsynced: tuple[Any, Any] | None = None
_fork_hook = False


def _is_sigprof(signalnum: object) -> bool:
    try:
        return operator.index(signalnum) == SIGPROF  # type: ignore[arg-type]
    except Exception:
        return False  # the original reports it


def _same(a: object, b: object) -> bool:
    return a is b or (type(a) is int and type(b) is int and a == b)


def _wants_default(handler: object) -> bool:
    # The order of Python's own test: a callable is a handler, else exactly
    # the int SIG_DFL.
    return not callable(handler) and type(handler) is int and handler == _signal.SIG_DFL


def _speaks(token: object) -> bool:
    return _active and token is _token


def _make_signal(original: Callable[..., Any], token: object) -> Callable[..., Any]:
    def signal(signalnum: Any, handler: Any, /) -> Any:
        if not (_speaks(token) and _is_sigprof(signalnum)):
            return original(signalnum, handler)
        with _state.lock():  # not while start() or stop() runs
            if not _speaks(token):
                return original(signalnum, handler)
            return _program_signal(original, signalnum, handler)

    signal.__wrapped__ = original  # type: ignore[attr-defined]
    signal.__doc__ = original.__doc__
    return signal


def _make_getsignal(original: Callable[..., Any], token: object) -> Callable[..., Any]:
    def getsignal(signalnum: Any, /) -> Any:
        if _speaks(token) and _is_sigprof(signalnum):
            return _believed
        return original(signalnum)

    getsignal.__wrapped__ = original  # type: ignore[attr-defined]
    getsignal.__doc__ = original.__doc__
    return getsignal


def _program_signal(original: Callable[..., Any], signalnum: Any, handler: Any) -> Any:
    global _believed
    default = _wants_default(handler)
    _, reclaimed = _native.sigprof_program_signal(
        original, signalnum, _signal.SIG_IGN if default else handler, default
    )
    if not reclaimed and default:
        # Our handler was gone already (the session ended inside that call,
        # from a Python signal handler): no timer left, SIG_DFL is safe.
        original(signalnum, handler)
    previous = _believed
    _believed = handler
    return previous


def _original(name: str) -> Callable[..., Any]:
    entry = _wrapped.get(name)
    return entry[0] if entry is not None else getattr(_signal, name)


def session_started() -> None:
    """Right after the native session started (our handler is installed)."""
    global _active, _believed, _token, _unsynced, _fork_hook
    stored = _original("getsignal")(SIGPROF)
    _believed = stored
    if _unsynced is not None and _same(stored, _unsynced[0]):
        _believed = _unsynced[1]
    _unsynced = None
    token = _token = object()
    for name, make in (("signal", _make_signal), ("getsignal", _make_getsignal)):
        original = _original(name)
        wrapper = make(original, token)
        # Recorded before it is installed: an interrupt in between must not
        # leave a wrapper nobody knows to take out.
        _wrapped[name] = (original, wrapper)
        setattr(_signal, name, wrapper)
    _active = True
    if not _fork_hook:
        _fork_hook = True
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _unwrap() -> tuple[Callable[..., Any], Callable[..., Any]]:
    global _active, _token
    _active = False
    _token = None
    originals = (_original("signal"), _original("getsignal"))
    for name, (original, wrapper) in list(_wrapped.items()):
        if getattr(_signal, name, None) is wrapper:
            setattr(_signal, name, original)
    _wrapped.clear()
    return originals


def session_stopped() -> None:
    """Right after the native session stopped (timers deleted, SIGPROF's
    disposition put back, or left to whoever replaced our handler)."""
    if not _active:
        if _wrapped:  # a start() interrupted half-way
            _unwrap()
        return
    original_signal, original_getsignal = _unwrap()
    if _native.sigprof_restored():
        _bring_in_line(original_signal, original_getsignal, _believed)


def _bring_in_line(
    original_signal: Callable[..., Any], original_getsignal: Callable[..., Any], believed: Any
) -> None:
    """Make Python's record of SIGPROF's handler what the program believes.
    The kernel already has that disposition, and no timer of ours is left."""
    global _unsynced
    stored = original_getsignal(SIGPROF)
    if believed is None or _same(stored, believed):
        return
    try:
        original_signal(SIGPROF, believed)
    except ValueError:  # not the main thread
        _unsynced = (stored, believed)
        if not _native.call_in_main_thread(
            lambda: _bring_in_line_later(original_signal, original_getsignal)
        ):
            _unsynced = None


def _bring_in_line_later(
    original_signal: Callable[..., Any], original_getsignal: Callable[..., Any]
) -> None:
    global _unsynced
    if _unsynced is None or _active:
        return  # done, or a new session took it over (session_started)
    stored, believed = _unsynced
    _unsynced = None
    # Only if nothing changed meanwhile: Python records what it did at
    # stop() and the kernel has what the program believes.
    if not _same(original_getsignal(SIGPROF), stored):
        return
    if callable(believed):
        expected = "handler"
    elif _same(believed, _signal.SIG_DFL):
        expected = "default"
    elif _same(believed, _signal.SIG_IGN):
        expected = "ignore"
    else:
        return
    if _native.sigprof_disposition() == expected:
        original_signal(SIGPROF, believed)


def _after_fork_in_child() -> None:
    """The child has no timers: the program's disposition goes back, and the
    originals (the forking thread is the child's main thread)."""
    global _unsynced
    _unsynced = None
    if not _active:
        return
    original_signal, original_getsignal = _unwrap()
    if _native.sigprof_release_after_fork():
        try:
            _bring_in_line(original_signal, original_getsignal, _believed)
        except Exception:
            pass
