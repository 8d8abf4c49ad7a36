"""`import spprof` is cheap, and start() and stop() import nothing.

- `import spprof` loads none of the standard library's heavier modules
  (the import time itself is measured by a benchmark, not here).
- start() and stop() import no module: they may run where the program's
  address space is exhausted, and an import there can fail or, on CPython
  3.13.0, crash while unmarshalling.
- The records a session produces (Frame, Sample, ProfilerStats) are not
  dataclasses but behave exactly as frozen dataclasses would, for
  dataclasses' own functions too.
- threading, when a program imports it during a session, still starts its
  threads through spprof's wrappers, and gets its originals back after.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys

import pytest

from conftest import BURN_SRC, ROOT, child_kwargs, run_scenario
from spprof import Frame, ProfilerStats, Sample

HEAVY = {
    "dataclasses", "inspect", "typing", "platform", "datetime", "threading", "ast", "dis",
    "tokenize", "subprocess", "json", "re", "enum", "functools", "contextlib",
}


def test_import_spprof_loads_no_heavy_module():
    proc = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; before = set(sys.modules); import spprof; "
         "print(' '.join(sorted(set(sys.modules) - before)))"],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT), **child_kwargs(),
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert "spprof._native" in loaded and "spprof._session" in loaded
    # An editable install's import hook brings functools and contextlib
    # itself (importlib.util); spprof's own modules must not.
    editable = any(name.startswith("importlib.util") for name in loaded)
    heavy = HEAVY - ({"functools", "contextlib"} if editable else set())
    assert not loaded & heavy, sorted(loaded & heavy)


def test_start_and_stop_import_nothing():
    res = run_scenario(
        BURN_SRC
        + """
import sys
import spprof

class Imports:
    # Every import that reaches the finders while it is installed.
    seen = []
    def find_spec(self, name, path=None, target=None):
        Imports.seen.append(name)
        return None

def watched(fn, *args, **kwargs):
    before = set(sys.modules)
    finder = Imports()
    sys.meta_path.insert(0, finder)
    try:
        return fn(*args, **kwargs), sorted(set(sys.modules) - before)
    finally:
        sys.meta_path.remove(finder)

report = {}
_, report["first start"] = watched(spprof.start, interval_ms=1)
burn(0.03)
_, report["pause"] = watched(spprof.pause)
_, report["resume"] = watched(spprof.resume)
burn(0.03)
_, report["stats"] = watched(spprof.stats)
prof, report["stop"] = watched(spprof.stop)
_, report["second start"] = watched(spprof.start, interval_ms=1)
burn(0.02)
prof2, report["second stop"] = watched(spprof.stop)
report["finder saw"] = Imports.seen
report["samples"] = [prof.sample_count, prof2.sample_count]
report["datetime before reading the times"] = "datetime" in sys.modules
report["duration_ms"] = prof.total_duration_ms
report["start_time_type"] = type(prof.start_time).__name__
report["tz"] = str(prof.start_time.tzinfo)
emit(report)
"""
    )
    for step in ("first start", "pause", "resume", "stats", "stop", "second start",
                 "second stop"):
        assert res[step] == [], f"{step} imported {res[step]}"
    assert res["finder saw"] == []
    assert res["samples"][0] >= 40 and res["samples"][1] >= 10, res["samples"]
    assert res["datetime before reading the times"] is False
    assert res["start_time_type"] == "datetime" and res["tz"] == "UTC"
    # ~80 ms of CPU profiled with pauses: the wall duration covers it.
    assert 60 <= res["duration_ms"] < 60_000


def test_profile_times_are_utc_datetimes_before_and_after_pickling():
    res = run_scenario(
        BURN_SRC
        + """
import pickle, time, spprof
wall0 = time.time()
spprof.start(interval_ms=1)
burn(0.05)
prof = spprof.stop()
wall1 = time.time()
copy = pickle.loads(pickle.dumps(prof))   # before the times were read
emit({
    "start": prof.start_time.timestamp(), "end": prof.end_time.timestamp(),
    "copy": [copy.start_time.timestamp(), copy.end_time.timestamp()],
    "wall": [wall0, wall1], "duration_ms": prof.total_duration_ms,
    "stats_duration_ms": prof.stats.duration_ms,
})
"""
    )
    assert res["wall"][0] - 0.001 <= res["start"] <= res["end"] <= res["wall"][1] + 0.001
    assert res["copy"] == [res["start"], res["end"]]
    assert res["duration_ms"] == pytest.approx(res["stats_duration_ms"], abs=0.01)


def test_threading_imported_during_a_session_is_hooked_and_restored():
    res = run_scenario(
        BURN_SRC
        + """
import sys, _thread
import spprof
originals = {n: getattr(_thread, n) for n in ("start_new_thread", "start_joinable_thread")
             if hasattr(_thread, n)}
imported_before = "threading" in sys.modules
out = {"threading_before_start": imported_before, "sessions": []}
for _ in range(2):
    spprof.start(interval_ms=1)
    import threading
    done = []
    def short():
        burn(0.04)
        done.append(threading.get_native_id())
    t = threading.Thread(target=short, name="born-in-session")
    t.start(); t.join()
    prof = spprof.stop()
    mine = [s for s in prof.samples if s.thread_id == done[0]]
    out["sessions"].append({
        "cpu_ms": sum(s.weight for s in mine) * prof.interval_ms,
        "burn_ms": sum(s.weight for s in mine if s.frames[-1].function_name == "burn")
                   * prof.interval_ms,
        "names": sorted({s.thread_name for s in mine if s.thread_name}),
    })
    out["restored"] = {
        "_thread": all(getattr(_thread, n) is f for n, f in originals.items()),
        "threading": all(getattr(threading, alias) is originals[n]
                         for alias, n in (("_start_new_thread", "start_new_thread"),
                                          ("_start_joinable_thread", "start_joinable_thread"))
                         if hasattr(threading, alias) and n in originals),
    }
emit(out)
"""
    )
    assert res["threading_before_start"] is False
    for session in res["sessions"]:
        # Sampled from its first instruction: its 40 ms of burn are all
        # there (the thread's other CPU, threading's own code and the time
        # before its first Python frame, grows on a loaded machine).
        assert 34 <= session["burn_ms"] <= 46 and session["cpu_ms"] >= session["burn_ms"], session
        assert session["names"] == ["born-in-session"], session
    assert res["restored"] == {"_thread": True, "threading": True}


# -- the records behave as frozen dataclasses ---------------------------------------------

FRAME = Frame("work", "/src/app.py", 12)
SAMPLE = Sample(5, 7, "main", (FRAME, Frame("<module> app", "/src/app.py", 3, True)), 2)


def _stats() -> ProfilerStats:
    values = {f.name: (i if f.type in ("int", "float") else "x") for i, f in
              enumerate(dataclasses.fields(ProfilerStats))}
    values.update(active=True, paused=False, raw={"signals": 3})
    return ProfilerStats(**values)


def _twin(record: object) -> object:
    """A real frozen dataclass with the same fields and values."""
    cls = type(record)
    spec = []
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING:
            spec.append((f.name, f.type))
        else:
            spec.append((f.name, f.type, dataclasses.field(default=f.default)))
    twin_cls = dataclasses.make_dataclass(cls.__name__, spec, frozen=True,
                                          slots=hasattr(cls, "__slots__"))
    return twin_cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("record", [FRAME, SAMPLE, _stats()], ids=["Frame", "Sample", "ProfilerStats"])
def test_records_behave_as_frozen_dataclasses(record):
    cls = type(record)
    twin = _twin(record)
    assert dataclasses.is_dataclass(cls) and dataclasses.is_dataclass(record)
    assert repr(record) == repr(twin)
    assert dataclasses.asdict(record) == dataclasses.asdict(twin)
    assert dataclasses.astuple(record) == dataclasses.astuple(twin)
    assert cls.__match_args__ == type(twin).__match_args__
    # equal to an equal record, never to another class's
    same = cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(cls)})
    assert same == record and same is not record and not (same != record)
    assert record != twin and (record == twin) is False
    if cls is not ProfilerStats:  # its raw dict makes it unhashable, as a dataclass
        assert hash(same) == hash(record) == hash(twin)
        assert len({record, same}) == 1
    else:
        with pytest.raises(TypeError):
            hash(record)
        with pytest.raises(TypeError):
            hash(twin)
    first = dataclasses.fields(cls)[0].name
    changed = dataclasses.replace(record, **{first: getattr(record, first)})
    assert changed == record and type(changed) is cls
    for attempt in (lambda r: setattr(r, first, 1), lambda r: delattr(r, first)):
        with pytest.raises(dataclasses.FrozenInstanceError) as err:
            attempt(record)
        with pytest.raises(dataclasses.FrozenInstanceError) as twin_err:
            attempt(twin)
        assert str(err.value) == str(twin_err.value)
    # (A slotted frozen dataclass of 3.11 fails this one with a TypeError.)
    with pytest.raises(dataclasses.FrozenInstanceError, match="'new_attribute'"):
        record.new_attribute = 1  # type: ignore[attr-defined]
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(record, protocol)) == record
    assert copy.copy(record) == record and copy.deepcopy(record) == record
    if sys.version_info >= (3, 13):
        assert copy.replace(record) == record
    match record:
        case Frame(name, filename, line, native):
            assert (name, filename, line, native) == ("work", "/src/app.py", 12, False)
        case Sample(ts, tid, name, frames, weight):
            assert (ts, tid, name, frames[0], weight) == (5, 7, "main", FRAME, 2)
        case ProfilerStats(active, paused):
            assert (active, paused) == (True, False)
        case _:
            pytest.fail("no case matched")


def test_record_fields_and_defaults_match_the_signature():
    assert [(f.name, f.type) for f in dataclasses.fields(Frame)] == [
        ("function_name", "str"), ("filename", "str"), ("lineno", "int"), ("is_native", "bool"),
        ("library", "str")]
    assert dataclasses.fields(Frame)[-2].default is False
    assert dataclasses.fields(Frame)[-1].default == ""
    assert [(f.name, f.default) for f in dataclasses.fields(Sample)[-3:]] == [
        ("weight", 1), ("state", "cpu"), ("holds_gil", None)]
    assert Frame("f", "x.py", 1) == Frame("f", "x.py", 1, False)
    with pytest.raises(TypeError):
        Frame("f", "x.py")  # type: ignore[call-arg]
    assert Frame.__slots__ == ("function_name", "filename", "lineno", "is_native", "library")
    assert not hasattr(FRAME, "__dict__")
