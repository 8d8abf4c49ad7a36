"""Sample every new thread from its first instruction.

The service thread finds threads by polling, so a thread that lives less
than one poll would never be sampled. While a session runs, the functions
that start threads (``_thread.start_new_thread``, 3.13's
``start_joinable_thread`` and threading's private aliases of them) are
wrapped so the new thread first runs spprof's bootstrap, which gives the
thread its timer and then calls the real target. threading is not imported
for this: when a program imports it during a session, threading takes its
aliases from ``_thread`` and so gets the wrappers, which are put back with
the others at the end. The wrappers and the
bootstrap are C functions (src/native/thread_hooks.h): they check arguments
with the original's messages, add no frame to any stack, and report an
uncaught exception naming the user's function. Threads started another way
(from C, or through a reference taken before the session) are still found by
the poll.
"""

from __future__ import annotations

import _thread
import sys

from . import _native

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# (module, attribute name) -> the original function, while installed.
_installed: dict[tuple[object, str], Callable[..., Any]] = {}
_wrappers: dict[tuple[object, str], Callable[..., Any]] = {}


def _wrap_start_new_thread(original: Callable[..., Any]) -> Callable[..., Any]:
    return _native.wrap_start_new_thread(original)


def _wrap_start_joinable_thread(original: Callable[..., Any]) -> Callable[..., Any]:
    return _native.wrap_start_joinable_thread(original)


# threading's private aliases of _thread's functions.
_THREADING_ALIASES = ("_start_new_thread", "_start_joinable_thread")


def _targets() -> list[tuple[object, str, Callable[..., Any]]]:
    # Not `import threading` (nothing is imported inside start()): if the
    # program has not imported it yet, it takes our wrappers from _thread.
    threading = sys.modules.get("threading")
    out: list[tuple[object, str, Callable[..., Any]]] = []
    for module, name in (
        (_thread, "start_new_thread"),
        (_thread, "start_new"),
        (threading, "_start_new_thread"),
    ):
        if module is not None and hasattr(module, name):
            out.append((module, name, _wrap_start_new_thread))
    for module, name in ((_thread, "start_joinable_thread"), (threading, "_start_joinable_thread")):
        if module is not None and hasattr(module, name):
            out.append((module, name, _wrap_start_joinable_thread))
    return out


def install() -> None:
    """Wrap the thread-start functions (idempotent)."""
    for module, name, wrap in _targets():
        key = (module, name)
        if key in _installed:
            continue
        original = getattr(module, name)
        wrapper = wrap(original)
        setattr(module, name, wrapper)
        _installed[key] = original
        _wrappers[key] = wrapper


def uninstall() -> None:
    """Put the originals back, unless someone replaced our wrapper since
    (then theirs stays, and ours inside it does nothing once the session
    has ended)."""
    # A threading imported during the session holds _thread's wrappers
    # under its own names: give it the originals too.
    threading = sys.modules.get("threading")
    if threading is not None:
        for name in _THREADING_ALIASES:
            if (threading, name) in _installed:
                continue
            current = getattr(threading, name, None)
            for key, wrapper in _wrappers.items():
                if key[0] is _thread and current is wrapper:
                    setattr(threading, name, _installed[key])
                    break
    for key, original in list(_installed.items()):
        module, name = key
        if getattr(module, name, None) is _wrappers[key]:
            setattr(module, name, original)
        del _installed[key]
        del _wrappers[key]
