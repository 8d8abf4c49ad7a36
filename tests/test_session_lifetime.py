"""Sessions at the edges of a process's life: started from exit handlers,
and joined from parts (a session that was stopped and restarted)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import run_python
from spprof import Frame, Profile, Sample

BURN = """
import time
def burn_at_exit(cpu_s):
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass
"""

# Where the exit handler that starts a session is registered, relative to
# spprof's import (atexit runs handlers last-registered-first).
LATE_HANDLERS = {
    # registered before spprof is imported: runs after spprof's exit hook
    "registered_before_import": """
import atexit
def late():
    spprof.start(interval_ms=5, output_path=OUT)
    burn_at_exit(0.2)
atexit.register(late)
import spprof
""",
    # spprof is first imported while the exit handlers run (in a program
    # that has imported threading, as most do: that is how spprof can tell
    # that the exit handlers are running)
    "imported_at_exit": """
import atexit, threading
def late():
    import spprof
    spprof.start(interval_ms=5, output_path=OUT)
    burn_at_exit(0.2)
atexit.register(late)
""",
    # registered after the import, no session before: the first start()
    # happens during exit
    "registered_after_import": """
import atexit, spprof
def late():
    spprof.start(interval_ms=5, output_path=OUT)
    burn_at_exit(0.2)
atexit.register(late)
""",
    # an earlier session ran and ended normally
    "after_an_earlier_session": """
import atexit, spprof
def late():
    spprof.start(interval_ms=5, output_path=OUT)
    burn_at_exit(0.2)
atexit.register(late)
spprof.start()
spprof.stop()
""",
}


@pytest.mark.parametrize("setup", sorted(LATE_HANDLERS))
def test_session_started_in_an_exit_handler_is_saved(tmp_path, setup):
    out = tmp_path / "late.speedscope.json"
    code = f"OUT = {str(out)!r}\n" + BURN + LATE_HANDLERS[setup] + "print('main done')\n"
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "main done" in proc.stdout
    assert "Traceback" not in proc.stderr and "spprof:" not in proc.stderr, proc.stderr
    doc = json.loads(out.read_text())
    frames = doc["shared"]["frames"]
    burn = {i for i, f in enumerate(frames) if f["name"] == "burn_at_exit"}
    cpu_ns = sum(
        w for p in doc["profiles"] for s, w in zip(p["samples"], p["weights"]) if burn & set(s)
    )
    assert cpu_ns >= 0.1e9, doc


def test_late_session_stopped_by_its_own_handler_is_not_stopped_twice(tmp_path):
    out = tmp_path / "own.speedscope.json"
    code = (
        f"OUT = {str(out)!r}\n"
        + BURN
        + """
import atexit
def late():
    spprof.start(interval_ms=5)
    burn_at_exit(0.1)
    spprof.stop().save(OUT)
    print("handler stopped it")
atexit.register(late)
import spprof
"""
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "handler stopped it" in proc.stdout
    assert "could not stop" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(out.read_text())["profiles"]


T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_profiles_with_different_intervals_join_at_their_common_divisor():
    a, b = Frame("a", "x.py", 1), Frame("b", "x.py", 2)
    first = Profile(T0, T0 + timedelta(seconds=1), 10, [Sample(1, 7, "T", (a,), 3)])
    second = Profile(
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=3),
        4,
        [Sample(2, 7, None, (a, b), 5), Sample(3, 8, "U", (a,), 1)],
        dropped_count=2,
    )
    joined = Profile.joined([first, second])
    assert joined.interval_ms == 2
    assert joined.total_cpu_ms == first.total_cpu_ms + second.total_cpu_ms == 30 + 24
    assert [(s.timestamp_ns, s.thread_id, s.frames, s.weight) for s in joined.samples] == [
        (1, 7, (a,), 15),
        (2, 7, (a, b), 10),
        (3, 8, (a,), 2),
    ]
    assert joined.thread_names == {7: "T", 8: "U"}
    assert joined.start_time == T0 and joined.end_time == T0 + timedelta(seconds=3)
    assert joined.dropped_count == 2
    assert Profile.joined([first]) is first
    with pytest.raises(ValueError):
        Profile.joined([])
