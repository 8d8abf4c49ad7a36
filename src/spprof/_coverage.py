"""How much of the process's CPU a profile accounts for, and what can be
seen of the rest.

The samples cover the CPU of the threads that run Python. The process also
spends CPU in threads that never run Python (a BLAS pool, a C library's
workers), in child processes, and in spprof itself; a report that does not
say so would let a user believe the profile is the whole story. At start()
and stop() the session lists the threads in /proc/self/task and reads each
one's CPU clock (and the CPU of waited-for children from /proc/self/stat);
the difference names the threads that used CPU without being sampled.

Imports nothing when called: start() and stop() may run where the address
space is exhausted.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SERVICE_THREAD", "coverage_lines", "duration_text", "snapshot", "threads_without_samples"]

# The kernel name of spprof's own service thread (src/native/service_thread.h).
SERVICE_THREAD = "spprof-service"

# Reports explain the rest when the samples cover less than this share.
EXPLAIN_BELOW = 0.90
# Threads listed by name in a report.
LISTED_THREADS = 5


def _read(path: str) -> bytes:
    # os-level calls: a file object costs more than the read itself here.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK") or 100
    except (OSError, ValueError):
        return 100


def _thread_cpu_ns(tid: int) -> int:
    # The thread's CPU clock, by its id (the kernel's encoding of a
    # per-thread CPU clock: CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED): exact, no
    # file, about 1 us. OSError once the thread has ended.
    return time.clock_gettime_ns((~tid << 3) | 6)


def snapshot() -> tuple[dict[int, int], int]:
    """(tid -> CPU ns since the thread began, CPU ns of waited-for children)
    now. Empty and 0 where /proc cannot be read."""
    tasks: dict[int, int] = {}
    children = 0
    try:
        names = os.listdir("/proc/self/task")
    except OSError:
        return tasks, children
    for name in names:
        try:
            tid = int(name)
            tasks[tid] = _thread_cpu_ns(tid)
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    try:
        fields = _read("/proc/self/stat").rsplit(b")", 1)[1].split()
        children = (int(fields[13]) + int(fields[14])) * 1_000_000_000 // _clock_ticks()
    except (OSError, ValueError, IndexError):
        pass
    return tasks, children


def _kernel_name(tid: int) -> str:
    try:
        return _read(f"/proc/self/task/{tid}/comm").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def threads_without_samples(
    before: dict[int, int], after: dict[int, int], sampled: set[int]
) -> tuple[tuple[int, str, float], ...]:
    """``(tid, kernel name, CPU ms during the session)`` of the threads that
    used at least 1 ms of CPU but have no sample, costliest first (spprof's
    own service thread excluded: its CPU is in the stats)."""
    out = []
    for tid, cpu in after.items():
        if tid in sampled:
            continue
        used = cpu - before.get(tid, 0)
        if used < 1_000_000:
            continue
        name = _kernel_name(tid)
        if name != SERVICE_THREAD:
            out.append((tid, name, used / 1e6))
    out.sort(key=lambda t: (-t[2], t[0]))
    return tuple(out)


def duration_text(ms: float) -> str:
    """``12.3 ms`` or ``2.29 s``: how every report writes a duration."""
    return f"{ms / 1000.0:.2f} s" if ms >= 1000.0 else f"{ms:.1f} ms"


def coverage_lines(profile: Any) -> list[str]:
    """``profiled 2.29 s of 4.66 s process CPU (49%)``, and when that is
    under 90%, lines on what the rest is, as far as it is known. Nothing
    for a profile without the process's CPU (built by hand)."""
    process_ms = profile.process_cpu_ms
    if not process_ms or process_ms <= 0:
        return []
    profiled = profile.total_cpu_ms
    share = profiled / process_ms
    out = [f"profiled {duration_text(profiled)} of {duration_text(process_ms)} process CPU ({100 * share:.0f}%)"]
    if profile.children_cpu_ms:
        out.append(
            f"child processes that ended during the session used {duration_text(profile.children_cpu_ms)} "
            "more (not profiled)"
        )
    raw = getattr(profile.stats, "raw", None) or {}
    interval_ms = raw.get("interval_ns", 0) / 1e6
    late_ms = raw.get("undelivered_weight", 0) * interval_ms
    # A signal on its way at stop is normal; more than a few is worth a line.
    if late_ms > 0 and late_ms >= max(3 * interval_ms, 0.02 * process_ms):
        # The kernel checks a CPU-time timer late on a busy machine (by
        # hundreds of ms measured): what a thread used after its last signal.
        out.append(f"{duration_text(late_ms)} of CPU used after the threads' last samples is not in the profile "
                   "(their timer signals had not come when they ended or the session stopped)")
    if share >= EXPLAIN_BELOW:
        return out
    # One line per part: a report cuts lines to its width.
    others = profile.threads_without_samples
    if others:
        total = sum(t[2] for t in others)
        out.append(
            f"the rest: threads that ran no Python: {duration_text(total)} in {len(others)}"
            + (f", the first {LISTED_THREADS} listed" if len(others) > LISTED_THREADS else "")
        )
        out += [f"  {name or '?'} (tid {tid}): {duration_text(ms)}" for tid, name, ms in others[:LISTED_THREADS]]
    stats = profile.stats
    own = getattr(stats, "service_cpu_ms", 0.0) + getattr(stats, "handler_cpu_ms", 0.0)
    if own >= 1.0:
        out.append(f"the rest: spprof itself: {duration_text(own)}")
    if not others and own < 1.0:
        out.append("the rest: threads that ended during the session without a sample, or time "
                   "outside any Python frame")
    return out
