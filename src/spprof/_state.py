"""Process-wide state of the Python layer: the one lock, the native module
and the program's current session.

Everything here is read at call time through this module (``_state.lock()``,
``_state.current``), never copied into another module's globals: a forked
child replaces the lock (the parent's may be held by a thread that does not
exist in the child) and every reader then sees the new one.
"""

from __future__ import annotations

import _thread
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any
    from ._model import Profile
    from ._session import HostState

_lock = _thread.RLock()  # threading.RLock is this C type


def lock() -> _thread.RLock:
    """The lock every session transition holds (re-entrant: a transition
    may run another, as spprof run's sessions do)."""
    return _lock


def new_lock_after_fork() -> None:
    """In a forked child: the parent's lock may be held by a thread that is
    not here."""
    global _lock
    _lock = _thread.RLock()


_native_module: Any = None


def native() -> Any:
    """The extension module. Imported once and kept: an import on every call
    would run importlib's Python code (where a Ctrl-C can land) inside
    start() and stop()."""
    global _native_module
    if _native_module is None:
        from . import _native as module

        _native_module = module
    return _native_module


class SessionInfo:
    """What the Python layer remembers about a running session."""

    def __init__(self, interval_ms: float, output_path: str | None, memory_limit_mb: float) -> None:
        self.interval_ms = interval_ms
        self.output_path = output_path
        self.memory_limit_mb = memory_limit_mb
        self.start_wall_ns = time.time_ns()
        self.owner_pid = os.getpid()
        # The process's threads and their CPU at start (_coverage.snapshot).
        self.tasks_at_start: tuple[dict[int, int], int] | None = None
        # Set on spprof run's own session, which the program's API calls
        # do not see (see _session.py, "sessions inside spprof run").
        self.host: HostState | None = None
        # Set on the program's own session while it runs inside the host's.
        self.nested_in: HostState | None = None
        self.params: dict[str, Any] = {}  # start() arguments, to continue it
        self.earlier: list[Profile] = []  # parts recorded before a restart

    def ours(self) -> bool:
        """Started in this process (not inherited through fork)."""
        return self.owner_pid == os.getpid()


# The session of this process that the Python layer knows of, or None.
current: SessionInfo | None = None


def program_session() -> SessionInfo | None:
    """The program's own session in this process: started here, and not
    spprof run's (which the program's API calls do not see)."""
    session = current  # read once: another thread may end it meanwhile
    if session is None or not session.ours() or session.host is not None:
        return None
    return session


def standalone_session() -> SessionInfo | None:
    """The program's own session when it runs alone: neither spprof run's
    host session nor one nested inside it."""
    session = program_session()
    return session if session is not None and session.nested_in is None else None
