"""Native (C/C++) frames: the original spprof's API for them.

:func:`capture_native_stack` gives the calling thread's native call stack,
symbolized. Sessions record native frames when asked: ``start(native=True)``
(``Profiler(native=True)``, ``spprof run --native``), or for every later
session after :func:`set_native_unwinding` ``(True)``.
"""

from __future__ import annotations

from . import _state
from ._errors import ProfilerError
from ._record import frozen_record

__all__ = [
    "NativeFrame",
    "capture_native_stack",
    "native_unwinding_available",
    "native_unwinding_enabled",
    "set_native_unwinding",
]

_set = object.__setattr__  # frozen record: __init__ sets slots directly


@frozen_record
class NativeFrame:
    """One native frame of a call stack.

    ``ip`` is the instruction address: for every frame but one a signal
    interrupted, the return address (just after the call). ``symbol`` is the
    function's name, C++ and Rust names demangled, or ``"0x<ip>"`` when no
    symbol covers the address (``resolved`` is then False). ``filename`` is
    the shared library or program that holds the address (``""`` if none).
    ``offset`` is ``ip`` minus the function's start when resolved, else
    ``ip`` minus the object's load address (the address in the file, as
    ``addr2line -e filename`` takes it).
    """

    __slots__ = ("ip", "symbol", "filename", "offset", "resolved")
    ip: int
    symbol: str
    filename: str
    offset: int
    resolved: bool

    def __init__(self, ip: int, symbol: str, filename: str, offset: int, resolved: bool) -> None:
        _set(self, "ip", ip)
        _set(self, "symbol", symbol)
        _set(self, "filename", filename)
        _set(self, "offset", offset)
        _set(self, "resolved", resolved)


def _unavailable_reason() -> str | None:
    reason: str | None = _state.native().native_unwinding_unavailable_reason()
    return reason


def native_unwinding_available() -> bool:
    """Whether native (C/C++) stacks can be unwound here: spprof was built
    with libunwind's headers and ``libunwind.so.8`` loads."""
    return _unavailable_reason() is None


_enabled = False  # set_native_unwinding(): the default of start(native=None)


def native_unwinding_enabled() -> bool:
    """Whether sessions started without ``native=`` record native frames
    (see :func:`set_native_unwinding`)."""
    return _enabled


def set_native_unwinding(enabled: bool) -> None:
    """Record native frames in the samples of the sessions started from now
    on without ``native=`` (``start(native=...)`` decides for its own
    session). Raises :class:`ProfilerError` (a ``RuntimeError``) saying why
    when ``True`` is asked where native unwinding is unavailable."""
    global _enabled
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    if enabled:
        reason = _unavailable_reason()
        if reason is not None:
            raise ProfilerError(f"native unwinding is not available: {reason}")
    _enabled = enabled


def wanted(native: bool | None) -> bool:
    """What a session started with ``native`` records: the argument, or
    the :func:`set_native_unwinding` choice for None."""
    return _enabled if native is None else native


def capture_native_stack() -> list[NativeFrame]:
    """The calling thread's native call stack, leaf first: the first frame is
    the C function that called into spprof (the interpreter's call of this
    function), the last the thread's entry (``_start`` or
    ``start_thread``). spprof's own frames are left out; at most 128 frames.

    Raises :class:`ProfilerError` (a ``RuntimeError``) naming what is missing
    when native unwinding is unavailable.
    """
    native = _state.native()
    reason = native.native_unwinding_unavailable_reason()
    if reason is not None:
        raise ProfilerError(f"native unwinding is not available: {reason}")
    return [NativeFrame(*frame) for frame in native.capture_native_stack()]
