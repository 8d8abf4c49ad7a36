"""Threads with no Python thread state (what BLAS libraries, C++ and Rust
extensions start) are sampled on their own CPU clocks too: the profile's
CPU is the process's. Their samples are one frame naming the thread,
``<native thread NAME>`` (the kernel's name of the thread)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import BURN_SRC, build_shared_library, run_scenario

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def native_lib(tmp_path_factory) -> str:
    return build_shared_library(tmp_path_factory, "native_threads.so",
                                ROOT / "tests" / "data" / "native_threads.c", "-O1", "-pthread")


# The library's threads from Python: native_start(name, sleep_s, burn_s)
# starts one, native_join(handle) waits for it and returns its CPU seconds.
LIB_SRC = """
import ctypes, os, time, spprof
lib = ctypes.CDLL(LIB)
lib.native_start.restype = ctypes.c_void_p
lib.native_start.argtypes = [ctypes.c_char_p, ctypes.c_double, ctypes.c_double]
lib.native_join.restype = ctypes.c_double
lib.native_join.argtypes = [ctypes.c_void_p]
"""

SRC = BURN_SRC + LIB_SRC + """
# One thread that exists before the session (it sleeps first, then burns),
# one started during it.
early = lib.native_start(b"blas_worker_0", 0.2, 0.4)
time.sleep(0.05)
t0 = os.times()
spprof.start(interval_ms=5, mode=MODE)
late = lib.native_start(b"cxx_pool_1", 0.0, 0.3)
burn(0.2)
used = {"blas_worker_0": lib.native_join(early), "cxx_pool_1": lib.native_join(late)}
prof = spprof.stop()
t1 = os.times()
by = {}
for s in prof.samples:
    key = f"{s.thread_name}|{'/'.join(f.function_name for f in s.frames)}|{s.state}"
    by[key] = by.get(key, 0) + s.weight
emit({"by": by, "used": used, "interval_ms": prof.interval_ms,
      "process_cpu_ms": ((t1.user + t1.system) - (t0.user + t0.system)) * 1000,
      "profile_cpu_ms": prof.total_cpu_ms, "native_threads": prof.stats.raw["native_threads"],
      "without": [list(t) for t in prof.threads_without_samples],
      "collapsed": prof.to_collapsed()})
"""


@pytest.mark.parametrize("mode", ["cpu", "wall"])
def test_native_threads_are_sampled_and_named(native_lib, mode):
    """Two native threads burn 0.4 s and 0.3 s of CPU (one started before
    the session, one during it) beside a Python thread burning 0.2 s: each
    native thread's samples weigh its CPU (within 2 intervals plus the
    first scan's delay for the one started during the session: it is found
    at the next scan, within 100 ms) under one frame naming it; the
    profile's CPU is the process's within 10%. In wall mode they are
    charged their CPU only (no off-CPU time is read for a thread without
    Python)."""
    r = run_scenario(f"LIB = {native_lib!r}\nMODE = {mode!r}\n" + SRC, timeout=120)
    print(r)
    by, interval = r["by"], r["interval_ms"]
    early = by.get("blas_worker_0|<native thread blas_worker_0>|cpu", 0) * interval
    late = by.get("cxx_pool_1|<native thread cxx_pool_1>|cpu", 0) * interval
    assert abs(early - r["used"]["blas_worker_0"] * 1000) <= 2 * interval, r
    assert r["used"]["cxx_pool_1"] * 1000 - 110 - 2 * interval <= late <= r["used"]["cxx_pool_1"] * 1000 + 2 * interval, r
    # Nothing else of theirs, and nothing idle for them in wall mode.
    others = [k for k in by if k.split("|")[0] in ("blas_worker_0", "cxx_pool_1")
              and not k.endswith("|cpu")]
    assert not others, others
    assert r["native_threads"] >= 2
    assert 0.9 * r["process_cpu_ms"] <= r["profile_cpu_ms"] <= 1.1 * r["process_cpu_ms"], r
    assert "<native thread blas_worker_0>" in r["collapsed"]


def test_a_native_thread_first_to_be_sampled_is_named(native_lib):
    """The only thread on CPU is a native one (the Python thread waits in
    pthread_join): the session's first frame is that thread's name, and
    every one of its samples still reads <native thread NAME> (a frame id
    of 0 was once taken for "no name", leaving the samples unnamed, or
    <no Python frame> when a Python thread was first)."""
    r = run_scenario(f"LIB = {native_lib!r}\n" + LIB_SRC + """
worker = lib.native_start(b"solo_worker", 0.15, 0.3)
spprof.start(interval_ms=5)
lib.native_join(worker)
prof = spprof.stop()
stacks = {}
for s in prof.samples:
    key = f"{s.thread_name}|{'/'.join(f.function_name for f in s.frames)}"
    stacks[key] = stacks.get(key, 0) + s.weight
emit(stacks)
""", timeout=120)
    print(r)
    mine = {k: w for k, w in r.items() if k.startswith("solo_worker|")}
    assert sum(mine.values()) >= 30, r
    assert list(mine) == ["solo_worker|<native thread solo_worker>"], r
