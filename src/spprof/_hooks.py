"""The process hooks a session needs: fork, exec and interpreter exit.

- fork: the parent's hooks are the native functions themselves; the child
  starts clean and unprofiled (timers do not survive fork).
- exec: a C audit hook sees ``os.exec*`` coming and takes everything of the
  session out of the process first (a SIGPROF pending in the new image
  would end it).
- exit: a session still running when the interpreter exits is stopped (and
  saved to its output_path) by the handler ``_session`` sets here.

Installed on the first start(), once per process.
"""

from __future__ import annotations

import atexit
import sys
import warnings

from . import _state, _threads
from ._errors import ProfilerWarning

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_installed = False


def ensure_installed() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    import os

    native = _state.native()
    # No Python code of spprof runs inside os.fork() in the parent, so the
    # service thread is restarted (from a pending call) only after os.fork()
    # counted the process's threads for its "multi-threaded" warning (3.13
    # counts after the hooks).
    os.register_at_fork(
        before=native.before_fork,
        after_in_parent=native.after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
    native.install_exec_hook()


def _after_fork_in_child() -> None:
    """The child inherits memory but no timers: start clean, unprofiled."""
    _state.new_lock_after_fork()
    _threads.uninstall()
    if _state.current is not None:
        _state.current = None
        try:
            _state.native().after_fork_in_child()
        except Exception:
            pass


# The exit hook that stops (and saves) a session still running at exit.
# atexit runs handlers last-registered-first, and a handler registered while
# the handlers run is never called. Registered when spprof is imported, the
# hook runs after every handler registered later, so it sees sessions those
# start. A session started after the hook ran (from a handler registered
# before spprof was imported, or when spprof itself is first imported at
# exit) is stopped when the handler that started it returns.
def _exiting() -> bool:
    # threading marks the main thread stopped just before atexit runs. A
    # program that had not imported threading then does not run that step:
    # that our exit hook ran says it instead.
    if _exit_hook_ran and not _exit_hook_saw_threading:
        return True
    threading = sys.modules.get("threading")
    return threading is not None and not threading.main_thread().is_alive()


_exit_handler: Callable[[], None] | None = None
_exit_hook_ran = False
_exit_hook_saw_threading = True
_exit_hook_registered_late = _exiting()


def set_exit_handler(handler: Callable[[], None]) -> None:
    global _exit_handler
    _exit_handler = handler


def _at_exit() -> None:
    global _exit_hook_ran, _exit_hook_saw_threading
    if not _exit_hook_ran:
        _exit_hook_saw_threading = "threading" in sys.modules
    _exit_hook_ran = True
    if _exit_handler is not None:
        _exit_handler()


atexit.register(_at_exit)


def stop_late_session_when_handler_returns() -> None:
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
        warnings.warn(
            "spprof: a session started this late at exit is not saved automatically "
            "while another profiler is active; call spprof.stop()",
            ProfilerWarning,
            stacklevel=4,
        )
        return

    def watch(frame: Any, event: str, arg: Any) -> None:
        if previous is not None:
            previous(frame, event, arg)
        if event == "return" and frame is root:
            sys.setprofile(previous)
            _at_exit()

    sys.setprofile(watch)
