"""A small multi-threaded workload for trying spprof (a few seconds of CPU).

Four kinds of work run at once, so the profile has something to show:
- the main thread ranks primes (pure Python arithmetic, the hottest code);
- a worker hashes buffers with hashlib, which releases the GIL: its CPU is
  charged to `hash_blocks`, the Python function that called into C;
- a worker round-trips JSON documents;
- a ThreadPoolExecutor sorts and merges lists.

Run it under the profiler: `spprof run examples/demo.py` (or `make run`).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def count_primes(limit: int) -> int:
    return sum(1 for n in range(limit) if is_prime(n))


def hash_blocks(seconds: float) -> str:
    block = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        digest.update(block)
    return digest.hexdigest()


def json_round_trips(seconds: float) -> int:
    doc = {"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"]} for i in range(200)]}
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        doc = json.loads(json.dumps(doc))
        count += 1
    return count


def merge_sorted(chunks: list[list[float]]) -> list[float]:
    out: list[float] = []
    for chunk in chunks:
        out = sorted(out + chunk)
    return out


def sort_job(seed: int) -> int:
    rng = random.Random(seed)
    chunks = [[rng.random() for _ in range(2000)] for _ in range(20)]
    return len(merge_sorted(chunks))


def main(seconds: float = 2.0) -> None:
    hasher = threading.Thread(target=hash_blocks, args=(seconds,), name="hasher")
    codec = threading.Thread(target=json_round_trips, args=(seconds,), name="json-codec")
    hasher.start()
    codec.start()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sorter") as pool:
        sorted_total = sum(pool.map(sort_job, range(8)))
        primes = 0
        limit = 20_000
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            primes += count_primes(limit)
    hasher.join()
    codec.join()
    print(f"demo: {primes} primes counted, {sorted_total} values sorted")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
