"""Start/stop stress for spprof's native module.

Runs many short profiling sessions while threads come and go, so that every
native path that allocates or releases something is taken again and again:
session start/stop, the service thread, timer creation/deletion for threads
found by the scan and registered explicitly, pause/resume, code objects that
die while sampled (tombstones), start() failing (a SIGPROF handler already
there), take-over of a foreign handler, the memory-limit sizes, and a fork
child. Sessions are in CPU or wall mode (--mode; by default a seeded random
mix, and the fork and take-over scenarios alternate): wall sessions also
run the `spprof-wall` reader thread, which reads blocked threads' stacks
from outside and keeps /proc/self/task/<tid>/syscall files open, so their
cycles add threads that sleep, wait for a lock or an event, or block
briefly and exit while they are being read.

Memory tools (valgrind memcheck, ASan/LSan) watch the process; this script
itself checks what a tool cannot see: no SIGPROF timer survives, the
SIGPROF disposition is exactly what it was, no `spprof-wall` thread is left
after stop() (nor in a fork child), no descriptor of spprof's is left open
and the set of open descriptors is the one from before (also in a fork
child, where the reader's files must not leak either), reference counts and
Python heap do not grow with the number of sessions.

    python tools/memcheck/stress.py [--cycles N] [--mode cpu|wall|mixed] [--workers K] [--seed S]

Exit status 0 when every check passed. Fast without a tool (1000 cycles take
about half a minute); the default of 200 cycles is sized for valgrind.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import gc
import os
import random
import re
import resource
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


WALL_THREAD_NAME = "spprof-wall"
# What a descriptor of spprof's points to: the wall reader's per-thread
# /proc syscall files and the perf_event timers.
_SPPROF_FD_RE = re.compile(r"^(/proc/\d+/task/\d+/syscall|anon_inode:\[perf_event\])$")


def wall_threads() -> list[int]:
    """Thread ids of this process named like spprof's wall reader."""
    found = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == WALL_THREAD_NAME:
                    found.append(int(tid))
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited meanwhile
    return found


def wait_for_wall_thread(timeout: float = 10.0) -> bool:
    """Whether a reader thread shows up (it names itself once it runs; in a
    fork's parent it is restarted from a pending call of the main thread)."""
    deadline = time.monotonic() + timeout
    while True:
        if wall_threads():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)


# Paths of files a tool running this script opens in it (valgrind's XML
# output for a fork child): not the program's, not spprof's (--tool-files).
TOOL_FILE_PREFIXES: list[str] = []


def open_fds() -> dict[int, str]:
    """Descriptor -> what it points to, for this process's descriptors below
    its RLIMIT_NOFILE soft limit (valgrind keeps most of its own above the
    limit it shows the program), less the tool's files. The directory
    listing's own descriptor is gone by the time it would be read."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if soft != resource.RLIM_INFINITY and fd >= soft:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not target.startswith(tuple(TOOL_FILE_PREFIXES)):
            fds[fd] = target
    return fds


def spprof_fds(fds: dict[int, str] | None = None) -> dict[int, str]:
    fds = open_fds() if fds is None else fds
    return {fd: target for fd, target in fds.items() if _SPPROF_FD_RE.match(target)}


def fd_difference(before: dict[int, str], after: dict[int, str]) -> str:
    opened = {fd: t for fd, t in after.items() if before.get(fd) != t}
    closed = {fd: t for fd, t in before.items() if after.get(fd) != t}
    return f"opened/changed {opened}, closed {closed}"


def check_clean(what: str, baseline_fds: dict[int, str]) -> None:
    """No session's leftovers: no reader thread, no timer, no descriptor of
    spprof's, the descriptors of before."""
    threads = wall_threads()
    check(not threads, f"{what}: {WALL_THREAD_NAME} thread(s) left: {threads}")
    fds = open_fds()
    ours = spprof_fds(fds)
    check(not ours, f"{what}: spprof's descriptors left open: {ours}")
    check(fds == baseline_fds, f"{what}: descriptors differ: {fd_difference(baseline_fds, fds)}")


def wall_fd_floor() -> int:
    """Where the reader puts its /proc files (wall_reader.cpp): from half of
    RLIMIT_NOFILE, at most from 1024."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return min(soft // 2, 1024)


def low_state_files(tries: int = 10, pause_s: float = 0.02) -> dict[int, str]:
    """The reader's /proc files kept below wall_fd_floor(). The reader
    opens each one at the lowest free number and moves it up at once, so a
    low one seen once may be in that move (seen under valgrind, which can
    keep the reader off a processor between the two): only one still there,
    the same file at the same number, after `tries` looks `pause_s` apart
    is kept low."""
    floor = wall_fd_floor()
    low = {fd: t for fd, t in spprof_fds().items() if "/syscall" in t and fd < floor}
    for _ in range(tries):
        if not low:
            break
        time.sleep(pause_s)
        now = spprof_fds()
        low = {fd: t for fd, t in low.items() if now.get(fd) == t}
    return low


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


def blocker(kind: int, block_s: float, lock: threading.Lock, event: threading.Event,
            errors: list[str]) -> None:
    """A thread of a wall session that is off CPU most of its life, then
    exits, often while the reader is reading its stack (it blocks for about
    an interval or two: just long enough to be charged)."""
    try:
        if kind == 0:
            for _ in range(3):
                time.sleep(block_s / 3)
        elif kind == 1:
            # Held by the main thread for part of the cycle, or not at all.
            if lock.acquire(timeout=block_s * 4):
                lock.release()
        elif kind == 2:
            event.wait(block_s * 2)
        else:
            # Blocked, then a burst on CPU (waiting for the GIL too), then
            # blocked again right before it ends.
            time.sleep(block_s / 2)
            burn(block_s / 4)
            time.sleep(block_s / 2)
    except Exception as exc:
        errors.append(f"blocking thread: {exc!r}")


# -- single scenarios --------------------------------------------------------------


# Native frames in a session: "off", "on" or "mixed" (each session at
# random, from --seed), where native unwinding is available (--native).
NATIVE = {"choice": "mixed", "rng": random.Random("native-1")}


def start_session(mode: str, **kw) -> None:
    if mode == "wall":
        kw["mode"] = "wall"  # else the default: also works with an spprof without modes
    choice = NATIVE["choice"]
    if choice != "off" and getattr(spprof, "native_unwinding_available", lambda: False)():
        if choice == "on" or NATIVE["rng"].random() < 0.5:
            kw["native"] = True
    spprof.start(**kw)


def takeover_cycle(burst_s: float, mode: str) -> None:
    """A program handler for SIGPROF: start() must refuse without
    take_over_sigprof (and release everything it had set up), take over
    with it, and put the program's handler back on stop()."""
    hits = []
    previous = signal.signal(signal.SIGPROF, lambda signo, frame: hits.append(signo))
    try:
        before = sigprof_disposition()
        try:
            start_session(mode, interval_ms=1)
        except ProfilerError:
            pass
        else:
            spprof.stop()
            raise Failure("start() accepted a session over an existing SIGPROF handler")
        check(sigprof_disposition() == before, "refused start() changed the SIGPROF disposition")
        check(not wall_threads(), f"refused start() left a {WALL_THREAD_NAME} thread")
        start_session(mode, interval_ms=1, take_over_sigprof=True)
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


def fork_cycle(burst_s: float, mode: str, variant: int) -> None:
    """Fork in the middle of a session: the child gets no timers, no reader
    thread and none of spprof's descriptors, can profile on its own, and
    leaves nothing behind; the parent's session is unaffected (its reader
    comes back). Variants: the session paused across the fork; a thread
    blocked (being read) while the fork happens; the fork made by another
    thread than the main one (the parent's reader is restarted by the main
    thread) while the main thread runs."""
    baseline = open_fds()
    stop_blocker = threading.Event()
    try:
        _fork_cycle(burst_s, mode, variant, baseline, stop_blocker)
    finally:
        stop_blocker.set()  # on a failure too: the thread must not outlive the script


def _fork_cycle(burst_s: float, mode: str, variant: int, baseline: dict[int, str],
                stop_blocker: threading.Event) -> None:
    start_session(mode, interval_ms=1)
    blocked = None
    if mode == "wall" and variant % 2 == 0:
        blocked = threading.Thread(target=stop_blocker.wait, name="fork-blocked", daemon=True)
        blocked.start()
    burn(burst_s)
    if mode == "wall":
        check(wait_for_wall_thread(), f"no {WALL_THREAD_NAME} thread in a wall session")
    paused = variant % 3 == 1 and hasattr(spprof, "pause")
    if paused:
        spprof.pause()
    if variant % 5 == 3:
        forked: list[int] = []
        forker = threading.Thread(target=lambda: forked.append(fork_and_check(burst_s, mode, baseline)),
                                  name="forker", daemon=True)
        forker.start()
        while forker.is_alive():
            burn(burst_s / 8)
        forker.join()
        check(len(forked) == 1, "the forking thread failed")
        pid = forked[0]
    else:
        pid = fork_and_check(burst_s, mode, baseline)
    _, status = os.waitpid(pid, 0)
    check(os.waitstatus_to_exitcode(status) == 0, f"fork child exited with status {status}")
    if paused:
        spprof.resume()
    burn(burst_s)
    if mode == "wall":
        check(wait_for_wall_thread(), f"the parent's {WALL_THREAD_NAME} thread did not come back "
                                      f"after fork")
    stop_blocker.set()
    if blocked is not None and variant % 4 == 0:
        blocked.join()  # else it exits while stop() runs
    spprof.stop()
    if blocked is not None:
        blocked.join()
    check_clean("after a fork cycle", baseline)


def fork_and_check(burst_s: float, mode: str, baseline: dict[int, str]) -> int:
    """os.fork(): the child's checks, then its exit status; the child's pid
    in the parent."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 0
    try:
        check(not spprof.is_active(), "fork child inherited an active session")
        check(sigprof_timers() == [], "fork child sees SIGPROF timers")
        check(len(os.listdir("/proc/self/task")) == 1, "fork child has more than one thread")
        check_clean("fork child", baseline)
        start_session(mode, interval_ms=1)
        sleeper = threading.Thread(target=time.sleep, args=(burst_s,))
        sleeper.start()
        burn(burst_s)
        if mode == "wall":
            check(wait_for_wall_thread(), f"no {WALL_THREAD_NAME} thread in the child's session")
        sleeper.join()
        spprof.stop()
        check(sigprof_timers() == [], "fork child left a SIGPROF timer")
        check_clean("fork child after its own session", baseline)
    except BaseException as exc:
        sys.stderr.write(f"stress: fork child failed: {exc!r}\n")
        code = 1
    sys.stderr.flush()
    os._exit(code)


# -- the loop -----------------------------------------------------------------------


class Totals:
    def __init__(self) -> None:
        self.sessions = 0
        self.samples = 0
        self.signals = 0
        self.timers_created = 0
        self.timers_deleted = 0
        self.threads = 0
        self.wall_sessions = 0
        self.off_cpu_samples = 0
        self.gil_wait_samples = 0
        self.torn_walks = 0
        self.state_reads = 0


def one_cycle(i: int, rng: random.Random, burst_s: float, totals: Totals, mode: str) -> None:
    errors: list[str] = []
    wall = mode == "wall"
    interval = rng.choice((1, 1, 1, 2, 5))
    limit = 1 if i % 7 == 3 else 100  # the smallest sample buffer too
    # Both timer backends (perf_event falls back to timer_create where the
    # system refuses it).
    backend = "timer_create" if i % 2 else "auto"
    fds_before = open_fds()
    lock = threading.Lock()
    event = threading.Event()
    hold_lock = wall and rng.random() < 0.5
    if hold_lock:
        lock.acquire()  # blockers of kind 1 wait for it, released mid-cycle or after stop()
    start_session(mode, interval_ms=interval, memory_limit_mb=limit, backend=backend)
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
    if wall:
        # Threads off CPU, for the reader: it reads their stacks while they
        # block, and as they end. A blocking span of one or two intervals.
        block_s = interval / 1000 * rng.uniform(1.0, 2.5)
        threads += [threading.Thread(target=blocker,
                                     args=(rng.randrange(4), block_s, lock, event, errors))
                    for _ in range(rng.randint(1, 4))]
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
    if wall:
        if hold_lock and i % 4 < 2:
            lock.release()
            hold_lock = False
        event.set()
        check(wait_for_wall_thread(), f"no {WALL_THREAD_NAME} thread in a wall session")
        low = low_state_files()
        check(not low, f"the reader keeps /proc files below descriptor {wall_fd_floor()}: {low}")

    # Half of the time the short-lived threads are still running (and may
    # be registering) while stop() runs.
    if i % 2 == 0:
        for t in threads:
            t.join()
    prof = spprof.stop()
    # Right after stop(): the reader is joined and has closed its files;
    # the perf_event descriptors are closed too.
    threads_left = wall_threads()
    check(not threads_left, f"cycle {i}: {WALL_THREAD_NAME} thread(s) left after stop(): "
                            f"{threads_left}")
    ours = spprof_fds()
    check(not ours, f"cycle {i}: spprof's descriptors left open after stop(): {ours}")
    if hold_lock:
        lock.release()
    event.set()
    for t in threads:
        t.join()
    fds_after = open_fds()
    check(fds_after == fds_before,
          f"cycle {i}: descriptors differ after the session: {fd_difference(fds_before, fds_after)}")
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
    if wall:
        totals.wall_sessions += 1
        totals.off_cpu_samples += raw.get("off_cpu_samples", 0)
        totals.gil_wait_samples += raw.get("gil_wait_samples", 0)
        totals.torn_walks += raw.get("torn_walks", 0)
        totals.state_reads += raw.get("state_reads", 0)


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
    if NATIVE["choice"] != "off" and getattr(spprof, "native_unwinding_available", lambda: False)():
        # libunwind's pipe: opened by its first unwind, kept for the
        # process's life (out of the program's way, unwinder_pipe.h).
        spprof.capture_native_stack()
    initial_fds = open_fds()
    # Which mode each session runs in: its own seeded stream, so the other
    # choices do not depend on --mode.
    mode_rng = random.Random(f"mode-{args.seed}")

    def mode_of_next() -> str:
        if args.mode == "mixed":
            return "wall" if mode_rng.random() < 0.5 else "cpu"
        return args.mode

    def mode_of_scenario(k: int) -> str:
        # The rare scenarios alternate, wall first: a short run has both.
        if args.mode == "mixed":
            return "wall" if k % 2 == 0 else "cpu"
        return args.mode

    workers = Workers(args.workers, args.seed, args.burst)
    workers.start()
    totals = Totals()
    forks = {"cpu": 0, "wall": 0}

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
            takeover_cycle(args.burst, mode_of_scenario(i // args.takeover_every))
        if args.fork_every and i % args.fork_every == args.fork_every // 2:
            fork_mode = mode_of_scenario(i // args.fork_every)
            # Each mode's forks go through the variants in turn.
            fork_cycle(args.burst, fork_mode, forks[fork_mode])
            forks[fork_mode] += 1
        one_cycle(i, rng, args.burst, totals, mode_of_next())
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
    check_clean("at the end", initial_fds)
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
        f"stress: OK: {totals.sessions} sessions in {elapsed:.1f}s ({totals.wall_sessions} in wall "
        f"mode; forks: {forks['cpu']} cpu, {forks['wall']} wall), {totals.threads} short-lived "
        f"threads, {totals.samples} samples from {totals.signals} signals, "
        f"timers {totals.timers_created} created / {totals.timers_deleted} deleted, "
        f"wall reader: {totals.off_cpu_samples} off-CPU samples ({totals.gil_wait_samples} GIL "
        f"waits, {totals.torn_walks} torn walks, {totals.state_reads} state reads), "
        f"{growth}, {profiler_warnings} ProfilerWarnings; "
        f"no SIGPROF timer left, disposition restored, no {WALL_THREAD_NAME} thread and no "
        f"descriptor of spprof's left",
        flush=True,
    )
    if totals.signals == 0:
        # Not a failure (start/stop paths were still exercised), but say so:
        # the handler and resolver paths were not.
        print("stress: WARNING: no SIGPROF was delivered; handler paths not exercised", flush=True)
    if totals.wall_sessions and totals.off_cpu_samples == 0:
        print("stress: WARNING: no off-CPU sample was taken; the wall reader's stack reads "
              "were not exercised", flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=int, default=200, help="start/stop cycles (default 200)")
    p.add_argument("--workers", type=int, default=3, help="long-lived threads (default 3)")
    p.add_argument("--mode", choices=("cpu", "wall", "mixed"), default="mixed",
                   help="sampling mode of the sessions (default mixed: each session CPU or "
                        "wall at random, from --seed; the fork and take-over scenarios "
                        "alternate, wall first)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--native", choices=("off", "on", "mixed"), default=None,
                   help="native frames in the sessions, where available: mixed (each "
                        "session at random, from --seed) is the default with --no-heap-check "
                        "(the memory tools' runs), else off: libunwind's frame cache fills "
                        "as new code is sampled (bounded, a few MB), which the resident "
                        "memory check cannot tell from a leak")
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
    p.add_argument("--tool-files", action="append", default=[], metavar="PREFIX",
                   help="descriptors of files under this path are the memory tool's, not "
                        "the program's or spprof's (valgrind's XML files; repeatable)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--inject-leak", action="store_true",
                   help="call spprof's self-test leak after every cycle (tools/memcheck)")
    args = p.parse_args()
    TOOL_FILE_PREFIXES.extend(args.tool_files)
    NATIVE["choice"] = args.native or ("off" if args.heap_check else "mixed")
    NATIVE["rng"] = random.Random(f"native-{args.seed}")
    # A crash (SIGSEGV, SIGFPE, ...) says where the threads were instead of
    # ending the run without a word. (ASan keeps SIGSEGV for its report:
    # run_asan.py sets allow_user_segv_handler=0.)
    faulthandler.enable(all_threads=True)
    try:
        return run(args)
    except Failure as exc:
        print(f"stress: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
