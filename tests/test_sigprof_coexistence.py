"""SIGPROF belongs to the program too: during a session, signal.getsignal and
signal.signal keep working for it (what it reads back and what it installs
never end the process), stop() never replaces a handler installed after
start(), foreign SIGPROFs get the disposition the program believes in, and
spprof's own timer signals never reach it. Each scenario runs in its own
process."""

from __future__ import annotations

import signal

import pytest

from conftest import BURN_SRC, run_python, run_scenario

COMMON_SRC = BURN_SRC + """
import os, signal, sys, time, _signal
import spprof

def define(name):
    # A function with its own name, to find its samples in the profile.
    exec(f"def {name}(cpu_s):\\n    return burn(cpu_s)\\n", globals())
    return globals()[name]

_idle = []

def foreign_thread_signal():
    # A thread-directed foreign SIGPROF, sent to a thread that sleeps: a
    # sampled thread may have its timer's SIGPROF pending at that moment,
    # and the kernel keeps one pending instance of a signal per thread, so
    # the two would merge into one.
    import threading
    if not _idle:
        parked = threading.Event()
        _idle.append(threading.Thread(target=parked.wait, daemon=True, name="idle"))
        _idle[0].start()
        time.sleep(0.01)
    signal.pthread_kill(_idle[0].ident, signal.SIGPROF)
    time.sleep(0.01)

def samples_in(prof, name):
    return sum(1 for s in prof.samples if any(f.function_name == name for f in s.frames))

import ctypes
class SigAction(ctypes.Structure):
    _fields_ = [("handler", ctypes.c_void_p),
                ("mask", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))),
                ("flags", ctypes.c_int),
                ("restorer", ctypes.c_void_p)]
libc = ctypes.CDLL(None, use_errno=True)

def kernel_handler():
    act = SigAction()
    assert libc.sigaction(signal.SIGPROF, None, ctypes.byref(act)) == 0
    return act.handler or 0

def install_ignore_in_c():
    act = SigAction()
    act.handler = 1  # SIG_IGN
    assert libc.sigaction(signal.SIGPROF, ctypes.byref(act), None) == 0

# The kernel's SIGPROF disposition, read with sigaction(); spprof's handler
# is recognised by its address, taken by start_spprof().
SPPROF_HANDLER = []
def disposition():
    h = kernel_handler()
    if h in SPPROF_HANDLER:
        return "spprof"
    return {0: "default", 1: "ignore"}.get(h, "handler")

def start_spprof(**kw):
    spprof.start(**kw)
    if not SPPROF_HANDLER:
        SPPROF_HANDLER.append(kernel_handler())

def originals_back():
    return type(_signal.signal).__name__ == "builtin_function_or_method" and \\
        type(_signal.getsignal).__name__ == "builtin_function_or_method"
"""


@pytest.mark.parametrize("how", ["signal_returns_old", "getsignal_then_signal"])
def test_save_and_restore_during_a_session(how):
    """A library that saves SIGPROF's disposition, installs its own handler
    and puts the saved one back: the saved one is SIG_DFL (what the program
    had), restoring it does not end the process, spprof keeps sampling, and
    its timer signals never reach the library's handler."""
    result = run_scenario(
        COMMON_SRC
        + f"""
how = {how!r}
hits = []
def library_handler(signum, frame):
    hits.append(signum)
start_spprof(interval_ms=1)
burn(0.05)
out = {{"during_start": signal.getsignal(signal.SIGPROF) == signal.SIG_DFL}}
if how == "signal_returns_old":
    saved = signal.signal(signal.SIGPROF, library_handler)
else:
    saved = signal.getsignal(signal.SIGPROF)
    signal.signal(signal.SIGPROF, library_handler)
out["saved_is_dfl"] = saved == signal.SIG_DFL
out["reads_library_handler"] = signal.getsignal(signal.SIGPROF) is library_handler
define("with_library_handler")(0.1)
returned = signal.signal(signal.SIGPROF, saved)
out["restore_returned_library_handler"] = returned is library_handler
out["reads_dfl_again"] = signal.getsignal(signal.SIGPROF) == signal.SIG_DFL
out["kernel_during"] = disposition()
define("after_restore")(0.3)
prof = spprof.stop()
out.update(
    hits=len(hits),
    with_handler=samples_in(prof, "with_library_handler"),
    after_restore=samples_in(prof, "after_restore"),
    getsignal_after_stop=signal.getsignal(signal.SIGPROF) == signal.SIG_DFL,
    kernel_after_stop=disposition(),
    originals_back=originals_back(),
)
burn(0.05)
emit(out)
"""
    )
    assert result["during_start"] and result["saved_is_dfl"], result
    assert result["reads_library_handler"] and result["restore_returned_library_handler"], result
    assert result["reads_dfl_again"], result
    assert result["kernel_during"] == "spprof", result
    # spprof's timer signals go to spprof, never to the library's handler.
    assert result["hits"] == 0, result
    assert result["with_handler"] >= 5, result
    assert result["after_restore"] >= 20, result
    assert result["getsignal_after_stop"] and result["kernel_after_stop"] == "default", result
    assert result["originals_back"], result


def test_other_tool_with_itimer_prof_during_a_session():
    """Another profiler installs a Python SIGPROF handler and ITIMER_PROF
    mid-session: its ticks reach its handler during and after the session
    (and only its ticks: not spprof's), spprof still samples, and after
    stop() its handler is the one installed and reported."""
    result = run_scenario(
        COMMON_SRC
        + """
ticks = {"during": 0, "after": 0}
phase = "during"
def other_tool(signum, frame):
    ticks[phase] += 1
start_spprof(interval_ms=1)
burn(0.05)
previous = signal.signal(signal.SIGPROF, other_tool)
signal.setitimer(signal.ITIMER_PROF, 0.02, 0.02)
t0 = time.process_time()
define("both_tools")(0.6)
cpu_during = time.process_time() - t0
prof = spprof.stop()
phase = "after"
out = {
    "reads_other_tool": signal.getsignal(signal.SIGPROF) is other_tool,
    "kernel_after_stop": disposition(),
    "previous_is_dfl": previous == signal.SIG_DFL,
}
t0 = time.process_time()
define("other_tool_alone")(0.6)
cpu_after = time.process_time() - t0
signal.setitimer(signal.ITIMER_PROF, 0, 0)
signal.signal(signal.SIGPROF, signal.SIG_IGN)
out.update(ticks=ticks, cpu_during=cpu_during, cpu_after=cpu_after,
           spprof_samples=samples_in(prof, "both_tools"),
           foreign=prof.stats.raw["foreign_signals"])
emit(out)
"""
    )
    assert result["previous_is_dfl"], result
    assert result["reads_other_tool"] and result["kernel_after_stop"] == "handler", result
    expected_during = result["cpu_during"] / 0.02
    # ITIMER_PROF is one process-wide timer checked on scheduler ticks, and
    # its signals merge: an expiration while the last one's Python handler
    # has not run yet (the main thread waiting for the GIL or the CPU on a
    # loaded machine, a slow sanitizer build) adds nothing. So how many of
    # the ~30 expirations become calls depends on the load (21 and 11 seen
    # under load, about 30 on a quiet machine); the test asks that they
    # reach the other tool at all, during and after the session, and that
    # spprof's 1 ms timers (some 600 signals here) never leak into its
    # handler: that would be far above one call per expiration.
    # (In one heavily overloaded run, seven CPU-bound processes on two
    # cores, "after" was 1 of about 30, in the plain and the sanitizer pass
    # alike; it is 25-30 with two burners and quiet. Not explained yet: the
    # check here is that the other tool's handler is reached at all.)
    assert 3 <= result["ticks"]["during"] <= 1.5 * expected_during + 3, result
    assert result["ticks"]["after"] >= 1, result
    assert result["spprof_samples"] >= 30, result
    # They came through spprof's handler (a few may have arrived between
    # stop() putting the other tool's handler back and the phase switch).
    assert result["foreign"] >= result["ticks"]["during"] - 5, result




@pytest.mark.parametrize("tool", ["faulthandler", "sigaction_ignore"])
def test_c_level_handler_installed_during_a_session_is_left_in_place(tool, tmp_path):
    """A handler installed at the C level mid-session (faulthandler.register,
    or a plain sigaction) is still the installed one after stop(), and the
    process survives SIGPROFs after it."""
    dump = tmp_path / "dump.txt"
    result = run_scenario(
        COMMON_SRC
        + f"""
import faulthandler
tool = {tool!r}
start_spprof(interval_ms=5)
burn(0.1)
dump = open({str(dump)!r}, "w+")
if tool == "faulthandler":
    faulthandler.register(signal.SIGPROF, file=dump, all_threads=False, chain=False)
else:
    install_ignore_in_c()
theirs = kernel_handler()
burn(0.1)
prof = spprof.stop()
out = {{"same_after_stop": kernel_handler() == theirs, "theirs": theirs,
        "kernel_after_stop": disposition(), "originals_back": originals_back()}}
dump.flush()
dumps_before = open({str(dump)!r}).read().count("most recent call first")
os.kill(os.getpid(), signal.SIGPROF)
time.sleep(0.05)
dump.flush()
out["dumps_after_kill"] = open({str(dump)!r}).read().count("most recent call first") - dumps_before
burn(0.05)
out["survived"] = True
if tool == "faulthandler":
    # faulthandler puts back what it saved, spprof's handler of the ended
    # session: a new session still starts and ends with SIG_DFL.
    faulthandler.unregister(signal.SIGPROF)
    out["after_unregister"] = disposition()
    start_spprof(interval_ms=5)
    define("second_session")(0.2)
    out["second_session"] = samples_in(spprof.stop(), "second_session")
    out["after_second"] = disposition()
emit(out)
"""
    )
    assert result["same_after_stop"] and result["survived"], result
    assert result["originals_back"], result
    if tool == "faulthandler":
        assert result["kernel_after_stop"] == "handler", result
        assert result["dumps_after_kill"] == 1, result
        assert result["after_unregister"] == "spprof", result
        assert result["second_session"] >= 20 and result["after_second"] == "default", result
    else:
        assert result["theirs"] == 1 and result["kernel_after_stop"] == "ignore", result


def test_believed_sig_ign_ignores_foreign_sigprof():
    """The program sets SIG_IGN mid-session: a foreign SIGPROF is ignored,
    spprof's own signals still sample, and SIG_IGN is what stays."""
    result = run_scenario(
        COMMON_SRC
        + """
start_spprof(interval_ms=1)
burn(0.05)
previous = signal.signal(signal.SIGPROF, signal.SIG_IGN)
out = {"previous_is_dfl": previous == signal.SIG_DFL,
       "reads_ign": signal.getsignal(signal.SIGPROF) == signal.SIG_IGN}
os.kill(os.getpid(), signal.SIGPROF)
foreign_thread_signal()
define("after_ignore")(0.3)
prof = spprof.stop()
out.update(after_ignore=samples_in(prof, "after_ignore"), foreign=prof.stats.raw["foreign_signals"],
           reads_ign_after_stop=signal.getsignal(signal.SIGPROF) == signal.SIG_IGN,
           kernel_after_stop=disposition())
os.kill(os.getpid(), signal.SIGPROF)
out["survived"] = True
emit(out)
"""
    )
    assert result["previous_is_dfl"] and result["reads_ign"], result
    assert result["after_ignore"] >= 20, result
    assert result["foreign"] == 2, result
    assert result["reads_ign_after_stop"] and result["kernel_after_stop"] == "ignore", result
    assert result["survived"], result


@pytest.mark.parametrize("how", ["never_changed", "set_during_session"])
def test_believed_sig_dfl_foreign_sigprof_terminates(how):
    """With SIG_DFL believed (what the program had, or what it set during
    the session), spprof's own signals never end the process, but a foreign
    SIGPROF does, by the default action, as it would without spprof."""
    proc = run_python(
        COMMON_SRC
        + f"""
start_spprof(interval_ms=1)
burn(0.05)
if {how!r} == "set_during_session":
    signal.signal(signal.SIGPROF, lambda signum, frame: None)
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
burn(0.2)
print("burned", flush=True)
os.kill(os.getpid(), signal.SIGPROF)
time.sleep(1)
print("survived", flush=True)
""",
        timeout=60,
    )
    assert "burned" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr)
    assert "survived" not in proc.stdout, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == -signal.SIGPROF, (proc.returncode, proc.stdout, proc.stderr)
    assert "Fatal Python error" not in proc.stderr, proc.stderr


def test_fork_child_gets_the_program_disposition():
    """A fork mid-session, after the program set SIG_DFL: the child has the
    originals of signal/getsignal back, SIG_DFL both in the kernel and in
    Python's record, and can run its own session; the parent goes on."""
    result = run_scenario(
        COMMON_SRC
        + """
import json
start_spprof(interval_ms=1)
signal.signal(signal.SIGPROF, lambda signum, frame: None)
signal.signal(signal.SIGPROF, signal.SIG_DFL)
burn(0.05)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    child = {"active": spprof.is_active(), "originals_back": originals_back(),
             "kernel": disposition(),
             "reads_dfl": signal.getsignal(signal.SIGPROF) == signal.SIG_DFL}
    start_spprof(interval_ms=1)
    signal.signal(signal.SIGPROF, signal.SIG_IGN)
    define("child_work")(0.2)
    p = spprof.stop()
    child.update(samples=samples_in(p, "child_work"), kernel_after=disposition(),
                 reads_ign=signal.getsignal(signal.SIGPROF) == signal.SIG_IGN)
    os.write(w, json.dumps(child).encode()); os.close(w)
    os._exit(0)
os.close(w)
define("parent_work")(0.2)
data = b""
while chunk := os.read(r, 65536):
    data += chunk
_, status = os.waitpid(pid, 0)
prof = spprof.stop()
emit({"child": json.loads(data), "status": status, "parent": samples_in(prof, "parent_work"),
      "kernel_after_stop": disposition()})
"""
    )
    child = result["child"]
    assert result["status"] == 0, result
    assert child["active"] is False and child["originals_back"], child
    assert child["kernel"] == "default" and child["reads_dfl"], child
    assert child["samples"] >= 20, child
    assert child["kernel_after"] == "ignore" and child["reads_ign"], child
    assert result["parent"] >= 20 and result["kernel_after_stop"] == "default", result


def test_stop_in_another_thread_brings_python_in_line():
    """stop() called from a worker thread after the program set SIG_DFL:
    Python's own record follows in the main thread, so getsignal without
    spprof's wrappers reports SIG_DFL."""
    result = run_scenario(
        COMMON_SRC
        + """
import threading
start_spprof(interval_ms=1)
signal.signal(signal.SIGPROF, lambda signum, frame: None)
signal.signal(signal.SIGPROF, signal.SIG_DFL)
define("before_stop")(0.2)
got = {}
t = threading.Thread(target=lambda: got.update(prof=spprof.stop()))
t.start(); t.join()
for _ in range(100):   # the main thread runs its pending calls between bytecodes
    time.sleep(0.001)
emit({"samples": samples_in(got["prof"], "before_stop"), "originals_back": originals_back(),
      "reads_dfl": signal.getsignal(signal.SIGPROF) == signal.SIG_DFL,
      "kernel": disposition()})
"""
    )
    assert result["samples"] >= 20, result
    assert result["originals_back"] and result["kernel"] == "default", result
    assert result["reads_dfl"], result


def test_wrapper_wrapped_by_someone_else():
    """Someone wraps signal.signal over spprof's wrapper during a session:
    stop() leaves theirs in place, ours inside it passes through, and the
    next session still protects the program."""
    result = run_scenario(
        COMMON_SRC
        + """
start_spprof(interval_ms=1)
ours = _signal.signal
calls = []
def theirs(signalnum, handler):
    calls.append(signalnum)
    return ours(signalnum, handler)
_signal.signal = theirs
signal.signal(signal.SIGPROF, signal.SIG_DFL)
define("first")(0.2)
first = spprof.stop()
out = {"theirs_left": _signal.signal is theirs, "kernel_after_first": disposition()}
signal.signal(signal.SIGPROF, signal.SIG_IGN)
out["kernel_ign"] = disposition()
out["reads_ign"] = signal.getsignal(signal.SIGPROF) == signal.SIG_IGN
signal.signal(signal.SIGPROF, signal.SIG_DFL)
start_spprof(interval_ms=1)
signal.signal(signal.SIGPROF, signal.SIG_IGN)
signal.signal(signal.SIGPROF, signal.SIG_DFL)
define("second")(0.2)
second = spprof.stop()
out.update(first=samples_in(first, "first"), second=samples_in(second, "second"), calls=len(calls),
           kernel_after_second=disposition(),
           reads_dfl=signal.getsignal(signal.SIGPROF) == signal.SIG_DFL)
emit(out)
"""
    )
    assert result["theirs_left"] and result["calls"] == 6, result
    assert result["first"] >= 20 and result["second"] >= 20, result
    assert result["kernel_after_first"] == "default", result
    assert result["kernel_ign"] == "ignore" and result["reads_ign"], result
    assert result["kernel_after_second"] == "default" and result["reads_dfl"], result


def test_python_handler_before_start_with_take_over_and_changes_during():
    """take_over_sigprof over the program's handler, which the program then
    replaces mid-session: foreign SIGPROFs go to the current one, and stop()
    leaves the current one installed and reported."""
    result = run_scenario(
        COMMON_SRC
        + """
first_hits, second_hits = [], []
def first(signum, frame): first_hits.append(signum)
def second(signum, frame): second_hits.append(signum)
signal.signal(signal.SIGPROF, first)
start_spprof(interval_ms=1, take_over_sigprof=True)
out = {"reads_first": signal.getsignal(signal.SIGPROF) is first}
burn(0.1)
foreign_thread_signal()
burn(0.01)
out["returned_first"] = signal.signal(signal.SIGPROF, second) is first
burn(0.1)
foreign_thread_signal()
os.kill(os.getpid(), signal.SIGPROF)
burn(0.05)
prof = spprof.stop()
os.kill(os.getpid(), signal.SIGPROF)
burn(0.05)
out.update(first=len(first_hits), second=len(second_hits), samples=prof.sample_count,
           reads_second=signal.getsignal(signal.SIGPROF) is second,
           kernel=disposition())
emit(out)
"""
    )
    assert result["reads_first"] and result["returned_first"], result
    assert result["first"] == 1 and result["second"] == 3, result
    assert result["samples"] >= 20, result
    assert result["reads_second"] and result["kernel"] == "handler", result


