"""Build spprof's extension as on a machine without libunwind's headers.

    python tools/build_without_libunwind.py DIR

CMake is told to ignore the directory of libunwind.h, so the build takes
native_unwind_none.cpp; the extension lands in DIR (a Debug build: what is
checked is the build path, not speed). Prints CMake's configure output and
then the path of the extension. Safe to run twice at once on one DIR (the
second waits for the first, then finds the build up to date): `make test`
starts it in the background and tests/test_native_stack.py runs it again.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(directory: Path, python: str = sys.executable) -> tuple[int, str, Path | None]:
    """(exit status, CMake's output, the extension or None)."""
    bindir = Path(python).parent
    cmake = shutil.which("cmake", path=str(bindir)) or shutil.which("cmake")
    ninja = shutil.which("ninja", path=str(bindir)) or shutil.which("ninja")
    if cmake is None:
        return 2, "no cmake", None
    header = next((p for p in ("/usr/include/x86_64-linux-gnu", "/usr/include")
                   if Path(p, "libunwind.h").exists()), None)
    directory.mkdir(parents=True, exist_ok=True)
    configure = [cmake, "-S", str(ROOT), "-B", str(directory), "-DCMAKE_BUILD_TYPE=Debug",
                 f"-DPython_EXECUTABLE={python}"]
    if header:
        configure.append(f"-DCMAKE_IGNORE_PATH={header}")
    if ninja:
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(configure, capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            return done.returncode, output, None
        done = subprocess.run([cmake, "--build", str(directory)], capture_output=True, text=True,
                              timeout=540)
        output += done.stdout[-4000:] + done.stderr[-4000:]
        if done.returncode != 0:
            return done.returncode, output, None
    built = sorted(directory.glob("_native*.so"))
    return (0, output, built[0]) if built else (1, output + "\nno _native*.so built", None)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    status, output, extension = build(Path(sys.argv[1]))
    print(output)
    if extension is not None:
        print(f"extension: {extension}")
    return status


if __name__ == "__main__":
    sys.exit(main())
