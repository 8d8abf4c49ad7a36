"""The ``spprof`` command line, run as a user would: in a subprocess."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import child_kwargs
from spprof.writers import formats

TIMEOUT = 60

HOT_SCRIPT = """\
import json, sys, time

def hot_loop():
    end = time.thread_time() + 0.5
    x = 0
    while time.thread_time() < end:
        x += 1
    return x

def cold():
    time.sleep(0.05)

if len(sys.argv) > 1 and sys.argv[1] == "--record":
    with open(sys.argv[2], "w") as fh:
        json.dump({"argv": sys.argv, "path0": sys.path[0], "name": __name__}, fh)
cold()
hot_loop()
"""

THREADS_SCRIPT = """\
import threading, time

def hot_loop():
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass

threads = [threading.Thread(target=hot_loop) for _ in range(2)]
for t in threads:
    t.start()
hot_loop()
for t in threads:
    t.join()
"""


def spprof(*args: str, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spprof", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **child_kwargs(),
    )


def spprof_backend_here() -> str:
    """The backend a default session gets on this machine."""
    import spprof as api

    api.start()
    try:
        return api.stats().backend
    finally:
        api.stop()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def hot(tmp_path: Path) -> Path:
    return write(tmp_path / "hot.py", HOT_SCRIPT)


# The coverage lines printed before the summary (test_coverage_lines_before_the_summary).
COVERAGE = re.compile(r"^spprof: (profiled .* process CPU \(\d+%\)|the rest: .+|  .+|child processes .+)$")


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr's non-empty lines, without the coverage lines."""
    return [line for line in proc.stderr.splitlines() if line.strip() and not COVERAGE.match(line)]


def speedscope_share(doc: dict, function: str) -> float:
    """Share of the sampled CPU weight whose stack contains ``function``."""
    frames = doc["shared"]["frames"]
    wanted = {i for i, f in enumerate(frames) if f["name"] == function}
    hit = total = 0
    for prof in doc["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"]):
            total += weight
            if wanted.intersection(stack):
                hit += weight
    return hit / total if total else 0.0


def collapsed_share(text: str, function: str) -> float:
    hit = total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        if any(frame.startswith(function + " (") for frame in stack.split(";")):
            hit += int(count)
    return hit / total if total else 0.0


SUMMARY = re.compile(
    r"^spprof: \d+\.\d\d s, [\d,]+ samples? \(\d+\.\d Hz\), [\d,]+ dropped, "
    r"[\d,]+ overruns?, \d+ threads?, (?P<backend>perf_event|timer_create) -> (?P<path>.+)$"
)


# -- running a target ---------------------------------------------------------------


def test_speedscope_profile_has_the_hot_function(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "out.json", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert speedscope_share(doc, "hot_loop") > 0.5
    # the runner's frames (spprof, runpy) are not at the root of the stacks
    # of the target's code (spprof's own start and stop may be sampled too)
    frames = doc["shared"]["frames"]
    target = [s for p in doc["profiles"] for s in p["samples"]
              if any(frames[i]["file"].endswith("hot.py") for i in s)]
    assert len(target) >= 20
    assert {frames[s[0]]["name"] for s in target} == {"<module> hot"}


def test_collapsed_profile_has_the_hot_function(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "out.collapsed", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "out.collapsed").read_text()
    assert collapsed_share(text, "hot_loop") > 0.5


def test_arguments_after_the_script_reach_it_untouched(tmp_path: Path, hot: Path) -> None:
    record = tmp_path / "argv.json"
    target_args = ["--record", str(record), "-o", "x", "--threads", "-m", "foo", "--", "-i", "0"]
    proc = spprof("run", "-q", "-o", "out.collapsed", "hot.py", *target_args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["hot.py", *target_args]
    assert seen["name"] == "__main__"
    assert os.path.realpath(seen["path0"]) == os.path.realpath(tmp_path)
    assert (tmp_path / "out.collapsed").exists()
    assert not (tmp_path / "x").exists()


def test_script_directory_is_sys_path0(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / "helper.py", "VALUE = 42\n")
    write(
        sub / "main.py",
        "import sys, helper\nopen(sys.argv[1], 'w').write(f'{helper.VALUE} {sys.path[0]}')\n",
    )
    proc = spprof("run", "-o", "out.collapsed", "sub/main.py", "seen.txt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    value, path0 = (tmp_path / "seen.txt").read_text().split(" ", 1)
    assert value == "42"
    assert os.path.realpath(path0) == os.path.realpath(sub)


def test_exit_code_of_the_target_is_kept(tmp_path: Path) -> None:
    write(tmp_path / "seven.py", HOT_SCRIPT + "import sys\nsys.exit(7)\n")
    proc = spprof("run", "-o", "out.collapsed", "seven.py", cwd=tmp_path)
    assert proc.returncode == 7, proc.stderr
    assert collapsed_share((tmp_path / "out.collapsed").read_text(), "hot_loop") > 0.5
    assert SUMMARY.match(stderr_lines(proc)[-1])


@pytest.mark.parametrize(
    ("code", "expected", "printed"),
    [("None", 0, None), ("'bye now'", 1, "bye now"), ("0", 0, None)],
)
def test_sys_exit_values_are_handled_like_python(
    tmp_path: Path, code: str, expected: int, printed: str | None
) -> None:
    write(tmp_path / "ex.py", f"import sys\nsys.exit({code})\n")
    proc = spprof("run", "-o", "out.collapsed", "ex.py", cwd=tmp_path)
    assert proc.returncode == expected, proc.stderr
    assert (tmp_path / "out.collapsed").exists()
    if printed is not None:
        assert stderr_lines(proc)[0] == printed


def test_exception_in_target_prints_traceback_and_exits_1(tmp_path: Path) -> None:
    write(
        tmp_path / "boom.py",
        HOT_SCRIPT + "def fail():\n    raise ValueError('boom')\nfail()\n",
    )
    proc = spprof("run", "-o", "out.collapsed", "boom.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback (most recent call last):" in proc.stderr
    assert "ValueError: boom" in proc.stderr
    assert ", in fail\n    raise ValueError('boom')" in proc.stderr
    # the traceback starts in the target, as under python itself
    assert "runpy" not in proc.stderr and "spprof" not in proc.stderr.split("ValueError")[0]
    assert collapsed_share((tmp_path / "out.collapsed").read_text(), "hot_loop") > 0.5
    assert SUMMARY.match(stderr_lines(proc)[-1])


def test_module_target(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    write(pkg / "__init__.py", "")
    write(pkg / "work.py", HOT_SCRIPT)
    record = tmp_path / "argv.json"
    proc = spprof(
        "run", "-o", "out.json", "-m", "pkg.work", "--record", str(record), "-o", "y",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(record.read_text())
    assert seen["argv"] == [str(pkg / "work.py"), "--record", str(record), "-o", "y"]
    assert seen["name"] == "__main__"
    assert os.path.realpath(seen["path0"]) == os.path.realpath(tmp_path)
    doc = json.loads((tmp_path / "out.json").read_text())
    assert speedscope_share(doc, "hot_loop") > 0.5


def test_package_with_main_module(tmp_path: Path) -> None:
    pkg = tmp_path / "app"
    pkg.mkdir()
    write(pkg / "__init__.py", "")
    write(pkg / "__main__.py", HOT_SCRIPT)
    proc = spprof("run", "-o", "out.collapsed", "-m", "app", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert collapsed_share((tmp_path / "out.collapsed").read_text(), "hot_loop") > 0.5


def test_sigint_exits_130_and_keeps_the_profile(tmp_path: Path) -> None:
    write(
        tmp_path / "busy.py",
        "import sys\n"
        "def hot_loop():\n"
        "    open(sys.argv[1], 'w').close()\n"
        "    while True:\n"
        "        pass\n"
        "hot_loop()\n",
    )
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spprof", "run", "-o", "out.collapsed", "busy.py", str(ready)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **child_kwargs(),
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "target never became ready"
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    text = (tmp_path / "out.collapsed").read_text()
    assert collapsed_share(text, "hot_loop") > 0.5
    assert SUMMARY.match(err.strip().splitlines()[-1])


# A target that burns CPU in hot_loop, says it is ready (the file named by
# its first argument) once it has, and then loops until a signal ends it.
LOOPING_SCRIPT = """\
import sys, time
def hot_loop():
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
    open(sys.argv[1], "w").close()
    while True:
        pass
{setup}
hot_loop()
"""


def start_and_wait_ready(tmp_path: Path, script: str, *, preexec_fn=None) -> subprocess.Popen:
    write(tmp_path / "loop.py", script)
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spprof", "run", "-o", "out.collapsed", "loop.py", str(ready)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **child_kwargs(preexec_fn=preexec_fn),
    )
    deadline = time.monotonic() + TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"target never became ready (exit {proc.returncode}):\n{err}")
        time.sleep(0.02)
    return proc


def finish(proc: subprocess.Popen, sig: int) -> str:
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_exit_128_plus_signal_and_keep_the_profile(
    tmp_path: Path, sig: int, expected: int
) -> None:
    proc = start_and_wait_ready(tmp_path, LOOPING_SCRIPT.format(setup=""))
    err = finish(proc, sig)
    assert proc.returncode == expected, err
    assert "Traceback" not in err
    text = (tmp_path / "out.collapsed").read_text()
    assert collapsed_share(text, "hot_loop") > 0.5
    assert SUMMARY.match(err.strip().splitlines()[-1]), err


def test_sighup_ignored_at_start_stays_ignored(tmp_path: Path) -> None:
    # as under nohup: SIGHUP does nothing, SIGTERM still ends the run
    proc = start_and_wait_ready(
        tmp_path,
        LOOPING_SCRIPT.format(setup=""),
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    proc.send_signal(signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)
    err = finish(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert collapsed_share((tmp_path / "out.collapsed").read_text(), "hot_loop") > 0.5


def test_sigterm_handler_of_the_target_gets_the_signal(tmp_path: Path) -> None:
    setup = (
        "import signal\n"
        "def on_term(signum, frame):\n"
        "    open('handled', 'w').write(str(signum))\n"
        "    sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
    )
    proc = start_and_wait_ready(tmp_path, LOOPING_SCRIPT.format(setup=setup))
    err = finish(proc, signal.SIGTERM)
    assert (tmp_path / "handled").read_text() == str(int(signal.SIGTERM))
    assert proc.returncode == 7, err
    assert collapsed_share((tmp_path / "out.collapsed").read_text(), "hot_loop") > 0.5


@pytest.mark.parametrize(("child_end", "child_status"), [("", 0), ("    sys.exit(3)\n", 3)])
def test_forked_child_ends_as_without_spprof(
    tmp_path: Path, child_end: str, child_status: int
) -> None:
    write(
        tmp_path / "forks.py",
        "import os, sys, time\n"
        "def hot_loop():\n"
        "    end = time.thread_time() + 0.3\n"
        "    while time.thread_time() < end:\n"
        "        pass\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('child done', flush=True)\n"
        f"{child_end}"
        "else:\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "    open('child-status', 'w').write(str(os.waitstatus_to_exitcode(status)))\n"
        "    hot_loop()\n",
    )
    proc = spprof("run", "-o", "out.collapsed", "forks.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "child-status").read_text() == str(child_status), proc.stderr
    assert "child done" in proc.stdout
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    # only the parent wrote a profile and a summary
    summaries = [line for line in stderr_lines(proc) if line.startswith("spprof: ")]
    assert len(summaries) == 1 and SUMMARY.match(summaries[0]), proc.stderr
    assert collapsed_share((tmp_path / "out.collapsed").read_text(), "hot_loop") > 0.5


USES_THE_API = """\
import json, sys, time
import spprof

def burn(cpu_s):
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass

def outer_work():
    burn(0.2)

def inner_work():
    burn(0.2)

def describe(prof):
    names = {f.function_name for s in prof.samples for f in s.frames}
    roots = {s.frames[0].function_name for s in prof.samples
             if s.thread_name == "MainThread" and s.frames}
    return {"names": sorted(names), "roots": sorted(roots),
            "cpu_ms": prof.total_cpu_ms, "interval": prof.interval_ms}

report = {"active_at_start": spprof.is_active()}
outer_work()
spprof.start(interval_ms=5)
report["active_inside"] = spprof.is_active()
inner_work()
report["start_stop"] = describe(spprof.stop())
with spprof.Profiler(interval_ms=5) as p:
    inner_work()
report["profiler"] = describe(p.profile)

@spprof.profile(interval_ms=5)
def decorated():
    inner_work()

decorated()
report["decorator"] = describe(decorated.last_profile)
try:
    spprof.stop()
except RuntimeError as exc:
    report["stop_error"] = str(exc)
outer_work()
json.dump(report, open(sys.argv[1], "w"))
sys.exit(5)
"""


def speedscope_cpu_ns(doc: dict, function: str) -> int:
    frames = doc["shared"]["frames"]
    wanted = {i for i, f in enumerate(frames) if f["name"] == function}
    return sum(
        w
        for prof in doc["profiles"]
        for stack, w in zip(prof["samples"], prof["weights"])
        if wanted.intersection(stack)
    )


def test_target_using_the_api_gets_its_own_sessions_inside_the_run(tmp_path: Path) -> None:
    write(tmp_path / "app.py", USES_THE_API)
    proc = spprof("run", "-o", "out.json", "app.py", "report.json", cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    # the program sees only its own sessions
    assert report["active_at_start"] is False and report["active_inside"] is True
    assert "not running" in report["stop_error"]
    for key in ("start_stop", "profiler", "decorator"):
        inner = report[key]
        assert "inner_work" in inner["names"] and "outer_work" not in inner["names"], inner
        assert inner["roots"] == ["<module> app"], inner  # as under python, no spprof frames
        assert inner["interval"] == 5 and 150 <= inner["cpu_ms"] <= 400, inner
    # spprof's own profile covers everything, the program's sessions included
    doc = json.loads((tmp_path / "out.json").read_text())
    inner_ns, outer_ns = speedscope_cpu_ns(doc, "inner_work"), speedscope_cpu_ns(doc, "outer_work")
    assert 0.45e9 <= inner_ns <= 0.9e9, (inner_ns, outer_ns)
    assert 0.3e9 <= outer_ns <= 0.6e9, (inner_ns, outer_ns)
    assert SUMMARY.match(stderr_lines(proc)[-1])


def test_target_session_left_running_is_saved_at_exit_as_without_spprof(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        "import time, spprof\n"
        "def inner_work():\n"
        "    end = time.thread_time() + 0.3\n"
        "    while time.thread_time() < end:\n"
        "        pass\n"
        "spprof.start(interval_ms=5, output_path='own.speedscope.json')\n"
        "inner_work()\n",
    )
    proc = spprof("run", "-o", "out.json", "app.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "could not" not in proc.stderr, proc.stderr
    ours = json.loads((tmp_path / "out.json").read_text())
    assert speedscope_cpu_ns(ours, "inner_work") >= 0.2e9
    own = json.loads((tmp_path / "own.speedscope.json").read_text())
    assert speedscope_cpu_ns(own, "inner_work") >= 0.2e9
    names = [f["name"] for f in own["shared"]["frames"]]
    stacks = [[names[i] for i in s] for p in own["profiles"] for s in p["samples"]]
    # the program's code starts at its <module>, as under python
    assert {s[0] for s in stacks if "inner_work" in s} == {"<module> app"}, stacks
    # spprof run's writing of its own profile is not in the program's
    assert not any("_write" in s or "render" in s for s in stacks), stacks


# -- options --------------------------------------------------------------------------


def test_rate_sets_the_interval(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "--rate", "250", "-o", "out.json", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    weights = [w for p in doc["profiles"] for w in p["weights"]]
    assert weights and min(weights) == 4_000_000
    assert all(w % 4_000_000 == 0 for w in weights)


def test_interval_option(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-i", "5", "-o", "out.json", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    weights = [w for p in doc["profiles"] for w in p["weights"]]
    assert weights and min(weights) == 5_000_000


def test_format_inferred_from_collapsed_extension(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "p.collapsed", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "p.collapsed").read_text().splitlines()
    assert lines and all(re.fullmatch(r".+ \d+", line) for line in lines)


def test_format_inferred_from_json_extension(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "p.json", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["$schema"].startswith("https://www.speedscope.app/")


@pytest.mark.skipif("pprof" not in formats(), reason="pprof writer not available")
def test_format_inferred_from_pb_gz_extension(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "p.pb.gz", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = (tmp_path / "p.pb.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert b"hot_loop" in gzip.decompress(data)


def test_explicit_format_wins_over_extension(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-f", "collapsed", "-o", "p.json", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert collapsed_share((tmp_path / "p.json").read_text(), "hot_loop") > 0.5


@pytest.mark.skipif("html" not in formats(), reason="html writer not available")
def test_default_output_is_html_named_after_the_script(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    made = list(tmp_path.glob("spprof-hot-*.html"))
    assert len(made) == 1
    assert re.fullmatch(r"spprof-hot-\d{8}-\d{6}\.html", made[0].name)
    assert "hot_loop" in made[0].read_text()
    match = SUMMARY.match(stderr_lines(proc)[-1])
    assert match and match["path"] == made[0].name


def test_threads_get_separate_tracks_by_default(tmp_path: Path) -> None:
    write(tmp_path / "threads.py", THREADS_SCRIPT)
    proc = spprof("run", "-o", "out.json", "threads.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert len(doc["profiles"]) == 3
    assert re.search(r", 3 threads, \w+ -> out\.json$", stderr_lines(proc)[-1])


def test_no_threads_merges_into_one_track(tmp_path: Path) -> None:
    write(tmp_path / "threads.py", THREADS_SCRIPT)
    proc = spprof("run", "--no-threads", "-o", "out.json", "threads.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out.json").read_text())
    assert len(doc["profiles"]) == 1
    assert speedscope_share(doc, "hot_loop") > 0.5


def test_summary_line(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "out.collapsed", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    assert match["path"] == "out.collapsed"
    seconds = float(lines[0].split()[1])
    samples = int(lines[0].split()[3].replace(",", ""))
    assert seconds >= 0.5
    assert samples >= 20  # ~50 expected for 0.5 s at 100 Hz
    assert ", 1 thread, " in lines[0]
    assert match["backend"] == spprof_backend_here()


def test_coverage_lines_before_the_summary(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "out.collapsed", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, proc.stderr
    m = re.fullmatch(r"spprof: profiled (\S+) (m?s) of (\S+) (m?s) process CPU \((\d+)%\)", lines[0])
    assert m, lines[0]
    # a single-threaded pure-Python target: nearly all of the CPU is in the samples
    assert int(m[5]) >= 90, lines[0]
    assert SUMMARY.match(lines[1]), lines[1]


def test_quiet_prints_nothing(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "--quiet", "-o", "out.collapsed", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (tmp_path / "out.collapsed").exists()


@pytest.mark.skipif("text" not in formats(), reason="text writer not available")
def test_text_report_to_stdout(tmp_path: Path, hot: Path) -> None:
    proc = spprof("run", "-o", "-", "hot.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hot_loop" in proc.stdout
    assert stderr_lines(proc)[-1].endswith("-> <stdout>")


# -- bad input: one line, exit 2, target not run ------------------------------------------

QUICK = "import sys\nopen('ran.marker', 'w').close()\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--bogus", "quick.py"], "unrecognized arguments: --bogus"),
        (["run"], "missing script or module"),
        (["run", "-q"], "missing script or module"),
        ([], "missing command"),
        (["frobnicate"], "invalid choice"),
        (["run", "missing.py"], "script not found: missing.py"),
        (["run", "-i", "0", "quick.py"], "bad interval"),
        (["run", "-i", "2000", "quick.py"], "bad interval"),
        (["run", "-i", "abc", "quick.py"], "bad interval"),
        (["run", "-r", "0", "quick.py"], "bad rate"),
        (["run", "-r", "20000", "quick.py"], "bad rate"),
        (["run", "-i", "0.05", "quick.py"], "bad interval: '0.05' (give milliseconds from 0.1 to 1000"),
        (["run", "-i", "0.5", "--mode", "wall", "quick.py"], "below 1 ms are for --mode cpu only"),
        (["run", "--backend", "fast", "quick.py"], "--backend must be auto, perf_event or timer_create"),
        (["run", "-r", "fast", "quick.py"], "bad rate"),
        (["run", "-i", "5", "-r", "100", "quick.py"], "not both"),
        (["run", "-f", "xml", "quick.py"], "unknown format: 'xml'"),
        (["run", "-o", "no/such/dir/out.json", "quick.py"], "output directory does not exist"),
        (["run", "-o", ".", "quick.py"], "output path is a directory"),
        (["run", "-o", "/proc/self/out.json", "quick.py"], "cannot write to output directory"),
        (["run", "--memory-limit", "0", "quick.py"], "bad memory limit"),
        (["run", "--memory-limit", "1e30", "quick.py"], "bad memory limit"),
        (["run", "-o"], "expected one argument"),
        (["run", "-m", "no_such_module_xyz"], "module not found: no_such_module_xyz"),
        (["run", "-m", "json.no_such_sub"], "module not found: json.no_such_sub"),
        (["run", "-m", "emptypkg"], "package without a __main__"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    write(tmp_path / "quick.py", QUICK)
    (tmp_path / "emptypkg").mkdir()
    write(tmp_path / "emptypkg" / "__init__.py", "")
    proc = spprof(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("spprof: error: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ran.marker").exists()
    assert not list(tmp_path.glob("spprof-*"))


def test_help_exits_0(tmp_path: Path) -> None:
    proc = spprof("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "-m module" in proc.stdout and "--no-threads" in proc.stdout


# -- output that becomes unwritable while the target runs -------------------------------

# The output path is checked before the target starts, so make it unwritable
# from inside the target: it creates a directory where the profile should go.
CLOBBER = HOT_SCRIPT.replace("cold()\n", "cold()\nimport os\nos.mkdir(sys.argv[1])\n", 1)


@pytest.mark.parametrize(("tail", "expected_code"), [("", 2), ("sys.exit(7)\n", 7)])
def test_unwritable_output_falls_back_to_temp_file(
    tmp_path: Path, tail: str, expected_code: int
) -> None:
    write(tmp_path / "clobber.py", CLOBBER + tail)
    proc = spprof("run", "-o", "out.collapsed", "clobber.py", "out.collapsed", cwd=tmp_path)
    assert proc.returncode == expected_code, proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    match = re.fullmatch(
        r"spprof: error: could not write out\.collapsed: .+; profile saved to (.+) instead",
        lines[0],
    )
    assert match, lines[0]
    fallback = Path(match[1])
    try:
        assert fallback.is_absolute() and fallback.exists()
        assert fallback.name.endswith(".collapsed")
        assert collapsed_share(fallback.read_text(), "hot_loop") > 0.5
    finally:
        fallback.unlink(missing_ok=True)
    assert (tmp_path / "out.collapsed").is_dir()


def test_cpu_after_the_last_signals_is_named_in_the_coverage_lines() -> None:
    """On a busy machine Linux checks CPU-time timers late: what the threads
    used after their last signal (stats undelivered_weight) is named, not
    silently missing; one interval on its way at stop is not worth a line."""
    from types import SimpleNamespace

    from spprof._coverage import coverage_lines

    def lines(undelivered: int) -> list[str]:
        raw = {"undelivered_weight": undelivered, "interval_ns": 1_000_000}
        profile = SimpleNamespace(process_cpu_ms=500.0, total_cpu_ms=455.0, children_cpu_ms=0.0,
                                  threads_without_samples=[], stats=SimpleNamespace(raw=raw))
        return coverage_lines(profile)

    assert lines(45)[1] == ("45.0 ms of CPU used after the threads' last samples is not in the profile "
                            "(their timer signals had not come when they ended or the session stopped)")
    assert len(lines(2)) == 1
