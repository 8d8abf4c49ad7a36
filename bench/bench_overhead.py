"""Wall-time overhead of profiling a CPU-bound workload (`make bench`).

Each configuration runs the same pure-Python workload in a fresh
interpreter, REPEATS times, interleaved (so slow drift of the machine hits
every configuration alike); the figure is the median wall time against the
median of the unprofiled runs. Also reported: the overhead spprof measures
itself (handler time + service thread CPU over process CPU), and the time
stop() takes with 1000 live registered threads (median of several runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

REPEATS = 7

WORKLOAD = textwrap.dedent(
    """
    import json, sys, time
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)
    def work():
        total = 0
        for _ in range(100):
            total += fib(24)
            total += sum(sorted(i * 7 % 1000 for i in range(60000)))
        return total
    mode = sys.argv[1]
    interval = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    backend = sys.argv[3] if len(sys.argv) > 3 else "auto"
    work()  # warm up outside the measurement
    if mode == "off":
        t0 = time.perf_counter(); work(); wall = time.perf_counter() - t0
        print(json.dumps({"wall": wall}))
    else:
        import spprof
        spprof.start(interval_ms=interval, backend=backend)
        t0 = time.perf_counter(); work(); wall = time.perf_counter() - t0
        prof = spprof.stop()
        st = prof.stats
        print(json.dumps({"wall": wall, "samples": prof.sample_count,
                          "self_overhead": st.overhead_percent, "backend": st.backend}))
    """
)

STOP_TIMING = textwrap.dedent(
    """
    import json, threading, time, spprof
    N = 1000
    times = []
    for _ in range(5):
        go = threading.Event(); ready = threading.Semaphore(0)
        def body():
            spprof.register_thread(); ready.release(); go.wait()
        spprof.start(interval_ms=10)
        ts = [threading.Thread(target=body) for _ in range(N)]
        for t in ts: t.start()
        for _ in range(N): ready.acquire()
        registered = spprof.stats().registered_threads
        t0 = time.perf_counter(); spprof.stop(); times.append(time.perf_counter() - t0)
        go.set()
        for t in ts: t.join()
    print(json.dumps({"registered": registered, "median_ms": 1000 * sorted(times)[len(times) // 2],
                      "max_ms": 1000 * max(times)}))
    """
)


def run(args: list[str], code: str = WORKLOAD) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=REPEATS,
                   help=f"runs per configuration (default {REPEATS})")
    repeats = p.parse_args().repeats
    # Both timer backends: perf_event (the default where allowed) and
    # timer_create (the fallback).
    configs = {"unprofiled": ["off"]}
    for backend, short in (("perf_event", "perf"), ("timer_create", "timer")):
        for interval in ("10", "4", "1"):
            configs[f"{interval} ms {short}"] = ["on", interval, backend]
    results: dict[str, list[dict]] = {k: [] for k in configs}
    for _ in range(repeats):
        for name, args in configs.items():
            results[name].append(run(args))
    base_runs = [r["wall"] for r in results["unprofiled"]]
    base = statistics.median(base_runs)
    spread = 100 * (max(base_runs) - min(base_runs)) / base
    print(f"CPU-bound workload, median of {repeats} runs each (fresh interpreter per run)")
    print(f"  {'unprofiled':<14} {base * 1000:8.1f} ms  (runs spread over {spread:.0f}% of the "
          f"median: machine noise; above ~5% the overhead figures are not meaningful)")
    for name in list(configs)[1:]:
        wall = statistics.median(r["wall"] for r in results[name])
        samples = statistics.median(r["samples"] for r in results[name])
        self_oh = statistics.median(r["self_overhead"] for r in results[name])
        # Each profiled run against the unprofiled run just before it: the
        # two share the machine's state of that moment.
        paired = statistics.median(on["wall"] / off["wall"] - 1
                                   for on, off in zip(results[name], results["unprofiled"]))
        # Noise only ever slows a run down, so the fastest runs compare the
        # two configurations with the least noise in them.
        fastest = min(r["wall"] for r in results[name]) / min(base_runs) - 1
        print(
            f"  {name:<14} {wall * 1000:8.1f} ms  overhead {100 * (wall / base - 1):+5.1f}% "
            f"(paired {100 * paired:+5.1f}%, fastest runs {100 * fastest:+5.1f}%)  "
            f"({samples:.0f} samples, self-measured {self_oh:.2f}%)"
        )
    stop = run([], STOP_TIMING)
    print(
        f"stop() with {stop['registered']} registered threads: median {stop['median_ms']:.1f} ms, "
        f"max {stop['max_ms']:.1f} ms (5 runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
