"""Time every available writer on a large synthetic profile.

    PYTHONPATH=src python bench/bench_writers.py [--samples N] [--stacks N]

The profile has 1,000,000 samples over 5,000 unique stacks (depth ~20) on 8
threads by default, built with ``Profile.from_columns`` as the sampler does.
Each format renders a fresh Profile over the same columns, so every timing
includes the aggregation a real ``save`` pays (the aggregate is cached per
Profile and would otherwise only be charged to the first format).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from array import array
from datetime import datetime, timedelta, timezone

from spprof import Frame, Profile
from spprof.writers import formats, get_writer


def make_columns(n_samples: int, n_stacks: int, n_threads: int, seed: int = 1) -> dict:
    rng = random.Random(seed)
    files = [f"/srv/app/pkg{i % 7}/module_{i}.py" for i in range(60)]
    pool = [Frame(f"func_{i}", files[i % len(files)], 10 + (i * 7) % 500) for i in range(1500)]
    roots = [Frame("<module>", "/srv/app/main.py", 1), Frame("main", "/srv/app/main.py", 40)]
    # A dict, not a set: set order follows str hashes, which change per
    # process, and the run would not be repeatable.
    unique: dict[tuple[Frame, ...], None] = {}
    # Prefix sharing, like real call trees: most stacks extend a common trunk.
    trunks = [tuple(rng.sample(pool, 8)) for _ in range(40)]
    while len(unique) < n_stacks:
        depth = rng.randint(14, 26)
        body = rng.choice(trunks) + tuple(rng.choices(pool, k=depth - 10))
        unique[tuple(roots) + body] = None
    stacks = list(unique)

    # Skewed popularity so that a few stacks dominate, as in real profiles.
    weights_by_stack = [1.0 / (i + 1) ** 0.8 for i in range(n_stacks)]
    stack_idx = array("q", rng.choices(range(n_stacks), weights=weights_by_stack, k=n_samples))
    tids = [1000 + i for i in range(n_threads)]
    thread_ids = array("q", rng.choices(tids, k=n_samples))
    weights = array("q", rng.choices((1, 1, 1, 1, 1, 1, 1, 2, 3), k=n_samples))
    timestamps = array("q", range(0, n_samples * 1_000_000, 1_000_000))
    names = {tid: ("MainThread" if i == 0 else f"worker-{i}") for i, tid in enumerate(tids)}
    return {
        "stacks": stacks,
        "timestamps_ns": timestamps,
        "thread_ids": thread_ids,
        "stack_indices": stack_idx,
        "weights": weights,
        "thread_names": names,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--stacks", type=int, default=5_000)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    cols = make_columns(args.samples, args.stacks, args.threads)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def fresh() -> Profile:
        return Profile.from_columns(
            start_time=start,
            end_time=start + timedelta(seconds=args.samples / 1000 / args.threads),
            interval_ms=1.0,
            dropped_count=12,
            python_version=sys.version.split()[0],
            platform=sys.platform,
            **cols,
        )

    print(
        f"profile: {args.samples:,} samples, {args.stacks:,} stacks, "
        f"{args.threads} threads (built in {time.perf_counter() - t:.2f} s)"
    )
    t = time.perf_counter()
    fresh().aggregate()
    print(f"{'aggregate()':<12} {time.perf_counter() - t:8.3f} s  (included in each format below)")

    total = 0.0
    for name in formats():
        writer = get_writer(name)
        profile = fresh()
        t = time.perf_counter()
        data = writer.render(profile)
        dt = time.perf_counter() - t
        total += dt
        print(f"{name:<12} {dt:8.3f} s  {len(data):>12,} bytes")
    print(f"{'total':<12} {total:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
