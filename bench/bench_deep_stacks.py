"""Cost of sampling deep await and generator chains: CPU work at the bottom
of an N-deep chain, unprofiled and at 1 ms / 10 ms, interleaved, 5 rounds;
prints the median wall-time ratio profiled/unprofiled per depth."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import spprof


def burn(cpu_s: float) -> None:
    # A fixed amount of work, not of CPU time: the handler runs on this
    # thread, so a CPU-time budget would hide its cost.
    x = 0
    for i in range(int(cpu_s * WORK_PER_S)):
        x += i


def calibrate() -> float:
    global WORK_PER_S
    WORK_PER_S = 1_000_000
    t0 = time.perf_counter()
    burn(1.0)
    return 1_000_000 / (time.perf_counter() - t0)


WORK_PER_S = 1_000_000


async def level(n: int, cpu: float) -> None:
    if n == 0:
        burn(cpu)
        return
    await level(n - 1, cpu)


def gen_level(n: int, cpu: float):
    if n == 0:
        burn(cpu)
        yield 1
        return
    yield from gen_level(n - 1, cpu)


def run_await(depth: int) -> float:
    t0 = time.perf_counter()
    asyncio.run(level(depth, 0.3))
    return time.perf_counter() - t0


def run_gen(depth: int) -> float:
    t0 = time.perf_counter()
    list(gen_level(depth, 0.3))
    return time.perf_counter() - t0


def main() -> None:
    global WORK_PER_S
    WORK_PER_S = calibrate()
    print(f"Python {sys.version.split()[0]}; 0.3 s of work at the bottom of the chain; "
          "median of 5 interleaved rounds")
    print(f"{'chain':>8} {'depth':>6} {'unprofiled s':>13} {'1 ms x':>7} {'10 ms x':>8}")
    for name, fn in (("await", run_await), ("yield", run_gen)):
        for depth in (10, 200, 1000):
            sys.setrecursionlimit(max(1000, depth * 3 + 100))
            plain, at1, at10 = [], [], []
            for _ in range(5):
                plain.append(fn(depth))
                for interval, out in ((1, at1), (10, at10)):
                    spprof.start(interval_ms=interval)
                    out.append(fn(depth))
                    spprof.stop()
            base = statistics.median(plain)
            print(f"{name:>8} {depth:>6} {base:13.3f} {statistics.median(at1) / base:7.2f} "
                  f"{statistics.median(at10) / base:8.2f}")


if __name__ == "__main__":
    main()
