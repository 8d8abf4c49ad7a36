"""Builds of spprof for the memory checks, kept apart from the .venv.

Each check gets a venv of its own under build/ with a regular (not
editable) install of spprof built from `source`; the .venv's other packages
(pytest, ...) are visible to it through a .pth path entry. With
--inject-leak, a checker runs the stress with spprof's self-test leak
(`_native._leak_for_checkers()`, 48 bytes after every stop()), to show it
finds what it is there to find.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def prepare_venv(work: Path, *, sanitize: bool, source: Path = ROOT, tag: str = "check") -> Path:
    """Create work/venv (once) and (re)install spprof from `source` into it,
    built in work/cmake. Returns the venv's interpreter. Holds work/.lock
    meanwhile: `make test` builds ahead in the background, and a test that
    needs the same build waits for it, then finds it up to date."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare_venv_locked(work, sanitize=sanitize, source=source, tag=tag)


def _prepare_venv_locked(work: Path, *, sanitize: bool, source: Path, tag: str) -> Path:
    venv = work / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        proc = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        if proc.returncode != 0:
            raise SystemExit(f"{tag}: cannot create {venv}:\n{proc.stdout}")
    purelib = Path(run([str(python), "-c",
                        "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # A plain path entry, not the .venv as a site dir: its .pth files (the
    # editable install's import hook among them) must not run here.
    (purelib / "zz_spprof_dev_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cmd = [
        sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
        "--upgrade", "--target", str(purelib),
        "-C", f"cmake.define.SPPROF_SANITIZE={'ON' if sanitize else 'OFF'}",
        "-C", "cmake.build-type=RelWithDebInfo",  # line numbers in reports
        "-C", f"build-dir={work / 'cmake'}",
        str(source),
    ]
    started = time.monotonic()
    proc = run(cmd, cwd=source)
    if proc.returncode != 0:
        print(proc.stdout[-6000:], file=sys.stderr)
        print(f"{tag}: building spprof from {source} failed", file=sys.stderr)
        raise SystemExit(2)
    so = next((purelib / "spprof").glob("_native*.so"), None)
    if so is None:
        print(f"{tag}: no native module was installed into {purelib}", file=sys.stderr)
        raise SystemExit(2)
    if sanitize and b"__asan_report_" not in so.read_bytes():
        print(f"{tag}: {so} is not instrumented with ASan", file=sys.stderr)
        raise SystemExit(2)
    kind = "sanitized" if sanitize else "plain"
    print(f"{tag}: {kind} build of {source} installed into {purelib} "
          f"({time.monotonic() - started:.0f}s)", flush=True)
    return python


def injected_leak_verdict(tag: str, failures: list[str], marker: str, cycles: int) -> int:
    """With --inject-leak a checker must fail in exactly the expected way: a
    problem report carrying `marker` (the checker's word for a leak of
    spprof's) whose stack shows the self-test leak. Exit status 0 when it
    does, 1 otherwise."""
    # By name where the build has symbols (ASan's RelWithDebInfo build), else
    # by its exact size: 48 bytes from each stop() but the last, in spprof's
    # module (the .venv's Release build has no symbol for it).
    size = f"{48 * (cycles - 1):,} bytes in {cycles - 1:,} blocks"
    found = [f for f in failures if marker in f and ("leak_for_checkers" in f or size in f)]
    if found:
        lines = found[0].splitlines()
        head = next((ln.strip() for ln in lines if "leak of" in ln or "definitely lost" in ln),
                    lines[0])
        print(f"{tag}: self-check PASSED: the self-test leak (_leak_for_checkers) was reported "
              f"and attributed to spprof: {head}")
        return 0
    print(f"{tag}: self-check FAILED: the injected leak was not reported as spprof's; "
          f"{len(failures)} other problem(s):", file=sys.stderr)
    for f in failures:
        print("\n" + f[:4000], file=sys.stderr)
    return 1
