"""Run tools/memcheck/stress.py under valgrind memcheck and judge the result.

Fails (exit 1) on
  - any memory error with a frame of spprof's native code in one of its
    stacks (where it happened, where the block was allocated or freed);
  - any invalid read/write/free, jump, overlap or mismatched free anywhere:
    spprof corrupting memory often shows up in CPython's own code;
  - any definitely or indirectly lost block allocated under a frame of
    spprof's native code;
  - the stress workload itself failing.
Ignored, but counted in the summary: CPython's own leaks, and uninitialised
value reports without an spprof frame above the first frame of CPython's
eval loop (CPython 3.11's long objects read one uninitialised digit for
zero, see python.supp; Python code runs under spprof's thread bootstrap).
Exit 2 when the check could not run (no valgrind, no XML).

    python tools/memcheck/run_memcheck.py [--cycles N] [--out DIR] [-- stress args]

Needs valgrind; spprof must be importable by the interpreter running this
(the .venv's editable install for `make memcheck`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _build import ROOT, injected_leak_verdict  # noqa: E402

LEAK_FAIL_KINDS = {"Leak_DefinitelyLost", "Leak_IndirectlyLost"}
# Uninitialised-value reports flow from where the value was created to
# wherever it is used, so their stacks are often far from the cause; those
# without an spprof frame are CPython's (see python.supp). Every other kind
# is a real access to memory that is not ours to touch.
SOFT_KINDS = {"UninitValue", "UninitCondition", "SyscallParam"}


def is_spprof_frame(frame: ET.Element) -> bool:
    obj = frame.findtext("obj") or ""
    name = os.path.basename(obj)
    if name.startswith("_native") and name.endswith(".so"):
        return True
    directory = (frame.findtext("dir") or "").rstrip("/")
    if directory.endswith("/src/native"):
        return True
    return (frame.findtext("fn") or "").startswith("spprof::")


def frame_text(frame: ET.Element) -> str:
    fn = frame.findtext("fn") or frame.findtext("ip") or "?"
    where = frame.findtext("file")
    if where:
        where = f"{where}:{frame.findtext('line') or '?'}"
    else:
        where = os.path.basename(frame.findtext("obj") or "?")
    mark = "*" if is_spprof_frame(frame) else " "
    return f"  {mark} {fn} ({where})"


@dataclass
class Report:
    path: Path
    pid: str
    ppid: str
    errors: list[ET.Element] = field(default_factory=list)
    error_counts: dict[str, int] = field(default_factory=dict)  # unique -> occurrences
    suppressed: list[tuple[int, str]] = field(default_factory=list)
    complete: bool = True


def load(path: Path) -> Report | None:
    text = path.read_text(errors="replace")
    if "<error" not in text and "<status>" not in text:
        # A fork child that exec'd a program valgrind does not trace leaves
        # just the preamble behind.
        return None
    complete = "</valgrindoutput>" in text
    if not complete:
        text += "\n</valgrindoutput>\n"
    root = ET.fromstring(text)
    rep = Report(path, root.findtext("pid") or "?", root.findtext("ppid") or "?", complete=complete)
    rep.errors = list(root.iter("error"))
    for pair in root.iterfind("errorcounts/pair"):
        rep.error_counts[pair.findtext("unique") or ""] = int(pair.findtext("count") or 0)
    for pair in root.iterfind("suppcounts/pair"):
        rep.suppressed.append((int(pair.findtext("count") or 0), pair.findtext("name") or ""))
    return rep


# CPython's bytecode interpreter: frames below it in a stack called the
# Python code that runs there.
EVAL_LOOP_FUNCTIONS = {"_PyEval_EvalFrameDefault"}


def libunwind_probe(err: ET.Element) -> bool:
    """libunwind's own check of an address (where a DWARF step fails it
    writes one byte of the address into its pipe: an unreadable or
    uninitialised one is the answer it looks for, not an error)."""
    if (err.findtext("kind") or "") != "SyscallParam" or "write(buf)" not in (err.findtext("what") or ""):
        return False
    stack = err.find("stack")
    frames = list(stack.iter("frame")) if stack is not None else []
    objs = [os.path.basename(f.findtext("obj") or "") for f in frames[:6]]
    return any(o.startswith("libunwind.so") for o in objs[1:3])


def attributed(err: ET.Element) -> bool:
    if libunwind_probe(err):
        return False
    if (err.findtext("kind") or "") in SOFT_KINDS:
        # An uninitialised value used where the stack is: spprof's if one
        # of its frames is above the first eval-loop frame. Python code
        # that spprof's native code calls (its thread bootstrap runs every
        # thread's target) is the interpreter's: CPython 3.11's zero-digit
        # noise (python.supp) reported from a thread that spprof started,
        # say a fork child's only thread, is not spprof's.
        stack = err.find("stack")
        for frame in (stack.iter("frame") if stack is not None else ()):
            if is_spprof_frame(frame):
                return True
            if (frame.findtext("fn") or "") in EVAL_LOOP_FUNCTIONS:
                return False
        return False
    # Every stack of the report: for a use-after-free the stacks of the
    # free and of the allocation follow the access's own.
    return any(is_spprof_frame(f) for stack in err.iter("stack") for f in stack.iter("frame"))


def leak_size(err: ET.Element) -> tuple[int, int]:
    return (int(err.findtext("xwhat/leakedbytes") or 0), int(err.findtext("xwhat/leakedblocks") or 0))


def describe(err: ET.Element, rep: Report, max_frames: int = 30) -> str:
    what = err.findtext("what") or err.findtext("xwhat/text") or err.findtext("kind") or "?"
    lines = [f"[pid {rep.pid}] {err.findtext('kind')}: {what}"]
    for child in err:
        if child.tag == "stack":
            frames = list(child.iter("frame"))
            lines += [frame_text(f) for f in frames[:max_frames]]
            if len(frames) > max_frames:
                lines.append(f"    ... {len(frames) - max_frames} more frames")
        elif child.tag in ("auxwhat", "xauxwhat"):
            lines.append(f"  {child.findtext('text') if child.tag == 'xauxwhat' else child.text}")
    return "\n".join(lines)


def summarize(reports: list[Report]) -> tuple[list[str], list[str]]:
    """(summary lines, failure descriptions)."""
    lines, failures = [], []
    main_pid = min(reports, key=lambda r: int(r.pid) if r.pid.isdigit() else 0).pid
    for rep in reports:
        role = "stress" if rep.ppid not in {r.pid for r in reports} else "fork child"
        leaks = {"Leak_DefinitelyLost": [0, 0], "Leak_IndirectlyLost": [0, 0]}
        contexts = occurrences = 0
        ours_errors = ours_leaks = cpython_errors = cpython_leaks = probes = 0
        for err in rep.errors:
            kind = err.findtext("kind") or ""
            if kind.startswith("Leak_"):
                size, blocks = leak_size(err)
                if kind in leaks:
                    leaks[kind][0] += size
                    leaks[kind][1] += blocks
                if kind in LEAK_FAIL_KINDS:
                    contexts += 1
                    occurrences += 1
                if not attributed(err):
                    cpython_leaks += 1
                elif kind in LEAK_FAIL_KINDS:
                    ours_leaks += 1
                    failures.append(describe(err, rep))
                continue
            contexts += 1
            occurrences += rep.error_counts.get(err.findtext("unique") or "", 1)
            if attributed(err):
                ours_errors += 1
                failures.append(describe(err, rep))
            elif kind not in SOFT_KINDS:
                ours_errors += 1
                failures.append("(no spprof frame, but not CPython's known noise either)\n"
                                + describe(err, rep))
            elif libunwind_probe(err):
                probes += 1
            else:
                cpython_errors += 1
        supp_n = sum(c for c, _ in rep.suppressed)
        d, i = leaks["Leak_DefinitelyLost"], leaks["Leak_IndirectlyLost"]
        cut = "" if rep.complete else " (XML cut short: process killed?)"
        if role == "stress":
            lines.append(f"[pid {rep.pid}, stress]{cut}")
            lines.append(f"  valgrind ERROR SUMMARY: {occurrences} errors from {contexts} contexts "
                         f"(suppressed: {supp_n} from {len(rep.suppressed)})")
            lines.append(f"  valgrind LEAK SUMMARY: definitely lost: {d[0]:,} bytes in {d[1]:,} blocks; "
                         f"indirectly lost: {i[0]:,} bytes in {i[1]:,} blocks "
                         f"(possibly lost, still reachable: not listed)")
            lines.append(f"  attributed to spprof: {ours_errors} memory errors, {ours_leaks} "
                         f"definite/indirect leaks; ignored as CPython's: {cpython_errors} "
                         f"uninitialised-value reports, {cpython_leaks} leak records; as "
                         f"libunwind's address probes (native frames): {probes}")
        else:
            # A child's counters start from its parent's at fork time, so
            # only its own reports are shown, on one line.
            lines.append(f"[pid {rep.pid}, fork child]{cut} {contexts} error contexts; definitely "
                         f"lost {d[0]:,} B, indirectly lost {i[0]:,} B; attributed to spprof: "
                         f"{ours_errors} memory errors, {ours_leaks} leaks")
        if rep.pid == main_pid and not rep.complete:
            failures.append(f"[pid {rep.pid}] valgrind's XML output is incomplete")
    return lines, failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=int, default=1000,
                   help="start/stop cycles (default 1000: about 3 to 5 minutes under valgrind)")
    p.add_argument("--python", default=sys.executable, help="interpreter to run (default: this one)")
    p.add_argument("--out", type=Path, default=None,
                   help="where valgrind's XML goes (default build/memcheck, "
                        "build/memcheck-leak with --inject-leak)")
    p.add_argument("--inject-leak", action="store_true",
                   help="self-check: run the stress with spprof's self-test leak (48 bytes "
                        "after every stop()) and succeed only if valgrind reports that leak "
                        "as spprof's")
    p.add_argument("--timeout", type=float, default=900, help="seconds before giving up")
    p.add_argument("--gen-suppressions", action="store_true",
                   help="have valgrind print a suppression for every error (in the XML)")
    p.add_argument("stress_args", nargs="*", help="extra arguments for stress.py (after --)")
    args = p.parse_args()
    if args.out is None:
        args.out = ROOT / "build" / ("memcheck-leak" if args.inject_leak else "memcheck")

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("memcheck: valgrind is not installed (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("vg.*.xml"):
        old.unlink()

    env = dict(os.environ)
    # pymalloc hands out memory from its own arenas, so valgrind would see
    # neither Python objects' bounds nor their frees.
    env["PYTHONMALLOC"] = "malloc"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["SPPROF_TEST_CHILD_ENV"] = "PYTHONMALLOC,PYTHONDONTWRITEBYTECODE"  # tests/conftest.py
    env.pop("PYTHONFAULTHANDLER", None)
    cmd = [
        valgrind, "--tool=memcheck", "--xml=yes", f"--xml-file={args.out}/vg.%p.xml",
        # Possibly lost blocks are not listed: CPython leaves tens of
        # thousands at exit (interned strings, objects behind GC headers),
        # megabytes of XML in a fork child, and none of them decide anything.
        "--leak-check=full", "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect", "--num-callers=40",
        f"--suppressions={HERE / 'python.supp'}",
        # The fork scenario's child is checked too: its XML goes to its own
        # file thanks to %p.
        "--child-silent-after-fork=no",
        # Round-robin between threads: the stress's threads must interleave
        # with stop() as they would without valgrind.
        "--fair-sched=yes",
    ]
    if args.gen_suppressions:
        cmd.append("--gen-suppressions=all")
    # tracemalloc's heap check is left to runs without valgrind: its own
    # bookkeeping leaks under valgrind, from stacks that pass through
    # spprof's calls back into Python.
    # SIG_IGN as the starting disposition: see stress.py's run() for the
    # valgrind signal-delivery race it defuses.
    # Valgrind opens a fork child's XML file in the child, at a low
    # descriptor number: the stress must not count it as left open there.
    cmd += [args.python, str(HERE / "stress.py"), "--cycles", str(args.cycles), "--no-heap-check",
            "--sigprof-baseline", "ignore", "--tool-files", f"{args.out.resolve()}/",
            *(["--inject-leak"] if args.inject_leak else []), *args.stress_args]
    print(f"memcheck: {' '.join(cmd[cmd.index(args.python):])}", flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, timeout=args.timeout, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        print(f"memcheck: FAILED: no result after {args.timeout:.0f}s", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    output = proc.stdout.strip().splitlines()
    stress_line = next((ln for ln in reversed(output) if ln.startswith("stress:")), "(no output)")

    reports = []
    for path in sorted(args.out.glob("vg.*.xml")):
        try:
            rep = load(path)
        except ET.ParseError as exc:
            print(f"memcheck: cannot parse {path}: {exc}", file=sys.stderr)
            return 2
        if rep is not None:
            reports.append(rep)
    if not reports:
        print("\n".join(output[-40:]))
        print(f"memcheck: no valgrind XML output in {args.out}", file=sys.stderr)
        return 2

    lines, failures = summarize(reports)
    if proc.returncode != 0:
        failures.append(f"the stress workload exited with {proc.returncode}:\n" + "\n".join(output[-40:]))
    print(f"memcheck: valgrind run took {elapsed:.0f}s; {len(reports)} process(es) checked")
    print(f"memcheck: {stress_line}")
    for ln in lines:
        print(f"memcheck: {ln}")
    if args.inject_leak:
        return injected_leak_verdict("memcheck", failures, "Leak_DefinitelyLost", args.cycles)
    if failures:
        print(f"memcheck: FAILED: {len(failures)} problem(s) (frames marked * are spprof's; "
              f"XML in {args.out}):", file=sys.stderr)
        for f in failures:
            print("\n" + f, file=sys.stderr)
        return 1
    print("memcheck: PASSED: no memory error and no definite/indirect leak from spprof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
