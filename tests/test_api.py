"""The Python API: arguments, errors, lifecycle, context manager, decorator."""

from __future__ import annotations

import math
import os
import threading
import time
import warnings

import pytest

import spprof
from conftest import BURN_SRC, run_scenario


def burn(cpu_s: float) -> None:
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def test_public_names():
    for name in ("start", "stop", "is_active", "stats", "Profiler", "profile", "register_thread",
                 "unregister_thread", "ThreadProfiler", "Frame", "Sample", "Profile",
                 "AggregatedProfile", "ProfilerError", "pause", "resume"):
        assert name in spprof.__all__
        assert hasattr(spprof, name)
    import importlib.resources

    assert importlib.resources.files("spprof").joinpath("py.typed").is_file()


@pytest.mark.parametrize("bad", [0, 1001, -5, True, False, math.nan, math.inf, 0.05, 0.0994, "10", None])
def test_bad_interval_is_value_error(bad):
    with pytest.raises(ValueError, match=r"interval_ms must be a number of milliseconds from 0\.1 to 1000"):
        spprof.start(interval_ms=bad)
    assert not spprof.is_active()


BACKENDS_AT_1MS_SRC = BURN_SRC + """
import spprof
out = {}
for backend in ("perf_event", "timer_create"):
    try:
        spprof.start(interval_ms=1, backend=backend)
    except spprof.ProfilerError as e:
        out[backend] = {"error": str(e)}
        continue
    c0 = time.thread_time()
    burn(0.5)
    cpu_ms = (time.thread_time() - c0) * 1000
    prof = spprof.stop()
    mine = [s for s in prof.samples if s.leaf and s.leaf.function_name == "burn"]
    out[backend] = {"cpu_ms": cpu_ms, "samples": len(mine), "weight": sum(s.weight for s in mine),
                    "overruns": prof.stats.timer_overruns, "ran": prof.stats.backend,
                    "undelivered": prof.stats.raw["undelivered_weight"]}
emit(out)
"""


def test_one_millisecond_on_each_backend():
    """1 ms on perf_event: a thread burning 0.5 s gets one sample per
    millisecond of it (within 5%), nearly none folded into overruns; on timer_create
    the kernel checks the timer once per scheduler tick (4 ms here), so
    about a quarter as many samples whose weights (1 + overruns) still sum
    to its CPU within 5%. Under load Linux (6.18 measured) checks a CPU-time
    timer late, by up to 240 ms of the thread's CPU: what the thread used
    after its last signal is counted at stop as undelivered_weight, never
    lost without a word."""
    r = run_scenario(BACKENDS_AT_1MS_SRC)
    print(r)
    perf, posix = r["perf_event"], r["timer_create"]
    if "error" in perf:
        pytest.skip(perf["error"])
    assert perf["ran"] == "perf_event" and posix["ran"] == "timer_create"
    assert abs(perf["samples"] - perf["cpu_ms"]) <= 0.05 * perf["cpu_ms"], perf
    # None on a quiet machine (500 samples for 500.0 ms); a signal delivered
    # more than an interval late (the handler slowed by a sanitizer, a
    # loaded machine) is folded into the next sample's weight.
    assert perf["overruns"] <= 0.04 * perf["samples"], perf
    assert abs(posix["weight"] + posix["undelivered"] - posix["cpu_ms"]) <= 0.05 * posix["cpu_ms"], posix
    assert perf["undelivered"] <= 2, perf
    # One sample per tick (HZ 100 to 1000): at most half of the expirations
    # become samples when the tick is 2 ms or more.
    assert posix["samples"] <= 0.55 * posix["weight"] and posix["overruns"] > 0, posix


def test_sub_millisecond_intervals_are_honoured_on_perf_event():
    """interval_ms=0.2: a thread burning 0.4 s of CPU is charged one
    interval per 0.2 ms of it (within 5%), nearly all as samples of their
    own; the interval is kept to the microsecond. Wall mode refuses it,
    naming both arguments."""
    result = run_scenario(BURN_SRC + """
import spprof
spprof.start(interval_ms=0.2, backend="auto")
backend = spprof.stats().backend
c0 = time.thread_time()
burn(0.4)
cpu_ms = (time.thread_time() - c0) * 1000
prof = spprof.stop()
mine = [s for s in prof.samples if s.leaf and s.leaf.function_name == "burn"]
try:
    spprof.Profiler(interval_ms=0.5, mode="wall")
    wall_error = None
except ValueError as e:
    wall_error = str(e)
emit({"backend": backend, "cpu_ms": cpu_ms, "samples": len(mine),
      "weight": sum(s.weight for s in mine), "overruns": prof.stats.timer_overruns,
      "interval_ms": prof.interval_ms, "interval_ns": prof.interval_ns,
      "stats_interval": prof.stats.interval_ms,
      "rounded": spprof.Profiler(interval_ms=0.12345).interval_ms, "wall_error": wall_error})
""")
    print(result)
    if result["backend"] != "perf_event":
        pytest.skip("no perf_event here (the fallback's refusal is tested in test_platform.py)")
    expected = result["cpu_ms"] / 0.2
    # The weights are the CPU; the samples nearly as many (a signal more
    # than 0.2 ms late folds into the next sample: 7 of 2000 on a quiet
    # machine, more with a sanitizer slowing the handler).
    assert abs(result["weight"] - expected) <= 0.05 * expected, result
    if "ASAN_OPTIONS" not in os.environ:
        # Under AddressSanitizer (tools/memcheck/run_asan.py) the handler
        # takes a good part of 0.2 ms: up to 30% measured folds into weights.
        assert result["samples"] >= 0.85 * expected, result
    assert result["interval_ms"] == 0.2 and result["interval_ns"] == 200_000
    assert result["stats_interval"] == 0.2
    assert result["rounded"] == 0.123
    assert "interval_ms below 1 is for CPU mode only" in result["wall_error"]
    assert "mode='wall'" in result["wall_error"]


@pytest.mark.parametrize("bad", [0, 0.05, -1, math.nan, "100", True])
def test_bad_memory_limit_is_value_error(bad):
    with pytest.raises(ValueError, match="memory_limit_mb"):
        spprof.start(memory_limit_mb=bad)


@pytest.mark.parametrize("huge", [2**44, 1e30, 2**40 + 1, 2.0**64])
def test_memory_limit_beyond_any_address_space_is_value_error(huge):
    # in bytes these wrap around 2**64 in the native layer: the limit would
    # become tiny (or 0) and every sample would be dropped
    with pytest.raises(ValueError, match="memory_limit_mb"):
        spprof.start(memory_limit_mb=huge)
    assert not spprof.is_active()
    with pytest.raises(ValueError, match="memory_limit_mb"):
        spprof.Profiler(memory_limit_mb=huge)
    # the largest limit accepted is taken as "no limit", not wrapped
    spprof.start(interval_ms=5, memory_limit_mb=spprof._limits.MAX_MEMORY_LIMIT_MB)
    burn(0.2)
    prof = spprof.stop()
    assert prof.sample_count >= 20
    assert prof.dropped_count == 0


@pytest.mark.parametrize("bad", ["no", "yes", "", 0, 1, None, 1.0])
def test_take_over_sigprof_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="take_over_sigprof"):
        spprof.start(take_over_sigprof=bad)
    assert not spprof.is_active()
    with pytest.raises(ValueError, match="take_over_sigprof"):
        spprof.Profiler(take_over_sigprof=bad)


def test_output_path_that_is_a_directory_is_value_error(tmp_path):
    (tmp_path / "kept.txt").write_text("mine")
    for make in (
        lambda: spprof.start(output_path=tmp_path),
        lambda: spprof.start(output_path=str(tmp_path) + "/"),
        lambda: spprof.Profiler(output_path=tmp_path),
        lambda: spprof.profile(output_path=tmp_path),
    ):
        with pytest.raises(ValueError, match="output_path is a directory"):
            make()
        assert not spprof.is_active()
    assert tmp_path.is_dir() and (tmp_path / "kept.txt").read_text() == "mine"


def test_output_path_directory_must_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        spprof.start(output_path=tmp_path / "missing" / "p.json")
    assert not spprof.is_active()


def test_start_twice_and_stop_twice():
    with pytest.raises(RuntimeError, match="not running"):
        spprof.stop()
    spprof.start()
    try:
        assert spprof.is_active()
        with pytest.raises(RuntimeError, match="already running"):
            spprof.start()
    finally:
        spprof.stop()
    assert not spprof.is_active()
    with pytest.raises(RuntimeError, match="not running"):
        spprof.stop()


def test_start_stop_returns_profile():
    spprof.start(interval_ms=5)
    burn(0.3)
    prof = spprof.stop()
    assert isinstance(prof, spprof.Profile)
    assert prof.interval_ms == 5
    assert 45 <= prof.sample_count <= 75
    assert prof.start_time < prof.end_time
    assert prof.total_duration_ms >= 300
    assert prof.python_version.count(".") == 2
    assert threading.get_native_id() in prof.thread_ids
    assert prof.thread_names[threading.get_native_id()] == "MainThread"
    # Never an empty stack (a thread of this test process sampled while it
    # starts or ends shows <no Python frame>).
    assert all(s.frames for s in prof.samples)
    leafs = {s.frames[-1].function_name for s in prof.samples}
    assert "burn" in leafs
    assert prof.dropped_count == 0
    assert prof.stats.collected_samples == prof.sample_count
    agg = prof.aggregate()
    assert agg.total_samples == prof.sample_count
    assert agg.compression_ratio >= 1.0


def test_context_manager_and_output_path(tmp_path):
    out = tmp_path / "ctx.collapsed"
    with spprof.Profiler(interval_ms=5, output_path=out) as p:
        assert spprof.is_active()
        burn(0.2)
    assert not spprof.is_active()
    assert p.profile is not None and p.profile.sample_count >= 20
    text = out.read_text()
    assert "burn (" in text


def test_context_manager_stops_on_exception():
    with pytest.raises(ZeroDivisionError):
        with spprof.Profiler():
            1 / 0
    assert not spprof.is_active()


def test_decorator_bare_and_with_arguments(tmp_path):
    @spprof.profile
    def work():
        burn(0.1)
        return 42

    assert work() == 42
    assert work.last_profile.sample_count >= 5
    assert work.__name__ == "work"

    out = tmp_path / "deco.speedscope.json"

    @spprof.profile(interval_ms=2, output_path=out)
    def other(x):
        burn(0.1)
        return x * 2

    assert other(4) == 8
    assert other.last_profile.interval_ms == 2
    assert out.exists()
    with pytest.raises(ValueError):
        spprof.profile(interval_ms=0)


def test_decorator_inside_running_session_just_runs():
    @spprof.profile
    def inner():
        burn(0.05)
        return "ok"

    spprof.start()
    try:
        assert inner() == "ok"
        assert inner.last_profile is None
    finally:
        spprof.stop()


def test_async_decorator():
    import asyncio

    @spprof.profile(interval_ms=5)
    async def job():
        burn(0.1)
        return 3

    assert asyncio.run(job()) == 3
    assert job.last_profile.sample_count >= 10


def burn_inside(cpu_s: float) -> None:
    burn(cpu_s)


def burn_outside(cpu_s: float) -> None:
    burn(cpu_s)


def _weight_under(prof, name: str) -> int:
    return sum(
        s.weight for s in prof.samples if any(f.function_name == name for f in s.frames)
    )


def test_generator_decorator_profiles_the_iteration(tmp_path):
    import inspect

    out = tmp_path / "gen.collapsed"

    @spprof.profile(interval_ms=5, output_path=out)
    def produce(n):
        for i in range(n):
            burn_inside(0.1)
            got = yield i
            assert got in (None, "ping")
        return "done"

    assert inspect.isgeneratorfunction(produce)
    gen = produce(3)
    assert not spprof.is_active()  # nothing runs before the first item is asked for
    items = []
    for i in gen:
        burn_outside(0.1)  # the consumer's time is not the generator's
        items.append(i)
    assert items == [0, 1, 2]
    assert not spprof.is_active()
    prof = produce.last_profile
    assert prof is not None and out.exists()
    inside = _weight_under(prof, "burn_inside") * prof.interval_ms
    outside = _weight_under(prof, "burn_outside") * prof.interval_ms
    assert 200 <= inside <= 400, (inside, outside)
    assert outside <= 10, (inside, outside)

    # return value, send() and throw() go through as with the bare generator
    def drive():
        result = yield from produce(2)
        return result

    d = drive()
    assert next(d) == 0
    assert d.send("ping") == 1
    with pytest.raises(StopIteration) as stop:
        d.send(None)
    assert stop.value.value == "done"
    g = produce(5)
    next(g)
    with pytest.raises(KeyError):
        g.throw(KeyError("x"))
    assert not spprof.is_active()


def test_generator_decorator_stops_when_the_consumer_breaks_early():
    @spprof.profile(interval_ms=5)
    def endless():
        while True:
            burn_inside(0.05)
            yield 1

    for n, _ in enumerate(endless()):
        if n == 2:
            break
    assert not spprof.is_active()
    assert _weight_under(endless.last_profile, "burn_inside") * 5 >= 100


def test_async_generator_decorator_profiles_the_iteration():
    import asyncio
    import inspect

    @spprof.profile(interval_ms=5)
    async def produce(n):
        for i in range(n):
            await asyncio.sleep(0)
            burn_inside(0.1)
            yield i

    assert inspect.isasyncgenfunction(produce)

    async def consume():
        items = []
        async for i in produce(3):
            burn_outside(0.1)
            items.append(i)
        return items

    assert asyncio.run(consume()) == [0, 1, 2]
    assert not spprof.is_active()
    prof = produce.last_profile
    inside = _weight_under(prof, "burn_inside") * prof.interval_ms
    outside = _weight_under(prof, "burn_outside") * prof.interval_ms
    assert 200 <= inside <= 400, (inside, outside)
    assert outside <= 10, (inside, outside)


def test_save_failure_keeps_profile(tmp_path):
    with spprof.Profiler(interval_ms=5) as p:
        burn(0.1)
    prof = p.profile
    before = prof.sample_count
    with pytest.raises(OSError):
        prof.save(tmp_path / "no-such-dir" / "x.json")
    with pytest.raises(OSError):
        prof.save(tmp_path)  # a directory
    with pytest.raises(ValueError, match="unknown format"):
        prof.save(tmp_path / "x.json", format="bogus")
    assert prof.sample_count == before
    assert not list(tmp_path.iterdir())  # nothing half-written
    path = prof.save(tmp_path / "ok.json")
    assert os.path.getsize(path) > 0


def test_failed_save_at_stop_warns_and_returns_profile(tmp_path):
    target = tmp_path / "gone"
    target.mkdir()
    spprof.start(output_path=target / "p.json")
    burn(0.05)
    target.rmdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prof = spprof.stop()
    assert prof.sample_count >= 1
    assert any("could not save" in str(w.message) for w in caught)


def test_register_outside_session_is_false():
    assert spprof.register_thread() is False
    assert spprof.unregister_thread() is False
    with spprof.ThreadProfiler() as tp:
        assert tp.registered is False


def test_register_idempotent_in_session():
    spprof.start()
    try:
        assert spprof.register_thread() is True  # already found by the scan
        assert spprof.register_thread() is True
        assert spprof.unregister_thread() is True
        assert spprof.unregister_thread() is False
        with spprof.ThreadProfiler() as tp:
            assert tp.registered is True
        assert spprof.register_thread() is True
    finally:
        spprof.stop()


def test_stats_shape():
    spprof.start(interval_ms=5)
    try:
        burn(0.2)
        st = spprof.stats()
    finally:
        spprof.stop()
    # perf_event where this machine allows it (it does here), else POSIX timers
    assert st.active and st.backend in ("perf_event", "timer_create")
    assert (st.backend == "perf_event") == (st.raw["perf_timers_created"] > 0)
    assert st.collected_samples >= 20
    assert st.registered_threads >= 1
    assert st.timer_create_failures == 0
    assert st.duration_ms >= 200
    assert 0 <= st.overhead_percent < 50
    idle = spprof.stats()
    assert not idle.active and idle.registered_threads == 0
