"""What users and tools see of spprof, pinned: the public names and every
signature, the schema of the native stats and result, the texts and
categories of spprof's warnings, and the Profile built from a hand-made
native result. Internal reorganisations must leave all of it as it is; a
deliberate change of the surface updates these tables in the same commit.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from pathlib import Path

import pytest

import spprof

from conftest import ROOT, run_scenario

SRC = ROOT / "src"


# -- public names and signatures ----------------------------------------------------

PUBLIC_SURFACE = """
__all__ = ['AggregatedProfile', 'AggregatedStack', 'Frame', 'FunctionStats', 'NativeFrame', 'Profile', 'Profiler', 'ProfilerError', 'ProfilerStats', 'ProfilerWarning', 'Sample', 'ThreadProfiler', '__version__', 'capture_native_stack', 'is_active', 'is_paused', 'native_unwinding_available', 'native_unwinding_enabled', 'pause', 'profile', 'register_thread', 'resume', 'set_native_unwinding', 'start', 'stats', 'stop', 'unregister_thread']
class AggregatedProfile(object)
  field interval_ns: int
  field stacks: list[AggregatedStack]
  field thread_names: dict[int, str | None]
  method __init__(self, interval_ns: 'int', stacks: 'list[AggregatedStack]', thread_names: 'dict[int, str | None]' = <factory>) -> None
  property compression_ratio
  method for_thread(self, thread_id: 'int') -> 'AggregatedProfile'
  method for_threads(self, thread_ids: 'Iterable[int]') -> 'AggregatedProfile'
  method function_stats(self) -> 'list[FunctionStats]'
  method merged(self) -> 'AggregatedProfile'
  property thread_ids
  property total_cpu_ns
  property total_samples
  property total_weight
  property unique_stack_count
class AggregatedStack(object)
  field thread_id: int | None
  field frames: Stack
  field count: int
  field weight: int
  field holds_gil: bool | None
  method __init__(self, thread_id: 'int | None', frames: 'Stack', count: 'int', weight: 'int', holds_gil: 'bool | None' = None) -> None
class Frame(object)
  field function_name: str
  field filename: str
  field lineno: int
  field is_native: bool
  field library: str
  method __init__(self, function_name: 'str', filename: 'str', lineno: 'int', is_native: 'bool' = False, library: 'str' = '') -> None
  method label(self) -> 'str'
class FunctionStats(object)
  field function_name: str
  field filename: str
  field lineno: int
  field self_count: int
  field total_count: int
  field self_weight: int
  field total_weight: int
  field is_native: bool
  method __init__(self, function_name: 'str', filename: 'str', lineno: 'int', self_count: 'int', total_count: 'int', self_weight: 'int', total_weight: 'int', is_native: 'bool' = False) -> None
class NativeFrame(object)
  field ip: int
  field symbol: str
  field filename: str
  field offset: int
  field resolved: bool
  method __init__(self, ip: 'int', symbol: 'str', filename: 'str', offset: 'int', resolved: 'bool') -> None
class Profile(object)
  method __init__(self, start_time: 'datetime', end_time: 'datetime', interval_ms: 'float', samples: 'Iterable[Sample]', dropped_count: 'int' = 0, python_version: 'str' = '', platform: 'str' = '', *, mode: 'str | None' = None) -> 'None'
  method aggregate(self, *, by_gil: 'bool' = False) -> 'AggregatedProfile'
  property effective_rate_hz
  classmethod from_columns(cls, *, start_time: 'datetime', end_time: 'datetime', interval_ms: 'float', stacks: 'Sequence[Stack]', timestamps_ns: 'array', thread_ids: 'array', stack_indices: 'array', weights: 'array', thread_names: 'dict[int, str | None]', dropped_count: 'int' = 0, python_version: 'str' = '', platform: 'str' = '', states: 'array | None' = None, mode: 'str | None' = None, gil: 'array | None' = None) -> 'Profile'
  method gil_totals_ms(self) -> 'dict[str, float]'
  property interval_ns
  method iter_compact(self) -> 'Iterator[tuple[int, int, int, int]]'
  classmethod joined(cls, parts: 'Sequence[Profile]') -> 'Profile'
  property process_cpu_ms
  method render(self, format: 'str' = 'speedscope', **options: 'object') -> 'bytes'
  property sample_count
  property samples
  property samples_per_second
  method save(self, path: 'str | os.PathLike[str]', format: 'str | None' = None, **options: 'object') -> 'str'
  property stacks
  method state_totals_ms(self) -> 'dict[str, float]'
  property thread_ids
  property thread_names
  method to_collapsed(self, *, merge_threads: 'bool' = True) -> 'str'
  method to_speedscope(self) -> 'dict'
  property total_cpu_ms
  property total_duration_ms
  property total_time_ms
  property total_weight
  method without_idle(self) -> 'Profile'
class Profiler(object)
  method __enter__(self) -> 'Profiler'
  method __exit__(self, *exc: 'object') -> 'None'
  method __init__(self, interval_ms: 'float' = 10, output_path: 'str | os.PathLike[str] | None' = None, memory_limit_mb: 'float' = 100, *, take_over_sigprof: 'bool' = False, backend: 'str' = 'auto', mode: 'str' = 'cpu', native: 'bool | None' = None) -> 'None'
  method pause(self) -> 'bool'
  method resume(self) -> 'bool'
  method start(self) -> 'Profiler'
  method stop(self) -> 'Profile'
class ProfilerError(RuntimeError)
class ProfilerStats(object)
  field active: bool
  field paused: bool
  field backend: str
  field interval_ms: float
  field collected_samples: int
  field dropped_samples: int
  field timer_overruns: int
  field timer_create_failures: int
  field sigprof_blocked_threads: int
  field registered_threads: int
  field duration_ms: float
  field effective_rate_hz: float
  field signals: int
  field handler_cpu_ms: float
  field service_cpu_ms: float
  field process_cpu_ms: float
  field overhead_percent: float
  field memory_bytes: int
  field walk_errors: int
  field truncated_stacks: int
  field no_thread_state: int
  field raw: dict[str, Any]
  method __init__(self, active: 'bool', paused: 'bool', backend: 'str', interval_ms: 'float', collected_samples: 'int', dropped_samples: 'int', timer_overruns: 'int', timer_create_failures: 'int', sigprof_blocked_threads: 'int', registered_threads: 'int', duration_ms: 'float', effective_rate_hz: 'float', signals: 'int', handler_cpu_ms: 'float', service_cpu_ms: 'float', process_cpu_ms: 'float', overhead_percent: 'float', memory_bytes: 'int', walk_errors: 'int', truncated_stacks: 'int', no_thread_state: 'int', raw: 'dict[str, Any]') -> None
  classmethod from_native(cls, raw: 'dict[str, Any]') -> 'ProfilerStats'
class ProfilerWarning(RuntimeWarning)
class Sample(object)
  field timestamp_ns: int
  field thread_id: int
  field thread_name: str | None
  field frames: Stack
  field weight: int
  field state: str
  field holds_gil: bool | None
  method __init__(self, timestamp_ns: 'int', thread_id: 'int', thread_name: 'str | None', frames: 'Stack', weight: 'int' = 1, state: 'str' = 'cpu', holds_gil: 'bool | None' = None) -> None
  property leaf
  property on_cpu
class ThreadProfiler(object)
  method __enter__(self) -> 'ThreadProfiler'
  method __exit__(self, *exc: 'object') -> 'None'
  method __init__(self) -> 'None'
value __version__: str
def capture_native_stack() -> 'list[NativeFrame]'
def is_active() -> 'bool'
def is_paused() -> 'bool'
def native_unwinding_available() -> 'bool'
def native_unwinding_enabled() -> 'bool'
def pause() -> 'bool'
def profile(func: 'Callable[..., Any] | None' = None, *, interval_ms: 'float' = 10, output_path: 'str | os.PathLike[str] | None' = None, mode: 'str' = 'cpu', native: 'bool | None' = None) -> 'Any'
def register_thread() -> 'bool'
def resume() -> 'bool'
def set_native_unwinding(enabled: 'bool') -> 'None'
def start(interval_ms: 'float' = 10, output_path: 'str | os.PathLike[str] | None' = None, memory_limit_mb: 'float' = 100, *, take_over_sigprof: 'bool' = False, backend: 'str' = 'auto', mode: 'str' = 'cpu', native: 'bool | None' = None) -> 'None'
def stats() -> 'ProfilerStats'
def stop() -> 'Profile'
def unregister_thread() -> 'bool'
"""


def _describe(obj: object, name: str) -> list[str]:
    out = []
    if inspect.isclass(obj):
        bases = ",".join(b.__name__ for b in obj.__bases__)
        out.append(f"class {name}({bases})")
        if dataclasses.is_dataclass(obj):
            out += [f"  field {f.name}: {f.type}" for f in dataclasses.fields(obj)]
        for attr, val in sorted(vars(obj).items()):
            if attr.startswith("_") and attr not in ("__init__", "__enter__", "__exit__"):
                continue
            kind = "method"
            if isinstance(val, (staticmethod, classmethod)):
                kind, val = type(val).__name__, val.__func__
            elif isinstance(val, property):
                out.append(f"  property {attr}")
                continue
            if callable(val):
                out.append(f"  {kind} {attr}{inspect.signature(val)}")
    elif callable(obj):
        out.append(f"def {name}{inspect.signature(obj)}")
    else:
        out.append(f"value {name}: {type(obj).__name__}")
    return out


def test_public_names_and_signatures_are_pinned():
    lines = [f"__all__ = {sorted(spprof.__all__)}"]
    for name in sorted(spprof.__all__):
        lines += _describe(getattr(spprof, name), name)
    assert "\n".join(lines) == PUBLIC_SURFACE.strip()


def test_every_public_name_is_documented_in_its_module():
    for name in spprof.__all__:
        obj = getattr(spprof, name)
        if callable(obj):
            assert obj.__doc__, f"spprof.{name} has no docstring"


# -- the native boundary's schema ------------------------------------------------------

# Every key of the native stats() and what type its value has. The native
# result of stop() has the same keys plus RESULT_KEYS.
STATS_SCHEMA = {
    "active": bool, "allocation_failures": int, "backend": str, "backend_note": str,
    "buffer_capacity": int,
    "buffer_dropped": int, "buffer_dropped_weight": int, "captured_samples": int,
    "collected_samples": int, "duration_ns": int, "early_signals": int, "foreign_signals": int,
    "gc_samples": int, "handler_ns": int, "interval_ns": int, "last_create_errno": int,
    "memory_bytes": int, "memory_dropped": int, "memory_dropped_weight": int,
    "memory_limit_bytes": int, "no_thread_state": int, "overruns_at_delete": int, "undelivered_weight": int, "paused": bool,
    "paused_ns": int, "paused_signals": int, "perf_descriptors_lost": int, "perf_fallbacks": int,
    "native_threads": int,
    "perf_include_kernel": bool, "perf_timers_created": int, "process_cpu_ns": int,
    "recovered_walks": int, "registered_threads": int, "service_cpu_ns": int,
    "service_gil_ticks": int, "service_wakes": int, "signals": int,
    "sigprof_blocked_threads": int, "stale_signals": int, "subinterpreter_samples": int, "native": bool, "native_samples": int, "native_uncovered": int,
    "timer_create_failures": int, "timer_overruns": int, "timers_created": int,
    "timers_deleted": int, "truncated_stacks": int, "walk_errors": int,
    "mode": str, "wall_ticks": int, "wall_late_ticks": int, "off_cpu_samples": int,
    "gil_wait_samples": int, "torn_walks": int, "wall_dropped": int, "wall_dropped_weight": int,
    "state_reads": int, "state_files_lost": int, "wall_cpu_ns": int, "wall_exit_charges": int,
}
RESULT_KEYS = {
    "strings": list, "frames": bytes, "stacks": bytes, "timestamps": bytes, "thread_ids": bytes,
    "stack_ids": bytes, "weights": bytes, "states": bytes, "gil": bytes, "thread_names": dict,
    "start_monotonic_ns": int,
}


def test_native_stats_and_result_keys_are_pinned():
    result = run_scenario(
        """
import time, spprof
import spprof._native as native
def types(d):
    return {k: type(v).__name__ for k, v in d.items()}
idle = types(native.stats())
spprof.start(interval_ms=1)
t = time.thread_time()
while time.thread_time() - t < 0.05:
    pass
running = types(native.stats())
native_stop = native.stop
captured = {}
def stop_and_keep():
    raw = native_stop()
    captured.update(types(raw))
    return raw
native.stop = stop_and_keep
spprof.stop()
emit({"idle": idle, "running": running, "result": captured})
"""
    )
    stats = {k: t.__name__ for k, t in STATS_SCHEMA.items()}
    assert result["idle"] == stats
    assert result["running"] == stats
    assert result["result"] == {**stats, **{k: t.__name__ for k, t in RESULT_KEYS.items()}}


# -- warnings: texts and categories ----------------------------------------------------


def _literals_starting(prefix: str) -> set[str]:
    """Every string literal in src/ (Python and C++) that starts with
    `prefix`, adjacent C++ literals joined, whitespace normalised."""
    found: set[str] = set()
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if id(node) in inner or id(node) in docs:
                continue
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            if text.startswith(prefix):
                found.add(" ".join(text.split()))
    for path in sorted(list(SRC.rglob("*.cpp")) + list(SRC.rglob("*.h"))):
        code = path.read_text()
        # adjacent literals ("a" "b", across lines) are one string in C++
        for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"(?:\s*"((?:[^"\\\n]|\\.)*)")*', code):
            parts = re.findall(r'"((?:[^"\\\n]|\\.)*)"', m.group(0))
            text = "".join(parts)
            if text.startswith(prefix):
                found.add(" ".join(text.split()))
    return found


# Every message of spprof's own that starts with "spprof: " (warnings to
# the program, messages on stderr), as its literal text ("{}" for an
# f-string's fields; a C++ message up to its first computed part).
PINNED_MESSAGES = {
    "spprof: a sampling profiler for CPython.",
    "spprof: a session started this late at exit is not saved automatically while another "
    "profiler is active; call spprof.stop()",
    "spprof: cannot restart the service thread after fork(); samples are resolved only at "
    "stop() from now on (and dropped when the buffer is full)",
    "spprof: cannot restart the wall-clock reader thread after fork(); time off CPU is not "
    "sampled from now on",
    "spprof: {}",  # the command line's coverage lines
    "spprof: could not continue the program's profiling session: {}",
    "spprof: could not create a sampling timer for",
    "spprof: could not resume profiling the program: {}",
    "spprof: could not save the profile to {}: {}; the returned Profile is intact, call "
    "profile.save() with another path",
    "spprof: could not stop the profiler at exit: {}",
    "spprof: error: {}",
    "spprof: marks garbage collections for the sampler.",
    "spprof: out of memory while storing samples; samples that could not be stored are "
    "dropped (counted in stats().dropped_samples)",
    "spprof: sample the new thread, then run its function.",
    "spprof: the memory limit of",
    "spprof: the program closed or replaced descriptors of spprof's sampling timers "
    "(perf_event); spprof left them alone and gave the threads new timers.",
    "spprof: thread",
    "spprof: {} s, {} sample{} ({} Hz), {} dropped, {} overrun{}, {} thread{}{} -> {}",
    "spprof: {} wall, {} samples, {} thread{}, {} CPU",
}


def test_spprof_message_texts_are_pinned():
    assert _literals_starting("spprof: ") == PINNED_MESSAGES


def test_warning_categories():
    """Native warnings and the session's own are ProfilerWarning (a
    RuntimeWarning); a failed save at stop() is a RuntimeWarning naming the
    path and saying the returned Profile is intact."""
    result = run_scenario(
        """
import os, time, warnings, spprof
warnings.simplefilter("always")
out = {}
# many distinct stacks, so the tiny limit is reached
NF = 600
ns = {"time": time}
exec("".join(f"def fn_{i}(n):\\n    return time.thread_time() if n <= 0 else fn_{(i * 7 + 1) % NF}(n - 1)\\n"
             for i in range(NF)), ns)
with warnings.catch_warnings(record=True) as caught:
    spprof.start(interval_ms=1, memory_limit_mb=0.1)
    for k in range(NF):
        t = time.thread_time()
        while time.thread_time() - t < 0.002:
            ns[f"fn_{k}"](k % 40)
    prof = spprof.stop()
out["memory"] = [(w.category.__name__, str(w.message)) for w in caught]
target = os.path.join(os.environ["SCRATCH"], "missing-dir-later", "p.json")
os.makedirs(os.path.dirname(target))
with warnings.catch_warnings(record=True) as caught:
    spprof.start(output_path=target)
    os.rmdir(os.path.dirname(target))
    prof = spprof.stop()
out["save"] = [(w.category.__name__, str(w.message)) for w in caught]
out["samples"] = prof is not None
emit(out)
""",
        env={"SCRATCH": str(Path(__import__("tempfile").mkdtemp()))},
    )
    assert result["memory"] == [[
        "ProfilerWarning",
        "spprof: the memory limit of 0.1 MB is reached; samples from now on are dropped "
        "(counted in stats().dropped_samples). Raise memory_limit_mb to keep them",
    ]], result
    assert len(result["save"]) == 1, result
    category, text = result["save"][0]
    assert category == "RuntimeWarning", result
    assert text.startswith("spprof: could not save the profile to "), result
    assert "missing-dir-later" in text and "the returned Profile is intact" in text, result


# -- a golden Profile from a hand-made native result ---------------------------------

# A stand-in for the extension (installed as spprof._native before spprof
# is imported): it runs no sampler, and its stop() returns a native result
# written by hand, so the Profile spprof builds from it is fully known.
FAKE_NATIVE = r'''
import sys, types
from array import array

def q(values):
    return array("q", values).tobytes()

STATS = dict(
    active=False, allocation_failures=0, backend="perf_event", backend_note="", buffer_capacity=4096,
    buffer_dropped=2, buffer_dropped_weight=3, captured_samples=9, collected_samples=7,
    duration_ns=250_000_000, early_signals=1, foreign_signals=0, gc_samples=1,
    handler_ns=1_500_000, interval_ns=5_000_000, last_create_errno=0, memory_bytes=123_456,
    memory_dropped=1, memory_dropped_weight=1, memory_limit_bytes=104_857_600,
    no_thread_state=0, overruns_at_delete=0, undelivered_weight=0, paused=False, paused_ns=0, paused_signals=0,
    perf_descriptors_lost=0, perf_fallbacks=0, native_threads=0, perf_include_kernel=False,
    perf_timers_created=2, process_cpu_ns=60_000_000, recovered_walks=0,
    registered_threads=2, service_cpu_ns=500_000, service_gil_ticks=3, service_wakes=20,
    signals=9, sigprof_blocked_threads=0, stale_signals=0, subinterpreter_samples=0, native=False, native_samples=0, native_uncovered=0,
    timer_create_failures=0, timer_overruns=3, timers_created=0, timers_deleted=2,
    truncated_stacks=1, walk_errors=0, mode="cpu", wall_ticks=0, wall_late_ticks=0,
    off_cpu_samples=0, gil_wait_samples=0, torn_walks=0, wall_dropped=0, wall_dropped_weight=0,
    state_reads=0, state_files_lost=0, wall_cpu_ns=0, wall_exit_charges=0,
)
strings = ["<module>", "/srv/app/main.py", "handle", "/srv/app/web.py", "parse",
           "/srv/app/json_util.py", "<gc>", "", "hash_block", "worker"]
# (function, file, line, module: -1 for a Python frame) per frame index
frames = [(0, 1, 3, -1), (2, 3, 41, -1), (4, 5, 17, -1), (6, 7, 0, -1), (8, 3, 88, -1), (9, 3, 70, -1),
          (2, 3, 44, -1)]
# trie nodes: (parent node, frame index); node 0 is the root
nodes = [(0, 0), (0, 0), (1, 1), (2, 2), (2, 3), (0, 5), (5, 4), (1, 6)]
samples = [  # (timestamp, thread, node, weight)
    (1_000_000_000, 101, 3, 1), (1_005_000_000, 101, 3, 2), (1_010_000_000, 202, 6, 1),
    (1_020_000_000, 101, 4, 1), (1_030_000_000, 202, 6, 3), (1_040_000_000, 101, 2, 1),
    (1_050_000_000, 101, 7, 1),
]
RESULT = dict(STATS,
    strings=strings,
    frames=q([v for f in frames for v in f]),
    stacks=q([v for n in nodes for v in n]),
    timestamps=q([s[0] for s in samples]), thread_ids=q([s[1] for s in samples]),
    stack_ids=q([s[2] for s in samples]), weights=q([s[3] for s in samples]),
    states=q([0] * len(samples)), gil=q([1, 1, 2, 1, 2, 1, 1]),
    thread_names={101: "MainThread", 202: "worker-1"},
    start_monotonic_ns=999_000_000,
)

native = types.ModuleType("spprof._native")
state = {"active": False, "start": None}
native.is_active = lambda: state["active"]
def start(**kwargs):
    state["active"], state["start"] = True, kwargs
native.start = start
def stop():
    state["active"] = False
    return dict(RESULT)
native.stop = stop
native.stats = lambda: dict(STATS, active=state["active"])
native.has_unbuilt_result = lambda: False
for name in ("install_exec_hook", "before_fork", "after_fork_in_parent", "after_fork_in_child"):
    setattr(native, name, lambda *a: None)
native.wrap_start_new_thread = lambda original: original
native.wrap_start_joinable_thread = lambda original: original
native.sigprof_restored = lambda: False
native.is_paused = lambda: False
sys.modules["spprof._native"] = native
'''


def test_golden_profile_from_a_hand_made_native_result():
    result = run_scenario(
        FAKE_NATIVE
        + """
import dataclasses, platform, spprof
spprof.start(interval_ms=5)
started = native.stats()["active"]
prof = spprof.stop()
samples = [[s.thread_id, s.thread_name, s.weight,
            [[f.function_name, f.filename, f.lineno] for f in s.frames]] for s in prof.samples]
ts = [s.timestamp_ns for s in prof.samples]
stats = {k: v for k, v in dataclasses.asdict(prof.stats).items() if k != "raw"}
emit({
    "started": started, "start_args": {k: v for k, v in native_start_args().items()
                                        if k != "warning_category"},
    "category": native_start_args()["warning_category"].__name__,
    "samples": samples, "gaps": [b - a for a, b in zip(ts, ts[1:])],
    "first_after_start_ns": ts[0] - int(prof.start_time.timestamp() * 1e9),
    "duration_ns": round((prof.end_time - prof.start_time).total_seconds() * 1e9),
    "interval_ms": prof.interval_ms, "interval_ns": prof.interval_ns,
    "dropped": prof.dropped_count, "thread_names": {str(k): v for k, v in prof.thread_names.items()},
    "python_ok": prof.python_version == platform.python_version(),
    "platform_ok": prof.platform.startswith("Linux-"),
    "total_weight": prof.total_weight, "sample_count": prof.sample_count,
    "stats": stats, "raw_keys": sorted(prof.stats.raw),
    "collapsed": prof.to_collapsed(),
    "gil": [s.holds_gil for s in prof.samples],
})
""".replace("native_start_args()", "state['start']")
    )
    assert result["started"] is True
    assert result["start_args"] == {
        "interval_ns": 5_000_000, "memory_limit_bytes": 104_857_600,
        "take_over_sigprof": False, "backend": "auto", "mode": "cpu", "native": False,
    }
    assert result["category"] == "ProfilerWarning"
    main = ["<module> main", "/srv/app/main.py", 3]
    handle = ["handle", "/srv/app/web.py", 41]
    assert result["samples"] == [
        [101, "MainThread", 1, [main, handle, ["parse", "/srv/app/json_util.py", 17]]],
        [101, "MainThread", 2, [main, handle, ["parse", "/srv/app/json_util.py", 17]]],
        [202, "worker-1", 1, [["worker", "/srv/app/web.py", 70], ["hash_block", "/srv/app/web.py", 88]]],
        [101, "MainThread", 1, [main, handle, ["<gc>", "", 0]]],
        [202, "worker-1", 3, [["worker", "/srv/app/web.py", 70], ["hash_block", "/srv/app/web.py", 88]]],
        [101, "MainThread", 1, [main, handle]],
        [101, "MainThread", 1, [main, ["handle", "/srv/app/web.py", 44]]],
    ]
    assert result["gil"] == [True, True, False, True, False, True, True]
    assert result["gaps"] == [5_000_000, 5_000_000, 10_000_000, 10_000_000, 10_000_000, 10_000_000]
    # capture times are moved from the monotonic clock onto wall time: the
    # first sample came 1 ms after the session's start
    assert abs(result["first_after_start_ns"] - 1_000_000) < 50_000_000, result
    assert result["duration_ns"] == 250_000_000
    assert result["interval_ms"] == 5 and result["interval_ns"] == 5_000_000
    assert result["dropped"] == 3
    assert result["thread_names"] == {"101": "MainThread", "202": "worker-1"}
    assert result["python_ok"] and result["platform_ok"]
    assert result["total_weight"] == 10 and result["sample_count"] == 7
    assert result["stats"] == {
        "active": False, "paused": False, "backend": "perf_event", "interval_ms": 5.0,
        "collected_samples": 7, "dropped_samples": 3, "timer_overruns": 3,
        "timer_create_failures": 0, "sigprof_blocked_threads": 0, "registered_threads": 2,
        "duration_ms": 250.0, "effective_rate_hz": 9 / 0.06, "signals": 9,
        "handler_cpu_ms": 1.5, "service_cpu_ms": 0.5, "process_cpu_ms": 60.0,
        "overhead_percent": 100 * 2.0 / 60.0, "memory_bytes": 123_456, "walk_errors": 0,
        "truncated_stacks": 1, "no_thread_state": 0,
    }
    assert result["raw_keys"] == sorted([*STATS_SCHEMA, "start_monotonic_ns"])
    main_s = "<module> main (/srv/app/main.py:3);handle (/srv/app/web.py:41)"
    assert result["collapsed"].splitlines() == [
        f"{main_s} 1",
        f"{main_s};<gc> (:0) 1",
        f"{main_s};parse (/srv/app/json_util.py:17) 3",
        "<module> main (/srv/app/main.py:3);handle (/srv/app/web.py:44) 1",
        "worker (/srv/app/web.py:70);hash_block (/srv/app/web.py:88) 4",
    ]
