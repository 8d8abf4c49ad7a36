"""spprof: a sampling profiler for CPython.

Every Python thread is sampled on its own CPU clock; samples are weighted by
timer overruns so CPU totals are exact. Quick start::

    import spprof
    with spprof.Profiler(output_path="profile.html") as p:
        work()
    print(p.profile.sample_count)
"""

from ._api import (
    Profiler,
    ProfilerStats,
    ThreadProfiler,
    is_active,
    is_paused,
    pause,
    profile,
    register_thread,
    resume,
    start,
    stats,
    stop,
    unregister_thread,
)
from ._errors import ProfilerError, ProfilerWarning
from ._model import AggregatedProfile, AggregatedStack, Frame, FunctionStats, Profile, Sample

__version__ = "0.1.0"

__all__ = [
    "AggregatedProfile",
    "AggregatedStack",
    "Frame",
    "FunctionStats",
    "Profile",
    "Profiler",
    "ProfilerError",
    "ProfilerWarning",
    "ProfilerStats",
    "Sample",
    "ThreadProfiler",
    "__version__",
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
