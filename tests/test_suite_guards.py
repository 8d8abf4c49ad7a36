"""The suite's own guarantees: what every scenario child is checked for,
and that a child does not inherit the test run's surroundings."""

from __future__ import annotations

import os
import signal

import pytest

from conftest import run_python, run_scenario, scenario_result


def test_a_profile_with_an_empty_stack_fails_its_scenario():
    """Every Profile a scenario's sampler path builds is checked: one sample
    with an empty stack fails the test (so the check guards every scenario
    of the suite; the product's own guarantee is tested in test_sampling)."""
    proc = run_python(
        """
from array import array
from datetime import datetime
from spprof import Frame, Profile
stacks = [(Frame("f", "f.py", 1),), ()]
prof = Profile.from_columns(
    start_time=datetime.now(), end_time=datetime.now(), interval_ms=1.0, stacks=stacks,
    timestamps_ns=array("q", [1, 2]), thread_ids=array("q", [1, 1]),
    stack_indices=array("q", [0, 1]), weights=array("q", [1, 1]), thread_names={1: None})
emit({"samples": prof.sample_count})
"""
    )
    with pytest.raises(pytest.fail.Exception, match="empty stack"):
        scenario_result(proc)


def test_scenario_children_do_not_inherit_the_test_runs_state():
    """With SIGHUP and SIGINT ignored, SIGUSR1 blocked, umask 077 and
    PYTHONWARNINGS set in the test run (as under nohup, a background job, a
    CI runner), a scenario child still starts with default dispositions,
    nothing blocked, umask 022, no PYTHON* variable and stdin not a
    terminal."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGINT)}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    old_umask = os.umask(0o077)
    os.environ["PYTHONWARNINGS"] = "error"
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        result = run_scenario(
            """
import os, signal, sys
umask = os.umask(0); os.umask(umask)
emit({
    "sighup": str(signal.getsignal(signal.SIGHUP)),
    "sigint_is_python_default": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "umask": umask,
    "python_vars": sorted(k for k in os.environ if k.startswith("PYTHON")),
    "stdin_tty": sys.stdin.isatty(),
})
"""
        )
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.umask(old_umask)
        del os.environ["PYTHONWARNINGS"]
    assert result == {
        "sighup": str(signal.Handlers.SIG_DFL),
        "sigint_is_python_default": True,
        "blocked": [],
        "umask": 0o022,
        "python_vars": [],
        "stdin_tty": False,
    }
