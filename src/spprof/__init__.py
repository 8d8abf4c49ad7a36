"""spprof: a sampling profiler for CPython.

Every Python thread is sampled on its own CPU clock; samples are weighted by
timer overruns so CPU totals are exact. Quick start::

    import spprof
    with spprof.Profiler(output_path="profile.html") as p:
        work()
    print(p.profile.sample_count)
"""

from ._api import (
    ThreadProfiler,
    is_active,
    is_paused,
    pause,
    register_thread,
    resume,
    start,
    stats,
    stop,
    unregister_thread,
)
from ._errors import ProfilerError, ProfilerWarning
from ._native_frames import (
    NativeFrame,
    capture_native_stack,
    native_unwinding_available,
    native_unwinding_enabled,
    set_native_unwinding,
)
from ._profiler import Profiler, profile

# Names whose modules are imported when first used (folded stacks are for
# reports); the others are loaded with the session layer already.
_LAZY = {
    "AggregatedProfile": "._aggregate",
    "AggregatedStack": "._aggregate",
    "Frame": "._model",
    "FunctionStats": "._aggregate",
    "Profile": "._model",
    "Sample": "._model",
    "ProfilerStats": "._results",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spprof' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "AggregatedProfile",
    "AggregatedStack",
    "Frame",
    "FunctionStats",
    "NativeFrame",
    "Profile",
    "Profiler",
    "ProfilerError",
    "ProfilerWarning",
    "ProfilerStats",
    "Sample",
    "ThreadProfiler",
    "__version__",
    "capture_native_stack",
    "is_active",
    "is_paused",
    "native_unwinding_available",
    "native_unwinding_enabled",
    "pause",
    "profile",
    "register_thread",
    "resume",
    "set_native_unwinding",
    "start",
    "stats",
    "stop",
    "unregister_thread",
]
