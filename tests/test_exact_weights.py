"""Sample weights are exact, not only unbiased: for a thread sampled from
its start, the summed weight of its samples is its CPU time over the
interval, to within the expirations at the edges of what is measured.

Why this holds: every timer expiration (a point of the thread's CPU-time
grid) is charged exactly once, to the first sample taken after it
(signal_handler.cpp). Expirations whose signal was lost or came late are
added to the next sample's weight; signals that come before the next grid
point charge nothing. So the weight of the samples inside a measured span
of CPU time `c` is `c / interval` plus or minus one expiration at each end
of the span. This is arithmetic, not statistics: the bounds below do not
depend on how loaded the machine is.

The reference is the thread's CPU clock (``time.thread_time()``), the time
the program is charged for (getrusage, ``ps``). On the perf_event backend
the event's task-clock count is not that clock: in a virtual machine it
also counts steal time (the host ran another guest while the thread was
scheduled on its vCPU), and weights read off the count were over by that
much: 30 ms threads profiled as 33 to 48 ms, 151 samples after resume
where 100 were due. These tests run with two CPU-bound processes alongside,
which is when that showed.
"""

from __future__ import annotations

import pytest

from conftest import run_scenario

LOAD_SRC = """
import subprocess, sys, atexit
_load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
@atexit.register
def _stop_load():
    for p in _load:
        p.kill()
        p.wait()
"""

SRC = LOAD_SRC + """
import threading, time, spprof

def burn(cpu_s):
    t0 = time.thread_time()
    while time.thread_time() < t0 + cpu_s:
        pass
    return time.thread_time() - t0

def measured_burn(cpu_s):
    return burn(cpu_s)

def paused_burn(cpu_s):
    return burn(cpu_s)

def thread_body(cpu_s, out):
    out["start"] = time.thread_time()
    burn(cpu_s)
    # All the thread's CPU up to here: its start-up included.
    out["cpu"] = time.thread_time()
    out["tid"] = threading.get_native_id()

try:
    spprof.start(interval_ms=INTERVAL_MS, backend=BACKEND)
except spprof.ProfilerError as e:
    emit({"skip": str(e)})
    raise SystemExit(0)
measured = 0.0
paused_cpu = 0.0
threads = []
main_start = time.thread_time()
for cycle in range(CYCLES):
    measured += measured_burn(SPAN_S)
    p0 = time.thread_time()
    spprof.pause()
    paused_burn(0.05)
    spprof.resume()
    paused_cpu += time.thread_time() - p0
    for _ in range(THREADS_PER_CYCLE):
        out = {}
        t = threading.Thread(target=thread_body, args=(THREAD_S, out))
        t.start()
        t.join()
        threads.append(out)
main_cpu = time.thread_time() - main_start - paused_cpu
prof = spprof.stop()

def weight(pred):
    return sum(s.weight for s in prof.samples if pred(s))

main_tid = threading.get_native_id()
emit({
    "backend": prof.stats.backend,
    "measured_ms": measured * 1000,
    "main_cpu_ms": main_cpu * 1000,
    "main_profiled": weight(lambda s: s.thread_id == main_tid),
    "profiled": weight(lambda s: any(f.function_name == "measured_burn" for f in s.frames)),
    "while_paused": weight(lambda s: any(f.function_name == "paused_burn" for f in s.frames)),
    "threads": [
        {"cpu_ms": t["cpu"] * 1000, "start_ms": t["start"] * 1000,
         "profiled": weight(lambda s, tid=t["tid"]: s.thread_id == tid)}
        for t in threads
    ],
    "raw": {k: v for k, v in prof.stats.raw.items() if isinstance(v, int) and v},
})
"""


def run(backend: str, interval_ms: int, cycles: int, span_s: float, threads: int,
        thread_s: float) -> dict:
    params = (f"INTERVAL_MS, BACKEND, CYCLES, SPAN_S, THREADS_PER_CYCLE, THREAD_S = "
              f"{interval_ms}, {backend!r}, {cycles}, {span_s}, {threads}, {thread_s}\n")
    return run_scenario(params + SRC, timeout=600)


def check(result: dict, interval_ms: int, cycles: int, lost_per_pause: int = 0,
          lost_share: float = 0.0) -> None:
    print(result)
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["while_paused"] == 0, result
    # Intervals used whose signal had not come at a pause or at stop are
    # not charged, and counted (undelivered_weight).
    lost_per_pause += result["raw"].get("undelivered_weight", 0) / cycles
    # The main thread's weight is its CPU in the session (while not paused):
    # one expiration may fall on each side of the edges, and start() and
    # stop() use a little CPU of their own inside the session (about a
    # millisecond each). This is what weights read off the task clock broke.
    main_expected = result["main_cpu_ms"] / interval_ms
    assert -3 - lost_per_pause * cycles - lost_share * main_expected \
        <= result["main_profiled"] - main_expected <= 3 + 2 / interval_ms, (
        f"main thread weight {result['main_profiled']} for {main_expected:.1f} intervals of CPU")
    # Inside the session the weight is where the CPU went: each span may
    # lose the expiration due just before its end to what runs next and
    # gain the one before its start; the sum over the spans is within
    # [-1, 1] per span, mean 0, standard deviation about sqrt(cycles / 6),
    # and the upper bound is over 5 of them (no over-count). On an
    # overloaded machine a signal can come several intervals late (merged
    # with the next one while the thread waited for a CPU): that moves
    # weight out of a span to pause(), never out of the profile (the total
    # above stays exact), so the lower bound allows 1% more.
    expected = result["measured_ms"] / interval_ms
    bound = 2 + 2 * (cycles / 6) ** 0.5 * 2.5
    low = -bound - 0.01 * expected - lost_per_pause * cycles - lost_share * expected
    assert low <= result["profiled"] - expected <= bound, (
        f"weight on measured_burn {result['profiled']} for {expected:.1f} intervals of CPU "
        f"({result['backend']}, {result['raw'].get('early_signals', 0)} early signals)")
    # A thread's samples cover its CPU from its first instruction; its CPU
    # after thread_body read the clock (the thread's exit) is under one
    # interval; one expiration may fall on each side of the edges.
    off = [(t["profiled"], round(t["cpu_ms"] / interval_ms, 1)) for t in result["threads"]
           if not -2 <= t["profiled"] - t["cpu_ms"] / interval_ms <= 2]
    assert not off, (f"threads whose weight is not their CPU in intervals "
                     f"(weight, intervals): {off} of {len(result['threads'])}")


# The kernel's perf_event clock against the thread's: the same on every Python (make test runs it once).
@pytest.mark.default_python
def test_perf_event_weights_are_the_threads_cpu_time():
    """perf_event at 1 ms, 8 cycles of 0.4 s measured, a pause, and five
    30 ms threads: the weight on the measured spans is their CPU in
    milliseconds within 2 per span, each 30 ms thread's weight is its CPU
    within 2, nothing is charged while paused."""
    check(run("perf_event", 1, 8, 0.4, 5, 0.03), 1, 8)


@pytest.mark.default_python
def test_timer_create_weights_are_the_threads_cpu_time():
    """The same on POSIX CPU timers at 4 ms (a tick), 3 spans of 0.8 s.
    They are checked on ticks only, so the signal of an expiration comes up
    to a tick late: the ones due in the last tick of the span (its end, then
    pause() itself) are not charged but counted (undelivered_weight); under
    load the kernel checks these timers late, by up to 240 ms of the
    thread's CPU measured, and each signal charges every interval passed
    since the last (the thread's CPU-time grid), so nothing else is lost.
    Threads are not checked (a POSIX timer misses the CPU a thread uses
    after the last tick before it exits, see the README)."""
    check(run("timer_create", 4, 3, 0.8, 0, 0.0), 4, 3)


SHORT_THREADS_SRC = LOAD_SRC + """
import _thread, threading, time, spprof

def body(out, done):
    out["tid"] = threading.get_native_id()
    # All the thread's CPU to here, from its first instruction. What it
    # uses after this (returning, exiting) is not in it.
    out["cpu"] = time.thread_time()
    done.release()

try:
    spprof.start(interval_ms=1, backend="perf_event")
except spprof.ProfilerError as e:
    emit({"skip": str(e)})
    raise SystemExit(0)
threads = []
for _ in range(N_THREADS):
    out = {}
    done = _thread.allocate_lock()
    done.acquire()
    _thread.start_new_thread(body, (out, done))
    done.acquire()
    threads.append(out)
time.sleep(0.05)
prof = spprof.stop()
if prof.stats.backend != "perf_event":
    emit({"skip": "no perf_event timers: " + prof.stats.backend})
    raise SystemExit(0)
tids = {t["tid"] for t in threads}
emit({
    "threads": len(threads),
    "cpu_intervals": sum(t["cpu"] for t in threads) * 1000,
    "weight": sum(s.weight for s in prof.samples if s.thread_id in tids),
    "sampled_threads": len({s.thread_id for s in prof.samples if s.thread_id in tids}),
})
"""


# The kernel charges at a thread's exit: the same on every Python (make test runs it once).
@pytest.mark.default_python
def test_perf_event_charges_threads_that_live_microseconds():
    """8000 threads that do nothing, each some 50-150 us of CPU, at 1 ms:
    most end before any point of their CPU-time grid, about one in ten
    passes one. The grid starts at each thread's first instruction (the
    CPU it used before its timer existed included), and a point whose
    signal has not come when the thread ends is charged at its end. So the
    summed weight is the threads' CPU in intervals: each thread's weight
    is 0 or 1 with mean its CPU in intervals, a sum of independent
    Bernoulli draws whose variance is under its mean, held here within 4
    standard deviations below (a false alarm once in 30000 runs). Above, the threads' CPU after they read
    their clock (their exit) is charged as well: up to 50 us each is
    allowed. Before, with the grid starting at the timer's creation and no
    charge at exit, the weight was about two thirds of the CPU (130 for 208
    with 3000 threads, where 4 standard deviations are 58)."""
    result = run_scenario("N_THREADS = 8000\n" + SHORT_THREADS_SRC, timeout=600)
    print(result)
    if "skip" in result:
        pytest.skip(result["skip"])
    expected = result["cpu_intervals"]
    low = expected - 4 * expected ** 0.5
    high = expected + 4 * expected ** 0.5 + 0.05 * result["threads"]
    assert low <= result["weight"] <= high, (
        f"short threads weigh {result['weight']} for {expected:.1f} intervals of their CPU "
        f"(allowed {low:.0f} to {high:.0f})")
