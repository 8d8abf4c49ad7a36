"""Start/stop stress for spprof's native module.

Runs many short profiling sessions while threads come and go, so that every
native path that allocates or releases something is taken again and again:
session start/stop, the service thread, timer creation/deletion for threads
found by the scan and registered explicitly, pause/resume, code objects that
die while sampled (tombstones), start() failing (a SIGPROF handler already
there), take-over of a foreign handler, the memory-limit sizes, and a fork
child. Memory tools (valgrind memcheck, ASan/LSan) watch the process; this
script itself checks what a tool cannot see: no SIGPROF timer survives, the
SIGPROF disposition is exactly what it was, reference counts and Python heap
do not grow with the number of sessions.

    python tools/memcheck/stress.py [--cycles N] [--workers K] [--seed S]

Exit status 0 when every check passed. Fast without a tool (1000 cycles take
a few seconds); the default of 200 cycles is sized for valgrind.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import signal
import sys
import threading
import time
import tracemalloc
import warnings

import spprof
from spprof import ProfilerError

try:
    from spprof import ProfilerWarning
except ImportError:  # older spprof: no warnings of its own
    ProfilerWarning = RuntimeWarning

SIGPROF = int(signal.SIGPROF)


class Failure(Exception):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise Failure(message)


# -- process state that must be the same before and after ----------------------


class _SigAction(ctypes.Structure):
    # glibc's struct sigaction on Linux (same layout on x86_64 and aarch64).
    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def sigprof_disposition() -> tuple:
    """The kernel-side SIGPROF disposition. signal.getsignal() only reports
    what Python itself installed, so it would not notice spprof leaving its
    own handler (or SIG_IGN) behind; sigaction() does."""
    act = _SigAction()
    if _libc.sigaction(SIGPROF, None, ctypes.byref(act)) != 0:
        raise OSError(ctypes.get_errno(), "sigaction(SIGPROF) failed")
    # Only the kernel's 64-bit signal set is meaningful: glibc copies its
    # whole 1024-bit sigset_t out of a stack buffer of which the kernel
    # filled the first 8 bytes, so the rest is stack garbage.
    handler = act.handler or 0
    if handler in (0, 1):
        # SIG_DFL/SIG_IGN: flags and mask mean nothing, and Python's
        # signal.signal() sets SA_ONSTACK even for those.
        return (handler, 0, 0)
    return (handler, act.flags, act.mask[0] & 0xFFFFFFFFFFFFFFFF)


def sigprof_status_bits() -> tuple[bool, bool]:
    """(caught, ignored) for SIGPROF as /proc reports them. Under valgrind
    every signal shows as caught (valgrind's own handlers), which is why
    this is compared before/after rather than to fixed values."""
    bits = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("SigCgt", "SigIgn"):
                bits[key] = int(value.strip(), 16)
    bit = 1 << (SIGPROF - 1)
    return bool(bits["SigCgt"] & bit), bool(bits["SigIgn"] & bit)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sigprof_timers() -> list[str]:
    """IDs of this process's sampling timers: POSIX timers that deliver
    SIGPROF, and perf_event descriptors."""
    found, current = [], None
    with open("/proc/self/timers") as f:
        for line in f:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "ID":
                current = value
            elif key == "signal" and value.split("/")[0] == str(SIGPROF):
                found.append(current)
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]":
                found.append(f"perf-fd-{fd}")
        except OSError:
            pass
    return found


# -- workload ---------------------------------------------------------------------


def burn(cpu_s: float) -> int:
    """Spin on this thread's CPU clock, so its timer fires even under
    valgrind (where everything is slower but the clock still counts)."""
    end = time.thread_time() + cpu_s
    x = 0
    while time.thread_time() < end:
        x += 1
    return x


def fresh_function(tag: str):
    """A new code object per call. It dies when the caller drops it, while
    the session still runs: its samples must resolve from a tombstone."""
    ns: dict = {"time": time}
    exec(
        f"def dyn_{tag}(cpu_s):\n"
        f"    end = time.thread_time() + cpu_s\n"
        f"    n = 0\n"
        f"    while time.thread_time() < end:\n"
        f"        n += 1\n"
        f"    return n\n",
        ns,
    )
    return ns[f"dyn_{tag}"]


def gen_burn(cpu_s: float):
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        yield 1


class Workers:
    """Long-lived threads that run across sessions: they are sampled while a
    session runs, and they register/unregister themselves at random moments,
    including while the main thread is inside stop()."""

    def __init__(self, count: int, seed: int, burst_s: float) -> None:
        self.stop_event = threading.Event()
        self.errors: list[str] = []
        self.burst_s = burst_s
        self.threads = [
            threading.Thread(target=self._run, args=(seed + i,), name=f"worker-{i}", daemon=True)
            for i in range(count)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not self.stop_event.is_set():
                # Mostly asleep: they are there to be sampled and to race
                # with the main thread, not to compete with it for the GIL.
                burn(self.burst_s / 4)
                r = rng.random()
                if r < 0.2:
                    spprof.unregister_thread()
                elif r < 0.4:
                    spprof.register_thread()
                elif r < 0.45:
                    with spprof.ThreadProfiler():
                        burn(self.burst_s)
                time.sleep(rng.uniform(0.005, 0.015))
        except Exception as exc:  # reported by the main thread
            self.errors.append(f"{threading.current_thread().name}: {exc!r}")

    def join(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join()


def short_lived(kind: int, burst_s: float, errors: list[str]) -> None:
    burst_s /= 2
    try:
        if kind == 0:
            burn(burst_s)
        elif kind == 1:
            check(isinstance(spprof.register_thread(), bool), "register_thread() not a bool")
            burn(burst_s)
        elif kind == 2:
            spprof.register_thread()
            burn(burst_s / 2)
            spprof.unregister_thread()
            burn(burst_s / 2)
            spprof.register_thread()
        else:
            sum(gen_burn(burst_s))
        # Exiting while registered: the scan must delete the timer of a
        # thread that is gone.
    except Exception as exc:
        errors.append(f"short-lived thread: {exc!r}")


# -- single scenarios --------------------------------------------------------------


def takeover_cycle(burst_s: float) -> None:
    """A program handler for SIGPROF: start() must refuse without
    take_over_sigprof (and release everything it had set up), take over
    with it, and put the program's handler back on stop()."""
    hits = []
    previous = signal.signal(signal.SIGPROF, lambda signo, frame: hits.append(signo))
    try:
        before = sigprof_disposition()
        try:
            spprof.start(interval_ms=1)
        except ProfilerError:
            pass
        else:
            spprof.stop()
            raise Failure("start() accepted a session over an existing SIGPROF handler")
        check(sigprof_disposition() == before, "refused start() changed the SIGPROF disposition")
        spprof.start(interval_ms=1, take_over_sigprof=True)
        burn(burst_s)
        spprof.stop()
        check(sigprof_disposition() == before, "take-over did not restore the program's handler")
        os.kill(os.getpid(), signal.SIGPROF)
        deadline = time.monotonic() + 5
        while not hits and time.monotonic() < deadline:
            time.sleep(0.001)  # the Python-level handler runs between bytecodes
        check(bool(hits), "the program's SIGPROF handler no longer runs after take-over")
    finally:
        signal.signal(signal.SIGPROF, previous)


def fork_cycle(burst_s: float) -> None:
    """Fork in the middle of a session: the child gets no timers, can
    profile on its own, and leaves nothing behind; the parent's session is
    unaffected."""
    spprof.start(interval_ms=1)
    burn(burst_s)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            check(not spprof.is_active(), "fork child inherited an active session")
            check(sigprof_timers() == [], "fork child sees SIGPROF timers")
            spprof.start(interval_ms=1)
            burn(burst_s)
            spprof.stop()
            check(sigprof_timers() == [], "fork child left a SIGPROF timer")
        except BaseException as exc:
            sys.stderr.write(f"stress: fork child failed: {exc!r}\n")
            code = 1
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    check(os.waitstatus_to_exitcode(status) == 0, f"fork child exited with status {status}")
    burn(burst_s)
    spprof.stop()


# -- the loop -----------------------------------------------------------------------


class Totals:
    def __init__(self) -> None:
        self.sessions = 0
        self.samples = 0
        self.signals = 0
        self.timers_created = 0
        self.timers_deleted = 0
        self.threads = 0


def one_cycle(i: int, rng: random.Random, burst_s: float, totals: Totals) -> None:
    errors: list[str] = []
    interval = rng.choice((1, 1, 1, 2, 5))
    limit = 1 if i % 7 == 3 else 100  # the smallest sample buffer too
    # Both timer backends (perf_event falls back to timer_create where the
    # system refuses it).
    backend = "timer_create" if i % 2 else "auto"
    spprof.start(interval_ms=interval, memory_limit_mb=limit, backend=backend)
    check(spprof.is_active(), "is_active() false right after start()")

    if i % 11 == 0:
        try:
            spprof.start()
        except RuntimeError:
            pass
        else:
            raise Failure("a second start() did not raise")

    kinds = [rng.randrange(4) for _ in range(rng.randint(1, 3))]
    threads = [threading.Thread(target=short_lived, args=(k, burst_s, errors)) for k in kinds]
    for t in threads:
        t.start()
    totals.threads += len(threads)

    fn = fresh_function(f"{i}")
    fn(burst_s)
    del fn  # the code object dies here, mid-session

    if i % 3 == 1 and hasattr(spprof, "pause"):
        check(spprof.pause() is True, "pause() of a running session returned False")
        check(spprof.pause() is False, "second pause() returned True")
        check(spprof.is_paused(), "is_paused() false while paused")
        burn(burst_s / 2)
        check(spprof.resume() is True, "resume() of a paused session returned False")
        check(spprof.resume() is False, "second resume() returned True")
    if i % 5 == 2:
        st = spprof.stats()
        check(st.active, "stats() says inactive during a session")
    sum(gen_burn(burst_s / 2))

    # Half of the time the short-lived threads are still running (and may
    # be registering) while stop() runs.
    if i % 2 == 0:
        for t in threads:
            t.join()
    prof = spprof.stop()
    for t in threads:
        t.join()
    check(not errors, f"cycle {i}: {errors}")
    raw = prof.stats.raw
    check(raw["timers_created"] == raw["timers_deleted"],
          f"cycle {i}: {raw['timers_created']} timers created, {raw['timers_deleted']} deleted")
    check(not spprof.is_active(), "is_active() true after stop()")
    totals.sessions += 1
    totals.samples += prof.sample_count
    totals.signals += raw["signals"]
    totals.timers_created += raw["timers_created"]
    totals.timers_deleted += raw["timers_deleted"]


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    if args.sigprof_baseline == "ignore":
        # Under valgrind a timer signal can be taken by valgrind's own
        # handler for a thread blocked in a syscall and then wait for
        # valgrind's big lock while the main thread runs stop(): it is
        # finally delivered with the disposition of THAT moment, SIG_DFL,
        # and kills the process. The kernel never does this (delivery and
        # sigaction are atomic, and SIG_IGN flushes what is pending).
        # Starting from SIG_IGN keeps such a late signal harmless and still
        # checks that stop() puts back exactly what was there.
        signal.signal(signal.SIGPROF, signal.SIG_IGN)
    # Warnings are part of normal operation (under valgrind, threads look
    # as if they blocked SIGPROF: valgrind keeps host signals blocked while
    # running guest code); count them instead of printing them.
    caught_warnings = warnings.catch_warnings(record=True)
    warning_list = caught_warnings.__enter__()
    warnings.simplefilter("always", ProfilerWarning)
    # Short GIL slices: a thread's start() waits for the new thread to get
    # the GIL, and more switches mean more interleavings with stop().
    sys.setswitchinterval(0.0005)
    started = time.monotonic()
    initial_disposition = sigprof_disposition()
    initial_bits = sigprof_status_bits()

    workers = Workers(args.workers, args.seed, args.burst)
    workers.start()
    totals = Totals()

    # Heap growth is measured over the second half only: the first sessions
    # fill caches (imports, interned strings, the threading module's).
    measure_from = args.cycles // 2 if args.heap_check else -1
    heap_start = rss_start = 0
    for i in range(args.cycles):
        if i == measure_from:
            gc.collect()
            tracemalloc.start()
            heap_start = tracemalloc.get_traced_memory()[0]
            rss_start = rss_bytes()
        if args.takeover_every and i % args.takeover_every == args.takeover_every - 1:
            takeover_cycle(args.burst)
        if args.fork_every and i % args.fork_every == args.fork_every // 2:
            fork_cycle(args.burst)
        one_cycle(i, rng, args.burst, totals)
        if args.inject_leak:
            from spprof import _native
            _native._leak_for_checkers()
        check(not workers.errors, f"worker errors: {workers.errors}")
        if not args.quiet and (i + 1) % max(1, args.cycles // 10) == 0:
            print(f"stress: {i + 1}/{args.cycles} cycles, {time.monotonic() - started:.1f}s",
                  flush=True)

    heap_growth = rss_growth = 0
    if measure_from >= 0:
        gc.collect()
        heap_growth = tracemalloc.get_traced_memory()[0] - heap_start
        rss_growth = rss_bytes() - rss_start
        tracemalloc.stop()
    workers.join()
    check(not workers.errors, f"worker errors: {workers.errors}")

    # What must be back to how it was.
    check(not spprof.is_active(), "a session is still active at the end")
    timers = sigprof_timers()
    check(timers == [], f"SIGPROF timers left in /proc/self/timers: {timers}")
    check(sigprof_disposition() == initial_disposition,
          f"SIGPROF disposition changed: {initial_disposition} -> {sigprof_disposition()}")
    check(sigprof_status_bits() == initial_bits,
          f"SIGPROF caught/ignored bits changed: {initial_bits} -> {sigprof_status_bits()}")
    measured = args.cycles - max(measure_from, 0)
    if measure_from >= 0 and measured > 0:
        per_cycle = heap_growth / measured
        check(per_cycle < args.heap_limit,
              f"Python heap grew by {heap_growth} bytes over {measured} sessions "
              f"({per_cycle:.0f} B/session, limit {args.heap_limit}): objects leak per session")
        # Resident memory also covers native allocations that stay
        # reachable (a cache that only grows), which a leak checker does
        # not report. Page-granular and allocator-dependent, hence the
        # coarse bound.
        per_cycle = rss_growth / measured
        check(per_cycle < args.rss_limit,
              f"resident memory grew by {rss_growth} bytes over {measured} sessions "
              f"({per_cycle:.0f} B/session, limit {args.rss_limit}): memory grows per session")

    elapsed = time.monotonic() - started
    caught_warnings.__exit__(None, None, None)
    profiler_warnings = sum(1 for w in warning_list if issubclass(w.category, ProfilerWarning))
    growth = (f"over the last {measured} sessions heap growth {heap_growth} B, RSS growth "
              f"{rss_growth // 1024} KiB" if measure_from >= 0 else "heap growth not measured")
    print(
        f"stress: OK: {totals.sessions} sessions in {elapsed:.1f}s, {totals.threads} short-lived "
        f"threads, {totals.samples} samples from {totals.signals} signals, "
        f"timers {totals.timers_created} created / {totals.timers_deleted} deleted, "
        f"{growth}, {profiler_warnings} ProfilerWarnings; "
        f"no SIGPROF timer left, disposition restored",
        flush=True,
    )
    if totals.signals == 0:
        # Not a failure (start/stop paths were still exercised), but say so:
        # the handler and resolver paths were not.
        print("stress: WARNING: no SIGPROF was delivered; handler paths not exercised", flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=int, default=200, help="start/stop cycles (default 200)")
    p.add_argument("--workers", type=int, default=3, help="long-lived threads (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--burst", type=float, default=0.004,
                   help="CPU seconds per burst of work (default 0.004; CPU timers "
                        "fire on scheduler ticks, so much less yields no samples)")
    p.add_argument("--takeover-every", type=int, default=50,
                   help="a SIGPROF take-over scenario every N cycles (0: never)")
    p.add_argument("--fork-every", type=int, default=100,
                   help="a fork-during-session scenario every N cycles (0: never)")
    p.add_argument("--no-heap-check", dest="heap_check", action="store_false",
                   help="skip the tracemalloc growth check")
    p.add_argument("--heap-limit", type=float, default=256.0,
                   help="allowed Python heap growth per session, bytes (default 256)")
    p.add_argument("--rss-limit", type=float, default=4096.0,
                   help="allowed resident memory growth per session, bytes (default 4096)")
    p.add_argument("--sigprof-baseline", choices=("default", "ignore"), default="default",
                   help="SIGPROF disposition before the first session (default: SIG_DFL, "
                        "as in most programs; 'ignore' for valgrind, see run())")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--inject-leak", action="store_true",
                   help="call spprof's self-test leak after every cycle (tools/memcheck)")
    args = p.parse_args()
    try:
        return run(args)
    except Failure as exc:
        print(f"stress: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
