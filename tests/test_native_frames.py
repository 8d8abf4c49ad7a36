"""Native frames in sampled profiles: start(native=True), spprof run --native.

A C library built here has a hot function (a static one, so only the
library's own symbol table names it) called from a Python function through
ctypes, with the GIL released; zlib and hashlib run the same way from
threads; a pthread of the library burns CPU without Python. Every scenario
runs in a child process (run_scenario): a crash fails one test.

Skipped where native unwinding is unavailable (no libunwind here).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

import spprof
from conftest import BURN_SRC, ROOT, build_shared_library, run_scenario

pytestmark = pytest.mark.skipif(not spprof.native_unwinding_available(),
                                reason="native unwinding is not available here")

C_SRC = r"""
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <time.h>
static int count_object(struct dl_phdr_info* info, size_t size, void* data) {
    (void)info; (void)size;
    ++*(long*)data;
    return 0;
}
long iterate_objects(double seconds) {
    long n = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double end = ts.tv_sec + ts.tv_nsec / 1e9 + seconds;
    for (;;) {
        for (int i = 0; i < 100; ++i) dl_iterate_phdr(count_object, &n);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ts.tv_sec + ts.tv_nsec / 1e9 >= end) return n;
    }
}
static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
__attribute__((noinline)) static unsigned long hot_kernel(double seconds) {
    volatile unsigned long x = 0;
    double end = thread_cpu() + seconds;
    while (thread_cpu() < end) {
        for (int i = 0; i < 1000; ++i) x += i;
    }
    return x;
}
__attribute__((noinline)) unsigned long burn_in_c(double seconds) { return hot_kernel(seconds) + 1; }
static void* worker(void* arg) { burn_in_c(*(double*)arg); return 0; }
static pthread_t t;
static double secs;
void start_c_thread(double seconds) { secs = seconds; pthread_create(&t, 0, worker, &secs); }
void join_c_thread(void) { pthread_join(t, 0); }
typedef long (*callback_t)(long);
__attribute__((noinline)) long call_back_n(callback_t cb, long n) {
    long s = 0;
    for (long i = 0; i < n; ++i) s += cb(i);
    return s;
}
"""


# The lines of hot_kernel in the C file (from its signature to its return).
_C_LINES = C_SRC.splitlines()
HOT_LINES = (next(i for i, x in enumerate(_C_LINES, 1) if "static unsigned long hot_kernel" in x),
             next(i for i, x in enumerate(_C_LINES, 1) if "return x;" in x))


@pytest.fixture(scope="module")
def hotlib(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_shared_library(tmp_path_factory, "libspprof_hot.so", C_SRC, "-O1", "-g", "-pthread")


PRELUDE = BURN_SRC + """
import ctypes, threading, time, spprof
lib = ctypes.CDLL(LIB)
lib.burn_in_c.argtypes = [ctypes.c_double]
lib.burn_in_c.restype = ctypes.c_ulong
lib.start_c_thread.argtypes = [ctypes.c_double]

def python_caller(seconds):
    return lib.burn_in_c(seconds)

def names(sample):
    return [f.function_name for f in sample.frames]

CALLBACK = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long)
lib.call_back_n.argtypes = [CALLBACK, ctypes.c_long]
"""


def test_a_c_function_called_from_python_is_the_leaf_under_its_caller(hotlib: str) -> None:
    """native=True: >= 90% of the samples of python_caller read
    python_caller -> ... -> burn_in_c -> hot_kernel (the leaf, or the clock
    it reads), root to leaf, with the C frames marked native and naming the
    library, hot_kernel at a line of its own in the library's C source (it
    is built with -g); without native=True the same samples stop at
    python_caller."""
    result = run_scenario(f"LIB = {hotlib!r}\nHOT_LINES = {HOT_LINES!r}\n" + PRELUDE + """
out = {}
for native in (True, False):
    spprof.start(interval_ms=1, native=native)
    python_caller(0.4)
    prof = spprof.stop()
    mine = [s for s in prof.samples if "python_caller" in names(s)]
    ok = 0
    other = []
    for s in mine:
        n = names(s)
        i = n.index("python_caller")
        tail = s.frames[i + 1:]
        t = [f.function_name for f in tail]
        # hot_kernel is the leaf, or calls the clock (libc, the vDSO)
        if (native and "hot_kernel" in t and t[t.index("hot_kernel") - 1] == "burn_in_c"
                and all(f.is_native for f in tail) and tail[t.index("hot_kernel")].library == LIB
                and tail[t.index("hot_kernel")].filename == LIB[:-3] + ".c"
                and HOT_LINES[0] <= tail[t.index("hot_kernel")].lineno <= HOT_LINES[1]):
            ok += 1
        elif native:
            other.append(t)
        if not native and not tail:
            ok += 1
    out[str(native)] = {"samples": len(mine), "ok": ok, "stats_native": prof.stats.raw["native"],
                        "native_samples": prof.stats.raw["native_samples"],
                        "example": [[f.function_name, f.filename, f.is_native] for f in mine[0].frames] if mine else None,
                        "other": other[:10]}
emit(out)
""")
    print(result)
    with_native, without = result["True"], result["False"]
    assert with_native["samples"] >= 100, with_native
    assert with_native["ok"] >= 0.9 * with_native["samples"], with_native
    assert with_native["stats_native"] is True and with_native["native_samples"] >= with_native["samples"] * 0.9
    assert without["samples"] >= 100 and without["ok"] == without["samples"], without
    assert without["stats_native"] is False and without["native_samples"] == 0


def test_c_code_between_python_runs_is_spliced_in(hotlib: str) -> None:
    """Python -> C -> Python: a C function of the library calls a Python
    callback (through ctypes) that burns CPU. With native=True >= 90% of
    the callback's samples read outer -> ... -> call_back_n -> ... ->
    py_callback, root to leaf: the C frames between the two Python runs are
    in place, native, and outer is the callback's only Python ancestor.
    A key function called by sorted() (the interpreter's own C code between
    the runs): the interpreter's frames are left out, the key function sits
    right under its caller, as without native frames."""
    result = run_scenario(f"LIB = {hotlib!r}\n" + PRELUDE + """
def py_callback(i):
    x = 0
    for k in range(3000):
        x += k
    return 1

def py_key(v):
    x = 0
    for k in range(300):
        x += k
    return -v

callback = CALLBACK(py_callback)

def outer():
    return lib.call_back_n(callback, 2500)

def sorter():
    return sorted(range(20000), key=py_key)

spprof.start(interval_ms=1, native=True)
outer()
sorter()
prof = spprof.stop()
cb = {"samples": 0, "ok": 0, "other": []}
key = {"samples": 0, "ok": 0, "other": []}
for s in prof.samples:
    n = names(s)
    if "py_callback" in n:
        cb["samples"] += 1
        i, j = n.index("outer"), n.index("py_callback")
        between = s.frames[i + 1:j]
        b = [f.function_name for f in between]
        python_above = [f.function_name for f in s.frames[:j] if not f.is_native]
        if ("call_back_n" in b and all(f.is_native for f in between)
                and between[b.index("call_back_n")].library == LIB
                and python_above[-1:] == ["outer"] and all(f.is_native for f in s.frames[j + 1:])):
            cb["ok"] += 1
        else:
            cb["other"].append(n)
    if "py_key" in n:
        key["samples"] += 1
        j = n.index("py_key")
        if n[j - 1] == "sorter" and all(f.is_native for f in s.frames[j + 1:]):
            key["ok"] += 1
        else:
            key["other"].append(n)
cb["other"] = cb["other"][:5]
key["other"] = key["other"][:5]
emit({"callback": cb, "key": key})
""")
    print(result)
    cb, key = result["callback"], result["key"]
    assert cb["samples"] >= 100, cb
    assert cb["ok"] >= 0.9 * cb["samples"], cb
    assert key["samples"] >= 50, key
    assert key["ok"] >= 0.9 * key["samples"], key


def test_zlib_and_hashlib_leaves_in_threads(hotlib: str) -> None:
    """zlib.compress and hashlib.sha256 in two threads (they release the
    GIL): the native leaf of their samples is in libz / libcrypto, under
    the Python function that called it."""
    result = run_scenario(f"LIB = {hotlib!r}\n" + PRELUDE + """
import hashlib, os, zlib
data = os.urandom(1 << 20) * 4

def zlib_work():
    end = time.thread_time() + 0.4
    while time.thread_time() < end:
        zlib.compress(data, 9)

def hashlib_work():
    end = time.thread_time() + 0.4
    while time.thread_time() < end:
        hashlib.sha256(data).digest()

spprof.start(interval_ms=1, native=True)
threads = [threading.Thread(target=zlib_work), threading.Thread(target=hashlib_work)]
for t in threads: t.start()
for t in threads: t.join()
prof = spprof.stop()
out = {}
for caller in ("zlib_work", "hashlib_work"):
    mine = [s for s in prof.samples if caller in names(s)]
    leaves = [s.frames[-1] for s in mine]
    out[caller] = {"samples": len(mine),
                   "native_leaf_objects": [os.path.basename(f.library) for f in leaves if f.is_native]}
emit(out)
""")
    zl, hl = result["zlib_work"], result["hashlib_work"]
    assert zl["samples"] >= 100 and hl["samples"] >= 100, result
    in_libz = sum(1 for o in zl["native_leaf_objects"] if o.startswith("libz."))
    in_crypto = sum(1 for o in hl["native_leaf_objects"] if o.startswith("libcrypto."))
    assert in_libz >= 0.8 * zl["samples"], (in_libz, zl["samples"], zl["native_leaf_objects"][:20])
    assert in_crypto >= 0.8 * hl["samples"], (in_crypto, hl["samples"], hl["native_leaf_objects"][:20])


def test_a_thread_without_python_shows_its_native_stack(hotlib: str) -> None:
    """A pthread of the library (no Python) burning 0.3 s: its samples
    (from the poll that finds it) are <native thread NAME> -> ... -> worker
    -> burn_in_c -> hot_kernel."""
    result = run_scenario(f"LIB = {hotlib!r}\n" + PRELUDE + """
spprof.start(interval_ms=1, native=True)
time.sleep(0.15)  # a poll finds the thread (<= 100 ms)
lib.start_c_thread(0.3)
deadline = time.monotonic() + 10
while spprof.stats().raw["native_threads"] < 1 and time.monotonic() < deadline:
    time.sleep(0.01)  # found by the next poll of the threads
lib.join_c_thread()
prof = spprof.stop()
mine = [s for s in prof.samples if names(s) and names(s)[0].startswith("<native thread")]
def chain(n):
    # hot_kernel is the leaf, or calls the clock (libc, the vDSO)
    i = n.index("hot_kernel") if "hot_kernel" in n else -1
    return i >= 2 and n[i - 2:i] == ["worker", "burn_in_c"]
good = [s for s in mine if chain(names(s))]
emit({"samples": len(mine), "good": len(good), "weight": sum(s.weight for s in mine), "firsts": sorted(set(names(s)[0] for s in prof.samples if names(s))),
      "example": names(mine[0]) if mine else None})
""")
    print(result)
    assert result["samples"] >= 30, result
    assert result["good"] >= 0.9 * result["samples"], result


def test_native_frames_in_the_outputs_and_the_command_line(hotlib: str, tmp_path) -> None:
    """spprof run --native: the collapsed stacks carry the C frames under
    the Python caller, marked [native]; so does the text report."""
    script = tmp_path / "t.py"
    script.write_text(f"LIB = {hotlib!r}\n" + PRELUDE.replace("import spprof", "import os") +
                      "\npython_caller(0.3)\n")
    out = tmp_path / "out.collapsed"
    import sys
    done = subprocess.run([sys.executable, "-m", "spprof", "run", "--native", "-i", "1", "-o", str(out),
                           str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    hot = [line for line in lines if "python_caller" in line and f";[native] hot_kernel ({hotlib})" in line]
    weight = sum(int(line.rsplit(" ", 1)[1]) for line in hot)
    total = sum(int(line.rsplit(" ", 1)[1]) for line in lines if "python_caller" in line)
    assert total >= 100 and weight >= 0.9 * total, (weight, total, lines[:5])
    # The text report marks them too: the location of a C function is its library.
    text = tmp_path / "out.txt"
    done = subprocess.run([sys.executable, "-m", "spprof", "run", "--native", "-i", "1", "-o", str(text),
                           str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line for line in text.read_text().splitlines() if " hot_kernel " in line]
    assert rows and all("[native]" in row and "libspprof_hot.c:" in row for row in rows), rows
    # pprof: a native function's locations are in a mapping of its library,
    # at its source line where the library has line tables; Python
    # functions' in the one [python] mapping.
    from spprof.writers.pprof import decode
    pb = tmp_path / "out.pb.gz"
    done = subprocess.run([sys.executable, "-m", "spprof", "run", "--native", "-i", "1", "-o", str(pb),
                           str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    msg = decode(pb.read_bytes())
    st = msg["string_table"]
    mappings = {m["id"]: st[m["filename"]] for m in msg["mapping"]}
    funcs = {f["id"]: st[f["name"]] for f in msg["function"]}
    where = {}
    for loc in msg["location"]:
        for ln in loc["line"]:
            where.setdefault(funcs[ln["function_id"]], set()).add((mappings[loc["mapping_id"]], ln["line"]))
    assert {m for m, _ in where["hot_kernel"]} == {hotlib}, where["hot_kernel"]
    assert all(HOT_LINES[0] <= line <= HOT_LINES[1] for _, line in where["hot_kernel"]), where["hot_kernel"]
    files = {st[f["filename"]] for f in msg["function"] if st[f["name"]] == "hot_kernel"}
    assert files == {hotlib[:-3] + ".c"}, files
    # A library without line tables: its path as the function's file, no line.
    assert all(line == 0 for _, line in where.get("ffi_call", set())), where.get("ffi_call")
    assert {m for m, _ in where["python_caller"]} == {"[python]"}
    assert all(line > 0 for _, line in where["python_caller"]), where["python_caller"]


def test_native_argument_is_checked() -> None:
    with pytest.raises(ValueError, match="native must be True, False or None"):
        spprof.start(native="yes")
    assert not spprof.is_active()
    with pytest.raises(ValueError, match="native must be True, False or None"):
        spprof.Profiler(native=1)


def test_sampling_never_waits_for_the_loader_lock(hotlib: str, tmp_path) -> None:
    """The interrupted thread may hold the loader's lock (inside dlopen,
    dlclose, dl_iterate_phdr): an unwind that asked the loader would wait
    for it forever. Two threads loop on dl_iterate_phdr (in C) and on
    loading and unloading a fresh library (ctypes) for 2 s each while
    sampled at 1 ms with native frames: the run ends, and the samples of the
    dl_iterate_phdr loop have native frames."""
    copies = []
    for i in range(4):  # distinct files: each load maps and registers anew
        copy = tmp_path / f"libcopy{i}.so"
        shutil.copy(hotlib, copy)
        copies.append(str(copy))
    result = run_scenario(f"LIB = {hotlib!r}\nCOPIES = {copies!r}\n" + PRELUDE + """
import _ctypes
lib.iterate_objects.argtypes = [ctypes.c_double]
lib.iterate_objects.restype = ctypes.c_long

def iterate():
    lib.iterate_objects(2.0)

def load_unload():
    end = time.monotonic() + 2.0
    n = 0
    while time.monotonic() < end:
        handle = ctypes.CDLL(COPIES[n % len(COPIES)])._handle
        _ctypes.dlclose(handle)
        n += 1
    loads.append(n)

loads = []
spprof.start(interval_ms=1, native=True)
threads = [threading.Thread(target=iterate), threading.Thread(target=load_unload)]
for t in threads: t.start()
for t in threads: t.join()
prof = spprof.stop()
mine = [s for s in prof.samples if "iterate" in names(s)]
native = [s for s in mine if s.frames[-1].is_native]
emit({"loads": loads[0], "samples": len(mine), "native": len(native),
      "uncovered": prof.stats.raw["native_uncovered"]})
""", timeout=120)
    print(result)
    assert result["loads"] > 50, result
    assert result["samples"] >= 100 and result["native"] >= 0.9 * result["samples"], result


def test_libunwinds_descriptors_stay_out_of_the_programs_way(hotlib: str) -> None:
    """libunwind opens a pipe at its first unwind, at the lowest free
    numbers: spprof moves it at once above the program's (the next open()
    still gets the number it got before). When the program replaces it
    (dup2 over it), native frames stop for the session with a warning
    (libunwind would otherwise reopen the pipe on the program's numbers)."""
    result = run_scenario(f"LIB = {hotlib!r}\n" + PRELUDE + """
import os, warnings
def lowest_free():
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd
def pipes():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            out[int(name)] = target
    return out
low_before, pipes_before = lowest_free(), pipes()
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    spprof.start(interval_ms=1, native=True)
    low_during = lowest_free()
    new = {fd: t for fd, t in pipes().items() if fd not in pipes_before}
    python_caller(0.2)
    before = spprof.stats().raw["native_samples"]
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in new:
        os.dup2(devnull, fd)  # the program takes those numbers over
    deadline = time.monotonic() + 5
    while not caught and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped_at = spprof.stats().raw["native_samples"]
    python_caller(0.2)
    after = spprof.stats().raw["native_samples"]
    prof = spprof.stop()
emit({"low_before": low_before, "low_during": low_during, "new": sorted(new),
      "same_pipe": len(set(new.values())) == 1, "before": before, "stopped_at": stopped_at,
      "after": after, "warnings": [str(w.message) for w in caught]})
""")
    print(result)
    assert result["low_during"] == result["low_before"], result
    assert len(result["new"]) == 2 and result["same_pipe"], result
    assert min(result["new"]) >= 512, result
    assert result["before"] >= 100, result
    assert any("native frames stopped" in w for w in result["warnings"]), result
    assert result["after"] - result["stopped_at"] <= 2, result


def test_profiler_and_decorator_take_native(hotlib: str) -> None:
    """Profiler(native=True) and @profile(native=True) record native
    frames as start(native=True) does."""
    result = run_scenario(f"LIB = {hotlib!r}\n" + PRELUDE + """
with spprof.Profiler(interval_ms=1, native=True) as p:
    python_caller(0.15)

@spprof.profile(interval_ms=1, native=True)
def decorated():
    python_caller(0.15)

decorated()
def hot(prof):
    return sum(1 for s in prof.samples if "hot_kernel" in names(s) and s.frames[-1].is_native or
               "hot_kernel" in names(s)[-2:])
emit({"profiler": hot(p.profile), "decorator": hot(decorated.last_profile),
      "profiler_samples": p.profile.sample_count})
""")
    print(result)
    assert result["profiler"] >= 50 and result["decorator"] >= 50, result


CYTHON_SRC = """
# cython: language_level=3
def process(data, int rounds):
    cdef long total = 0
    cdef int r, i
    for r in range(rounds):
        for i in range(len(data)):
            total += mix(data[i], r)
    return total

cdef long mix(long a, int r):
    cdef long x = a
    cdef int k
    for k in range(50):
        x = (x * 31 + r) % 1000003
    return x

class Pipeline:
    def run(self, data, int rounds):
        return process(data, rounds)
"""


@pytest.fixture(scope="module")
def cython_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A module compiled with Cython here (cython, then cc), its directory."""
    import os
    import sys
    import sysconfig
    cython = shutil.which("cython", path=os.path.dirname(sys.executable))
    if cython is None:
        msg = "Cython is missing"
        if os.environ.get("SPPROF_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{msg}, and SPPROF_REQUIRE_TOOLS=1", pytrace=False)
        pytest.skip(msg)
    d = tmp_path_factory.mktemp("cython")
    (d / "hotcy.pyx").write_text(CYTHON_SRC)
    subprocess.run([cython, "-3", "hotcy.pyx", "-o", "hotcy.c"], cwd=d, check=True,
                   capture_output=True, timeout=300)
    built = build_shared_library(tmp_path_factory, "hotcy" + sysconfig.get_config_var("EXT_SUFFIX"),
                                 d / "hotcy.c", "-O1", "-g", "-I" + sysconfig.get_paths()["include"])
    return os.path.dirname(built)


@pytest.mark.default_python
def test_cython_functions_appear_by_name(cython_module: str) -> None:
    """A Cython-compiled method calling a compiled function: with
    native=True >= 90% of the caller's samples read caller ->
    hotcy.Pipeline.run (Cython) -> hotcy.process (Cython), named after the
    Python functions they compile (not Cython's C symbols), native, from
    the module's file, without Cython's call helpers between them."""
    result = run_scenario(f"import sys; sys.path.insert(0, {cython_module!r})\n" + """
import spprof, hotcy

def caller():
    return hotcy.Pipeline().run(list(range(2000)), 400)

spprof.start(interval_ms=1, native=True)
caller()
prof = spprof.stop()
mine, ok, other = 0, 0, []
for s in prof.samples:
    n = [f.function_name for f in s.frames]
    if "caller" not in n:
        continue
    mine += 1
    tail = s.frames[n.index("caller") + 1:]
    t = [f.function_name for f in tail]
    # hotcy.process is the leaf, or runs a Cython helper or the interpreter's C code
    if (t[:2] == ["hotcy.Pipeline.run (Cython)", "hotcy.process (Cython)"]
            and all(f.library == hotcy.__file__ for f in tail[:2])
            and all(f.is_native for f in tail)):
        ok += 1
    else:
        other.append(t)
emit({"samples": mine, "ok": ok, "other": other[:5]})
""")
    print(result)
    assert result["samples"] >= 100, result
    assert result["ok"] >= 0.9 * result["samples"], result


@pytest.mark.default_python
def test_numpy_with_openblas_threads_cpu_and_kernels() -> None:
    """numpy's linalg on OpenBLAS with 2 threads, native=True: the
    profile's CPU (every thread's, the BLAS workers' included) is within 5%
    of the process's CPU from os.times() during the session, less spprof's
    own thread's (stats service_cpu_ns, at most 15%); the workers' samples are under
    their <native thread> root and name BLAS kernels; the Python caller's
    C frames reach a BLAS kernel too."""
    np = pytest.importorskip("numpy")
    config = str(np.show_config(mode="dicts")).lower() if hasattr(np, "show_config") else ""
    if "openblas" not in config:
        pytest.skip("numpy here is not built with OpenBLAS")
    result = run_scenario("""
import os, numpy as np, spprof
a = np.random.default_rng(1).random((600, 600))
np.linalg.inv(a)  # OpenBLAS starts its threads
def invert(n):
    for _ in range(n):
        np.linalg.inv(a)
t0 = os.times()
spprof.start(interval_ms=1, native=True)
invert(15)
t1 = os.times()
prof = spprof.stop()
process_ms = ((t1.user + t1.system) - (t0.user + t0.system)) * 1000
# spprof's own thread (resolving, naming C functions, reading their line
# tables) is not the program's.
own_ms = prof.stats.raw["service_cpu_ns"] / 1e6
workers, caller = {}, {}
for s in prof.samples:
    root, leaf = s.frames[0].function_name, s.frames[-1]
    kernel = leaf.is_native and ("kernel" in leaf.function_name or "gemm" in leaf.function_name) \\
        and "openblas" in os.path.basename(leaf.library).lower()
    side = workers if root.startswith("<native thread") else caller if "invert" in [f.function_name for f in s.frames] else None
    if side is not None:
        side["ms"] = side.get("ms", 0) + s.weight * prof.interval_ms
        side["kernel_ms"] = side.get("kernel_ms", 0) + (s.weight * prof.interval_ms if kernel else 0)
import collections
roots = collections.Counter((s.thread_name, s.frames[0].function_name) for s in prof.samples)
emit({"profile_ms": prof.total_cpu_ms, "process_ms": process_ms, "own_ms": own_ms,
      "workers": workers, "caller": caller, "roots": roots.most_common(6),
      "undelivered": prof.stats.raw.get("undelivered_weight"), "native_threads": prof.stats.raw.get("native_threads")})
""", env={"OPENBLAS_NUM_THREADS": "2"})
    print(result)
    assert result["process_ms"] >= 500, result
    program_ms = result["process_ms"] - result["own_ms"]
    assert abs(result["profile_ms"] - program_ms) <= 0.05 * program_ms, result
    assert result["own_ms"] <= 0.15 * result["process_ms"], result
    workers, caller = result["workers"], result["caller"]
    assert workers.get("ms", 0) >= 0.15 * result["process_ms"], result
    # the rest: the workers spin in blas_thread_server waiting for work
    assert workers["kernel_ms"] >= 0.25 * workers["ms"], result
    assert caller["kernel_ms"] >= 0.5 * caller["ms"], result


@pytest.mark.default_python
def test_black_compiled_with_mypyc_shows_its_functions(tmp_path) -> None:
    """black from PyPI, compiled with mypyc, formatting a file under
    `spprof run --native`: without native frames its work is one opaque
    frame (the compiled module's entry); with them >= 80% of the samples
    name black's own functions (`black.format_file_contents (mypyc)`), and
    the formatter's internals (linegen, the parser) are among them."""
    import os
    import sys
    try:
        import black
    except ImportError:
        black = None
    if black is None or not black.__file__.endswith(".so"):
        msg = "black compiled with mypyc (its wheel from PyPI) is not installed"
        if os.environ.get("SPPROF_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{msg}, and SPPROF_REQUIRE_TOOLS=1", pytrace=False)
        pytest.skip(msg)
    target = tmp_path / "big.py"
    # Real code to format: two of the tests' own sources (~1800 lines).
    target.write_text("\n\n".join((ROOT / "tests" / name).read_text()
                                   for name in ("test_cli.py", "test_robustness.py")))
    out = tmp_path / "black.collapsed"
    done = subprocess.run([sys.executable, "-m", "spprof", "run", "--native", "-i", "1", "-f", "collapsed",
                           "-o", str(out), "-m", "black", "--check", "-q", str(target)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr  # black --check: 1 when it would reformat
    total = compiled = 0
    names = set()
    for line in out.read_text().splitlines():
        stack, weight = line.rsplit(" ", 1)
        frames = [f.removeprefix("[native] ") for f in stack.split(";") if " (mypyc)" in f]
        total += int(weight)
        if frames:
            compiled += int(weight)
            names.update(f.split(" (mypyc)")[0] for f in frames)
    print(compiled, total, sorted(names)[:12])
    assert total >= 100, (total, done.stderr)
    assert compiled >= 0.8 * total, (compiled, total)
    assert "black.format_file_contents" in names, sorted(names)[:40]
    assert any(n.startswith("linegen.") for n in names), sorted(names)[:40]
    assert any("Parser" in n for n in names), sorted(names)[:40]
