"""Shared test helpers.

Scenarios that sample real threads run in a subprocess (`run_scenario`), so a
crash fails one test instead of killing the run, and each gets a fresh
process (timers, handlers). The autouse fixture makes sure no test leaves a
profiling session running in the test process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Printed by scenarios in front of their JSON result.
RESULT_MARKER = "@@SPPROF-RESULT@@"
# Printed by a scenario whose profile holds a sample with an empty stack.
EMPTY_STACK_MARKER = "@@SPPROF-EMPTY-STACK@@"

PRELUDE = f"""
import faulthandler, json, sys
faulthandler.enable()
def emit(obj):
    sys.stdout.write({RESULT_MARKER!r} + json.dumps(obj) + "\\n")
    sys.stdout.flush()

class _EveryProfileHasStacks:
    # When spprof's model is first imported, every Profile the sampler
    # builds (Profile.from_columns) is checked: no sample may have an empty
    # stack. A violation is reported on stdout; scenario_result fails on it.
    def find_spec(self, name, path=None, target=None):
        if name != "spprof._model":
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module
        def exec_module(module):
            load(module)
            build = module.Profile.from_columns.__func__
            def from_columns(cls, **columns):
                prof = build(cls, **columns)
                stacks = columns["stacks"]
                empty = sum(1 for i in columns["stack_indices"] if not stacks[i])
                if empty:
                    try:
                        sys.stdout.write({EMPTY_STACK_MARKER!r} + str(empty) + "\\n")
                        sys.stdout.flush()
                    except (OSError, ValueError):
                        pass
                return prof
            module.Profile.from_columns = classmethod(from_columns)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, _EveryProfileHasStacks())
"""

# Every child a test starts gets the same surroundings, whatever the test
# run itself inherited (nohup's ignored SIGHUP, a shell's ignored SIGINT for
# background jobs, a blocked signal, a umask, a locale, PYTHON* variables,
# a terminal on stdin).
RESET_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGHUP", "SIGINT", "SIGTERM", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
                 "SIGPROF", "SIGVTALRM", "SIGCHLD", "SIGPIPE", "SIGXFSZ", "SIGTSTP",
                 "SIGTTIN", "SIGTTOU")
)


def reset_inherited_state() -> None:
    """preexec_fn of every child: default dispositions, nothing blocked."""
    for sig in RESET_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.umask(0o022)


def child_env(extra: dict | None = None) -> dict:
    # A harness that runs the suite under a checker (tools/memcheck) names
    # the PYTHON* variables its children need in SPPROF_TEST_CHILD_ENV.
    keep = set(filter(None, os.environ.get("SPPROF_TEST_CHILD_ENV", "").split(",")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") or k in keep}
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    env.pop("LANGUAGE", None)
    if extra:
        env.update(extra)
    return env


def child_kwargs(env: dict | None = None, preexec_fn=None) -> dict:
    """subprocess keyword arguments for a test's child (see above);
    `preexec_fn` runs after the reset, to set up what the test is about."""
    def setup() -> None:
        reset_inherited_state()
        if preexec_fn is not None:
            preexec_fn()
    return {"env": child_env(env), "stdin": subprocess.DEVNULL, "preexec_fn": setup}


def run_python(code: str, *, timeout: float = 120, env: dict | None = None,
               args: list[str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *(args or [])],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd if cwd is not None else str(ROOT),
        **child_kwargs(env),
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
    empty = [line for line in proc.stdout.splitlines() if line.startswith(EMPTY_STACK_MARKER)]
    if empty:
        pytest.fail(f"a profile of this scenario has samples with an empty stack: {empty}\n"
                    f"--- stderr ---\n{proc.stderr[-3000:]}", pytrace=False)
    if proc.returncode != 0 or not results:
        pytest.fail(
            f"scenario exited with {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    return json.loads(results[-1])


def build_shared_library(tmp_path_factory: pytest.TempPathFactory, name: str, source: str | Path,
                         *flags: str, cxx: bool = False) -> str:
    """A shared library `name` built from C (or, with `cxx`, C++) `source`
    (its text, or a file such as tests/data/*.c) with the system's compiler
    and `flags` (-O/-g level, -pthread...), in a fresh temporary directory;
    the test is skipped where there is no compiler. Returns its path."""
    compilers = ("g++", "c++") if cxx else ("cc", "gcc", "clang")
    exe = next((found for found in map(shutil.which, compilers) if found), None)
    if exe is None:
        pytest.skip(f"no {'C++' if cxx else 'C'} compiler to build {name}")
    out = tmp_path_factory.mktemp("clib") / name
    if isinstance(source, Path):
        src = source
    else:
        src = out.with_suffix(".cpp" if cxx else ".c")
        src.write_text(source)
    subprocess.run([exe, *flags, "-shared", "-fPIC", "-o", str(out), str(src)], check=True,
                   capture_output=True, timeout=120)
    return str(out)


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


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "default_python: version-independent and heavy; make test runs it on the default "
        "Python only (tools/test_all_pythons.sh)",
    )


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
