"""Build spprof with AddressSanitizer + UBSan and run the stress and a few
sampling/threading tests against it.

    python tools/memcheck/run_asan.py [--cycles N] [--no-tests]

Everything lives under build/asan/ and leaves the .venv's editable install
alone: a venv of its own (build/asan/venv) gets a regular, sanitized build
of spprof (cmake -DSPPROF_SANITIZE=ON, build tree build/asan/cmake) and sees
the .venv's other packages (pytest, ...) through a .pth path entry. Only
spprof's code is instrumented; the interpreter runs with libasan preloaded
and PYTHONMALLOC=malloc, so every Python object is an ASan heap block too.

Fails (exit 1) on any AddressSanitizer or UBSan report, on any leak
(LeakSanitizer) whose allocation stack has a frame of spprof's native code,
and when the stress or a test fails. CPython's own leaks at exit are
reported by LeakSanitizer too and ignored here. Exit 2 when it cannot run
(no libasan, build failed).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _build import ROOT, injected_leak_verdict, prepare_venv, run  # noqa: E402

# Scenarios that drive the native code hardest, and whose assertions do not
# depend on speed (everything is slower under ASan). Left out:
# test_thread_exit_during_timer (asserts a share of samples that ASan's
# slower thread teardown changes).
TESTS = [
    "tests/test_threading.py::test_rapid_thread_churn",
    "tests/test_threading.py::test_concurrent_thread_registration",
    "tests/test_threading.py::test_thread_created_from_c",
    "tests/test_sampling.py::test_dynamically_created_code_is_never_misattributed",
    "tests/test_sampling.py::test_deep_recursion_is_truncated_not_crashing",
    # Walks that meet an eval loop's uninitialised C frame (3.11/3.12).
    "tests/test_sampling.py::test_signal_in_eval_loop_prologue_keeps_the_stack",
    "tests/test_sampling.py::test_generators_and_coroutines_are_on_the_stack",
    "tests/test_platform.py::test_fork_child_is_clean_and_parent_keeps_profiling",
    "tests/test_platform.py::test_pause_resume_basic",
    "tests/test_platform.py::test_user_sigprof_handler_is_not_clobbered",
    "tests/test_platform.py::test_memory_limit_is_honoured",
    "tests/test_api.py",
    # SIGPROF shared with the program: forwarding, default action, fork.
    "tests/test_sigprof_coexistence.py",
    # Threads from their first instruction (perf_event timers, start hook),
    # walks that land mid-relink. (The <gc> share test sizes its workload
    # for normal speed: under ASan it makes too few collections to judge.)
    "tests/test_truth.py::test_short_threads_other_creation_paths",
    "tests/test_truth.py::test_thread_created_from_c_is_sampled_once_found",
    "tests/test_sampling.py::test_many_tasks_with_async_generators_have_whole_stacks",
    # Wall mode: the reader's /proc files while the program closes and
    # reopens descriptors; wall samples through every output. (Its
    # thread churn, fork and pause run in the stress: the tests of those
    # assert how much real time is charged, which ASan's slower threads
    # and forks change.)
    "tests/test_wall_mode.py::test_wall_mode_never_touches_the_programs_descriptors",
    "tests/test_wall_mode.py::test_wall_mode_outputs_say_what_they_measure",
]

# Exit status the sanitizers use (ASan error, or leaks found at exit), so it
# can be told apart from the workload's own failures.
SANITIZER_EXIT = 66


def libasan_path() -> str | None:
    """gcc's libasan, or None. gcc prints the bare name back when it has
    no such library."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    try:
        out = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out if out and os.path.isabs(out) and os.path.exists(out) else None


def sanitizer_env(libasan: str, logs: Path, slow_unwind: bool, exit_code: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONFAULTHANDLER", None)
    env.pop("PYTHONPATH", None)
    env["LD_PRELOAD"] = libasan
    env["PYTHONMALLOC"] = "malloc"  # Python objects become ASan heap blocks
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["SPPROF_TEST_CHILD_ENV"] = "PYTHONMALLOC,PYTHONDONTWRITEBYTECODE"  # tests/conftest.py
    env["ASAN_OPTIONS"] = ":".join([
        "detect_leaks=1",
        # libpython has no frame pointers: only the slow unwinder gets past
        # it to the spprof frame that called into the C API. It costs a
        # lock (dl_iterate_phdr) per malloc, which thread-heavy tests turn
        # into minutes, so the tests run with the fast one.
        f"fast_unwind_on_malloc={0 if slow_unwind else 1}",
        "malloc_context_size=40",
        "halt_on_error=1",
        f"exitcode={exit_code}",
        # faulthandler must not take SIGSEGV away from ASan's report.
        "allow_user_segv_handler=0",
        f"log_path={logs}/asan",
    ])
    env["UBSAN_OPTIONS"] = ":".join([
        "halt_on_error=1", "print_stacktrace=1", "report_error_type=1",
        f"exitcode={exit_code}", f"log_path={logs}/ubsan",
    ])
    return env


# -- reading the sanitizer logs ---------------------------------------------------

FRAME_RE = re.compile(r"^\s+#\d+ 0x[0-9a-f]+ ")


def spprof_frame(line: str) -> bool:
    return bool(FRAME_RE.match(line)) and (
        "/src/native/" in line or " spprof::" in line or "/_native." in line
        or "(anonymous namespace)::native_" in line)


def split_reports(text: str) -> list[tuple[str, str]]:
    """(kind, text) for each report in one log file: kind is 'leak' for one
    LeakSanitizer leak block, 'asan' or 'ubsan' for an error."""
    reports: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^(Direct|Indirect) leak of ", line):
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].startswith(("Direct", "Indirect")):
                j += 1
            reports.append(("leak", "\n".join(lines[i:j])))
            i = j
            continue
        if "ERROR: AddressSanitizer" in line or "ERROR: UndefinedBehaviorSanitizer" in line \
                or "runtime error:" in line:
            kind = "asan" if "AddressSanitizer" in line else "ubsan"
            j = i + 1
            while j < len(lines) and not lines[j].startswith("SUMMARY:"):
                j += 1
            reports.append((kind, "\n".join(lines[i:j + 1])))
            i = j + 1
            continue
        i += 1
    return reports


def judge_logs(logs: Path, phase: str, full_stacks: bool) -> tuple[list[str], list[str]]:
    summary: list[str] = []
    failures: list[str] = []
    leaks = ours_leaks = asan = ubsan = 0
    # UBSan (gcc's separate libubsan) ignores log_path and reports on
    # stderr, so the phase's captured output is read as well.
    files = sorted(p for p in logs.iterdir() if p.name.startswith(("asan.", "ubsan.", "output")))
    for path in files:
        for kind, text in split_reports(path.read_text(errors="replace")):
            ours = any(spprof_frame(ln) for ln in text.splitlines())
            if kind == "leak":
                leaks += 1
                if ours:
                    ours_leaks += 1
                    failures.append(f"[{path.name}] leak with an spprof frame:\n{text}")
            else:
                if kind == "asan":
                    asan += 1
                else:
                    ubsan += 1
                where = "in spprof's code" if ours else "no spprof frame"
                failures.append(f"[{path.name}] {kind} error ({where}):\n{text}")
    others = "CPython's own" if full_stacks else "no spprof frame (fast unwinder)"
    n_logs = sum(1 for f in files if not f.name.startswith("output"))
    summary.append(f"{phase}: {n_logs} sanitizer log(s); AddressSanitizer errors: {asan}; "
                   f"UBSan errors: {ubsan}; LeakSanitizer leak blocks: {leaks}, "
                   f"{ours_leaks} with spprof frames ({leaks - ours_leaks} {others}, ignored)")
    return summary, failures


def junit_counts(path: Path) -> dict[str, int] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=int, default=200, help="stress start/stop cycles (default 200)")
    p.add_argument("--no-tests", action="store_true", help="only the stress, not the test scenarios")
    p.add_argument("--build-only", action="store_true",
                   help="only build the sanitized copy (make test does it ahead, in the background)")
    p.add_argument("--dir", type=Path, default=None,
                   help="venv, build tree and logs (default build/asan; logs of "
                        "--inject-leak in build/asan/logs-leak)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--inject-leak", action="store_true",
                   help="self-check: run the stress with spprof's self-test leak (48 bytes "
                        "after every stop()) and succeed only if that leak is reported as "
                        "spprof's (implies --no-tests)")
    args = p.parse_args()
    if args.dir is None:
        args.dir = ROOT / "build" / "asan"
    if args.inject_leak:
        args.no_tests = True

    libasan = libasan_path()
    if libasan is None:
        print("asan: gcc's libasan is not available (gcc -print-file-name=libasan.so)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    args.dir.mkdir(parents=True, exist_ok=True)
    python = prepare_venv(args.dir, sanitize=True, source=ROOT, tag="asan")
    if args.build_only:
        return 0
    logs = args.dir / ("logs-leak" if args.inject_leak else "logs")
    shutil.rmtree(logs, ignore_errors=True)
    (logs / "stress").mkdir(parents=True)
    (logs / "tests").mkdir()

    failures: list[str] = []
    summary: list[str] = []

    # The heap (tracemalloc) check is for runs without a tool: tracemalloc's
    # own bookkeeping shows up as leaks under LeakSanitizer.
    # The stress is the leak check that counts: full allocation stacks. It
    # runs alongside the test scenarios (each mostly one core), each phase
    # with its own logs.
    t0 = time.monotonic()
    env = sanitizer_env(libasan, logs / "stress", slow_unwind=True, exit_code=SANITIZER_EXIT)
    stress = subprocess.Popen(
        [str(python), str(HERE / "stress.py"), "--cycles", str(args.cycles), "--quiet",
         "--no-heap-check", *(["--inject-leak"] if args.inject_leak else [])],
        env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stress_out: list[str] = []
    reader = threading.Thread(target=lambda: stress_out.append(stress.stdout.read()), daemon=True)
    reader.start()

    if not args.no_tests:
        t1 = time.monotonic()
        junit = logs / "junit.xml"
        # Exit status 0 for sanitizer findings here: a leak report at exit
        # must not fail a scenario (run_scenario checks the status); the
        # logs are judged below, whatever the tests say.
        env = sanitizer_env(libasan, logs / "tests", slow_unwind=False, exit_code=0)
        proc = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={junit}", *TESTS], env=env, cwd=ROOT, timeout=args.timeout)
        (logs / "tests" / "output.txt").write_text(proc.stdout)
        counts = junit_counts(junit)
        if counts is None or counts["tests"] == 0:
            failures.append(f"the tests did not run (exit {proc.returncode}):\n{proc.stdout[-6000:]}")
            summary.append("tests: did not run")
        else:
            passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
            summary.append(f"tests: {passed} passed, {counts['skipped']} skipped, "
                           f"{counts['failures']} failed, {counts['errors']} errors "
                           f"({time.monotonic() - t1:.0f}s under ASan)")
            if counts["failures"] or counts["errors"]:
                failures.append(f"tests failed under ASan:\n{proc.stdout[-8000:]}")

    try:
        returncode = stress.wait(timeout=max(1.0, args.timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        stress.kill()
        returncode = stress.wait()
        failures.append(f"the stress did not finish within {args.timeout:.0f}s")
    reader.join()
    stress_text = stress_out[0] if stress_out else ""
    (logs / "stress" / "output.txt").write_text(stress_text)
    ok_line = next((ln for ln in stress_text.splitlines() if ln.startswith("stress: OK")), None)
    summary.insert(0, f"{ok_line or 'stress: FAILED'} ({time.monotonic() - t0:.0f}s under ASan)")
    if ok_line is None or returncode not in (0, SANITIZER_EXIT):
        failures.append(f"stress exited with {returncode}:\n"
                        f"{stress_text[-6000:] or '(no output: see the sanitizer report below)'}")

    for phase, full in (("stress", True), ("tests", False))[: 1 if args.no_tests else 2]:
        log_summary, log_failures = judge_logs(logs / phase, phase, full)
        summary += log_summary
        failures += log_failures
    for line in summary:
        print(f"asan: {line}")
    print(f"asan: total {time.monotonic() - started:.0f}s")
    if args.inject_leak:
        return injected_leak_verdict("asan", failures, "leak with an spprof frame", args.cycles)
    if failures:
        print(f"asan: FAILED: {len(failures)} problem(s); logs in {logs}", file=sys.stderr)
        for f in failures:
            print("\n" + f[:8000], file=sys.stderr)
        return 1
    print("asan: PASSED: no ASan/UBSan error, no leak from spprof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
