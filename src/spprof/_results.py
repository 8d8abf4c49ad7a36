"""The native result and stats, turned into :class:`Profile` and
:class:`ProfilerStats`. Stateless: nothing here knows about sessions.

The boundary with the extension is declared once, in ``STATS_KEYS`` and
``RESULT_KEYS``: every key the extension's ``stats()`` returns, with its
type and how the parts of a joined profile combine; ``stop()`` returns the
same keys plus the result columns. tests/test_surface.py checks the
extension against these tables.
"""

from __future__ import annotations

import os
import sys
from array import array

from ._model import Frame, Profile
from ._coverage import snapshot, threads_without_samples
from ._naming import name_module_code
from ._record import frozen_record
from ._times import EpochTime

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

SUM, MAX, LAST = "sum", "max", "last"

# key: (type, how the parts of a joined profile combine)
STATS_KEYS: dict[str, tuple[type, str]] = {
    "active": (bool, LAST),
    "paused": (bool, LAST),
    "backend": (str, LAST),
    "backend_note": (str, LAST),
    "mode": (str, LAST),
    "interval_ns": (int, LAST),
    "signals": (int, SUM),
    "captured_samples": (int, SUM),
    "collected_samples": (int, SUM),
    "buffer_dropped": (int, SUM),
    "buffer_dropped_weight": (int, SUM),
    "memory_dropped": (int, SUM),
    "memory_dropped_weight": (int, SUM),
    "timer_overruns": (int, SUM),
    "overruns_at_delete": (int, SUM),
    "undelivered_weight": (int, SUM),
    "sigprof_blocked_threads": (int, SUM),
    "no_thread_state": (int, SUM),
    "walk_errors": (int, SUM),
    "truncated_stacks": (int, SUM),
    "recovered_walks": (int, SUM),
    "paused_signals": (int, SUM),
    "foreign_signals": (int, SUM),
    "stale_signals": (int, SUM),
    "early_signals": (int, SUM),
    "gc_samples": (int, SUM),
    "subinterpreter_samples": (int, SUM),
    "native": (bool, LAST),
    "native_samples": (int, SUM),
    "native_uncovered": (int, SUM),
    "timers_created": (int, SUM),
    "timers_deleted": (int, SUM),
    "timer_create_failures": (int, SUM),
    "last_create_errno": (int, LAST),
    "perf_timers_created": (int, SUM),
    "perf_fallbacks": (int, SUM),
    "native_threads": (int, SUM),
    "perf_descriptors_lost": (int, SUM),
    "perf_include_kernel": (bool, LAST),
    "registered_threads": (int, MAX),
    "handler_ns": (int, SUM),
    "service_cpu_ns": (int, SUM),
    "service_wakes": (int, SUM),
    "service_gil_ticks": (int, SUM),
    "duration_ns": (int, SUM),
    "process_cpu_ns": (int, SUM),
    "paused_ns": (int, SUM),
    "buffer_capacity": (int, MAX),
    "memory_bytes": (int, MAX),
    "memory_limit_bytes": (int, LAST),
    "allocation_failures": (int, SUM),
    "wall_ticks": (int, SUM),
    "wall_late_ticks": (int, SUM),
    "off_cpu_samples": (int, SUM),
    "gil_wait_samples": (int, SUM),
    "torn_walks": (int, SUM),
    "wall_dropped": (int, SUM),
    "wall_dropped_weight": (int, SUM),
    "state_reads": (int, SUM),
    "state_files_lost": (int, SUM),
    "wall_exit_charges": (int, SUM),
    "wall_cpu_ns": (int, SUM),
}

# Only in the result of stop(): the samples, as columns. start_monotonic_ns
# stays in ProfilerStats.raw (the clock the capture times were taken on).
RESULT_KEYS: dict[str, type] = {
    "strings": list,
    "frames": bytes,
    "stacks": bytes,
    "timestamps": bytes,
    "thread_ids": bytes,
    "stack_ids": bytes,
    "weights": bytes,
    "states": bytes,
    "gil": bytes,
    "thread_names": dict,
    "start_monotonic_ns": int,
}
_COLUMNS = frozenset(RESULT_KEYS) - {"start_monotonic_ns"}


@frozen_record
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

    def __init__(
        self,
        active: bool,
        paused: bool,
        backend: str,
        interval_ms: float,
        collected_samples: int,
        dropped_samples: int,
        timer_overruns: int,
        timer_create_failures: int,
        sigprof_blocked_threads: int,
        registered_threads: int,
        duration_ms: float,
        effective_rate_hz: float,
        signals: int,
        handler_cpu_ms: float,
        service_cpu_ms: float,
        process_cpu_ms: float,
        overhead_percent: float,
        memory_bytes: int,
        walk_errors: int,
        truncated_stacks: int,
        no_thread_state: int,
        raw: dict[str, Any],
    ) -> None:
        # The parameters, in field order, are the attributes (set past the
        # frozen class's __setattr__).
        object.__setattr__(self, "__dict__", {k: v for k, v in locals().items() if k != "self"})

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


# platform.python_version(), without importing platform (and re).
_PYTHON_VERSION = sys.version.split()[0]


def _platform_string() -> str:
    # Not platform.platform(): it runs `uname -p` in a subprocess, a fork of
    # the program at every first stop().
    u = os.uname()
    return f"{u.sysname}-{u.release}-{u.machine}"


def _column(raw: dict[str, Any], key: str) -> array:
    col = array("q")
    col.frombytes(raw[key])
    return col


def profile_from_native(
    raw: dict[str, Any],
    *,
    interval_ms: float,
    start_wall_ns: int,
    tasks_at_start: tuple[dict[int, int], int] | None = None,
) -> Profile:
    """The Profile of a native result. ``start_wall_ns`` is the wall-clock
    time (time.time_ns()) taken just before the native session started;
    ``tasks_at_start`` the process's threads then (``_coverage.snapshot()``)."""
    strings: list[str] = raw["strings"]
    fcols = _column(raw, "frames")
    # Module-level code is named after its module while sys.path is still
    # the one the profiled code imported with.
    frames = name_module_code(
        [
            # name, file, line, module (src/native/aggregator.h FrameKey): a
            # native frame has its loaded object as module (else -1), and
            # line -1 when its source line is not known.
            Frame(strings[fcols[i]], strings[fcols[i + 1]], max(fcols[i + 2], 0), fcols[i + 3] >= 0,
                  strings[fcols[i + 3]] if fcols[i + 3] >= 0 else "")
            for i in range(0, len(fcols), 4)
        ]
    )
    scols = _column(raw, "stacks")
    parents = scols[0::2]
    leaf_frames = scols[1::2]

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
    for sid in _column(raw, "stack_ids"):
        idx = remap.get(sid)
        if idx is None:
            idx = remap[sid] = len(stacks)
            stacks.append(stack_tuple(sid))
        indices.append(idx)

    # Monotonic capture times -> wall-clock nanoseconds since the epoch.
    offset = start_wall_ns - raw["start_monotonic_ns"]
    timestamps = array("q", (t + offset for t in _column(raw, "timestamps")))
    start_time = EpochTime(start_wall_ns)
    end_time = EpochTime(start_wall_ns, raw["duration_ns"])
    prof = Profile.from_columns(
        start_time=start_time,
        end_time=end_time,
        interval_ms=interval_ms,
        stacks=stacks,
        timestamps_ns=timestamps,
        thread_ids=_column(raw, "thread_ids"),
        stack_indices=indices,
        weights=_column(raw, "weights"),
        states=array("b", _column(raw, "states")),
        gil=array("b", _column(raw, "gil")),
        mode=raw.get("mode", "cpu"),
        thread_names=dict(raw["thread_names"]),
        dropped_count=raw["buffer_dropped"] + raw["memory_dropped"],
        python_version=_PYTHON_VERSION,
        platform=_platform_string(),
    )
    prof.stats = ProfilerStats.from_native({k: v for k, v in raw.items() if k not in _COLUMNS})
    if tasks_at_start is not None:
        try:
            tasks, children = snapshot()
            others = threads_without_samples(tasks_at_start[0], tasks, set(prof._tid))
        except MemoryError:
            pass  # the coverage is a nicety: the profile must not be lost for it
        else:
            prof.threads_without_samples = others
            prof.children_cpu_ms = max(0, children - tasks_at_start[1]) / 1e6
    return prof


def joined(parts: list[Profile]) -> Profile:
    """Profile.joined, with the profiler's counters of all parts combined
    as STATS_KEYS says."""
    prof = Profile.joined(parts)
    raws = [p.stats.raw for p in parts if isinstance(p.stats, ProfilerStats)]
    if raws:
        total: dict[str, Any] = dict(raws[-1])
        for key in total:
            combine = STATS_KEYS.get(key, (int, LAST))[1]
            if combine == SUM:
                total[key] = sum(r.get(key, 0) for r in raws)
            elif combine == MAX:
                total[key] = max(r.get(key, 0) for r in raws)
        total["interval_ns"] = prof.interval_ns
        prof.stats = ProfilerStats.from_native(total)
    return prof
