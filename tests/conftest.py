"""Shared test helpers.

Scenarios that sample real threads run in a subprocess (`run_scenario`), so a
crash fails one test instead of killing the run, and each gets a fresh
process (timers, handlers). The autouse fixture makes sure no test leaves a
profiling session running in the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Printed by scenarios in front of their JSON result.
RESULT_MARKER = "@@SPPROF-RESULT@@"

PRELUDE = f"""
import faulthandler, json, sys
faulthandler.enable()
def emit(obj):
    sys.stdout.write({RESULT_MARKER!r} + json.dumps(obj) + "\\n")
    sys.stdout.flush()
"""


def run_python(code: str, *, timeout: float = 120, env: dict | None = None,
               args: list[str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("PYTHONFAULTHANDLER", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *(args or [])],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )


# Scenario code: burn(cpu_s) spins on the thread's own CPU clock.
BURN_SRC = """
import time
def burn(cpu_s):
    end = time.thread_time() + cpu_s
    x = 0
    while time.thread_time() < end:
        x += 1
    return x
"""


def run_scenario(code: str, *, timeout: float = 120, env: dict | None = None) -> dict:
    """Run `code` in a fresh interpreter; it reports with emit(obj). Fails
    the test with the child's output (faulthandler traceback included) if it
    crashes or reports nothing."""
    return scenario_result(run_python(code, timeout=timeout, env=env))


def scenario_result(proc: subprocess.CompletedProcess) -> dict:
    """The emitted result of a run_python() child that must exit 0."""
    results = [line[len(RESULT_MARKER):] for line in proc.stdout.splitlines()
               if line.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not results:
        pytest.fail(
            f"scenario exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    return json.loads(results[-1])


def spprof_timers() -> list[dict]:
    """Sampling timers of THIS process: POSIX timers that deliver SIGPROF
    (/proc/self/timers) and perf_event descriptors (/proc/self/fd)."""
    return parse_proc_timers(Path("/proc/self/timers").read_text()) + perf_event_fds()


def perf_event_fds() -> list[dict]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target == "anon_inode:[perf_event]":
            out.append({"id": f"perf-fd-{fd}", "signal": "27/perf"})
    return out


def parse_proc_timers(text: str) -> list[dict]:
    timers, cur = [], None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "ID":
            cur = {"id": value}
            timers.append(cur)
        elif cur is not None:
            cur[key] = value
    return [t for t in timers if t.get("signal", "").split("/")[0] == "27"]


# Code for scenarios: the same helpers, as source.
PROC_TIMERS_SRC = """
def sigprof_timers():
    timers, cur = [], None
    for line in open("/proc/self/timers").read().splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "ID":
            cur = {"id": value}; timers.append(cur)
        elif cur is not None:
            cur[key] = value
    out = [t for t in timers if t.get("signal", "").split("/")[0] == "27"]
    import os as _os
    for fd in _os.listdir("/proc/self/fd"):
        try:
            if _os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]":
                out.append({"id": "perf-fd-" + fd, "signal": "27/perf"})
        except OSError:
            pass
    return out
"""


@pytest.fixture(autouse=True)
def _no_session_leaks():
    """A test must not leave the profiler running or timers armed."""
    yield
    import spprof

    if spprof.is_active():
        spprof.stop()
        pytest.fail("the test left a profiling session running")
    leaked = spprof_timers()
    if leaked:
        pytest.fail(f"SIGPROF timers left behind: {leaked}")
