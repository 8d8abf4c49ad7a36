"""Sample every new thread from its first instruction.

The service thread finds threads by polling, so a thread that lives less
than one poll would never be sampled. While a session runs, the functions
that start threads (``_thread.start_new_thread``, 3.13's
``start_joinable_thread`` and threading's private aliases of them) are
wrapped so the new thread first runs spprof's bootstrap, which gives the
thread its timer and then calls the real target. The wrappers and the
bootstrap are C functions (src/native/thread_hooks.h): they check arguments
with the original's messages, add no frame to any stack, and report an
uncaught exception naming the user's function. Threads started another way
(from C, or through a reference taken before the session) are still found by
the poll.
"""

from __future__ import annotations

import _thread
import threading

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


def _targets() -> list[tuple[object, str, Callable[..., Any]]]:
    out: list[tuple[object, str, Callable[..., Any]]] = []
    for module, name in (
        (_thread, "start_new_thread"),
        (_thread, "start_new"),
        (threading, "_start_new_thread"),
    ):
        if hasattr(module, name):
            out.append((module, name, _wrap_start_new_thread))
    for module, name in ((_thread, "start_joinable_thread"), (threading, "_start_joinable_thread")):
        if hasattr(module, name):
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
    for key, original in list(_installed.items()):
        module, name = key
        if getattr(module, name, None) is _wrappers[key]:
            setattr(module, name, original)
        del _installed[key]
        del _wrappers[key]
