"""capture_native_stack() and the original spprof's native-unwinding API.

A small C library and a small C++ one are built here (cc / g++; skipped
without a compiler) with a chain of functions that calls back into Python
through ctypes, where the callback captures the native stack. The stack is
leaf first, as the original's: the callback's interpreter frames, then the
C chain from the innermost function out (`inner_c`, the static `middle_c`,
`outer_c`), then the interpreter frames that called the library. Each
capture runs in a child process (run_scenario): a crash fails one test.

Checked against oracles of their own: a function's start address from the
loader (ctypes), the object that holds an address from /proc/self/maps, a
static function's address in the file from `nm`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import spprof
from conftest import ROOT, build_shared_library, child_kwargs, run_scenario

C_SRC = r"""
typedef int (*callback)(void);
__attribute__((noinline)) int inner_c(callback cb) { return cb() + 1; }
__attribute__((noinline)) static int middle_c(callback cb) { return inner_c(cb) + 1; }
__attribute__((noinline)) int outer_c(callback cb) { return middle_c(cb) + 1; }
__attribute__((noinline)) int recurse_c(int n, callback cb) { return n == 0 ? cb() : recurse_c(n - 1, cb) + 1; }
"""

CXX_SRC = r"""
namespace spprof_test {
template <typename T> struct Kernel {
    __attribute__((noinline)) static T run(T (*cb)()) { return cb() + 1; }
};
template struct Kernel<int>;
}
extern "C" int cpp_entry(int (*cb)()) { return spprof_test::Kernel<int>::run(cb) + 1; }
"""

# The scenario prelude: the library, and a capture made inside a callback.
CAPTURE = """
import ctypes, os, spprof
CB = ctypes.CFUNCTYPE(ctypes.c_int)
captured = []
def capture():
    captured.append(spprof.capture_native_stack())
    return 0
callback = CB(capture)

def address_of(lib, name):
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value

def mapped_file(address):
    # /proc/self/maps: the file mapped at `address` (independent of spprof)
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return os.path.realpath(parts[5].strip()) if len(parts) > 5 else ""
    return None

def rows(frames):
    return [[f.ip, f.symbol, f.filename, f.offset, f.resolved] for f in frames]
"""


@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    return build_shared_library(tmp_path_factory, "libspprof_ctest.so", C_SRC, "-O0", "-g")


@pytest.fixture(scope="module")
def cxxlib(tmp_path_factory):
    return build_shared_library(tmp_path_factory, "libspprof_cxxtest.so", CXX_SRC, "-O0", "-g", cxx=True)


def test_available_here_and_not_enabled():
    # This machine has libunwind-dev (make system-deps installs it).
    assert spprof.native_unwinding_available() is True
    assert spprof.native_unwinding_enabled() is False


def test_set_native_unwinding_is_the_default_of_later_sessions():
    """The original's switch: set_native_unwinding(True) makes sessions
    started without native= record native frames; a non-bool is refused."""
    result = run_scenario("""
import spprof
out = {"before": spprof.native_unwinding_enabled()}
spprof.set_native_unwinding(True)
out["enabled"] = spprof.native_unwinding_enabled()
spprof.start()
out["session"] = spprof.stats().raw["native"]
spprof.stop()
spprof.start(native=False)
out["overridden"] = spprof.stats().raw["native"]
spprof.stop()
spprof.set_native_unwinding(False)
spprof.start()
out["after"] = spprof.stats().raw["native"]
spprof.stop()
try:
    spprof.set_native_unwinding("yes")
except ValueError as e:
    out["error"] = str(e)
emit(out)
""")
    assert result == {"before": False, "enabled": True, "session": True, "overridden": False,
                      "after": False, "error": "enabled must be True or False, got 'yes'"}
    assert issubclass(spprof.ProfilerError, RuntimeError)  # as the original's RuntimeError


def test_c_chain_leaf_first_with_offsets_and_files(clib):
    res = run_scenario(CAPTURE + f"""
lib = ctypes.CDLL({clib!r})
lib.outer_c.argtypes = [CB]
assert lib.outer_c(callback) == 3
eval_start = address_of(ctypes.pythonapi, "_PyEval_EvalFrameDefault")
emit({{"frames": rows(captured[0]), "lib_file": mapped_file(address_of(lib, "inner_c")),
       "python_file": mapped_file(eval_start), "own_file": mapped_file(address_of(
            ctypes.PyDLL(spprof._native.__file__), "PyInit__native")),
       "starts": {{n: address_of(lib, n) for n in ("inner_c", "outer_c")}},
       "eval_start": eval_start}})
""")
    frames = res["frames"]
    names = [f[1] for f in frames]
    shown = "\n".join(f"{n} {f[2]}" for n, f in zip(names, frames))
    # Leaf first: the callback's eval loop, then the C chain from its
    # innermost function out, then the eval loop that called outer_c.
    i = names.index("inner_c")
    assert names[i:i + 3] == ["inner_c", "middle_c", "outer_c"], shown
    assert "_PyEval_EvalFrameDefault" in names[:i], shown
    assert "_PyEval_EvalFrameDefault" in names[i + 3:], shown
    # spprof's own frames are left out: the first frame is the interpreter's.
    assert frames[0][2] and all(f[2] != res["own_file"] for f in frames), shown
    assert len(frames) <= 128
    for f in frames[i:i + 3]:
        ip, symbol, filename, offset, resolved = f
        assert resolved and __import__("os").path.realpath(filename) == res["lib_file"], f
        if symbol in res["starts"]:
            assert offset == ip - res["starts"][symbol], f
        assert 0 < offset < 200, f  # a return address inside a small function
    for f in frames:
        if f[1] == "_PyEval_EvalFrameDefault":
            assert f[4] and __import__("os").path.realpath(f[2]) == res["python_file"], f
            assert f[3] == f[0] - res["eval_start"], f
        if not f[4]:
            assert f[1] == hex(f[0]), f  # unresolved: the address as its name


def test_cpp_names_are_demangled(cxxlib):
    res = run_scenario(CAPTURE + f"""
lib = ctypes.CDLL({cxxlib!r})
lib.cpp_entry.argtypes = [CB]
lib.cpp_entry(callback)
emit({{"names": [f.symbol for f in captured[0]]}})
""")
    names = res["names"]
    i = names.index("spprof_test::Kernel<int>::run(int (*)())")
    assert names[i + 1] == "cpp_entry", names


def test_demangling_of_cpp_and_rust_legacy_names():
    from spprof import _native
    assert _native._demangle("_ZN11spprof_test6KernelIiE3runEPFivE") == "spprof_test::Kernel<int>::run(int (*)())"
    assert _native._demangle("_ZN4core3fmt5write17h0123456789abcdefE") == "core::fmt::write"
    rust = "_$LT$pyo3..instance..Py$LT$T$GT$$u20$as$u20$core..ops..drop..Drop$GT$"
    mangled = f"_ZN{len(rust)}{rust}4drop17hfedcba9876543210E"
    assert _native._demangle(mangled) == "<pyo3::instance::Py<T> as core::ops::drop::Drop>::drop"
    # Python functions compiled by Cython and mypyc: named after the Python
    # function (module, classes, name).
    assert _native._demangle("__pyx_pw_5cymod_1process") == "cymod.process (Cython)"
    assert _native._demangle("__pyx_pf_5cymod_8Pipeline_2run") == "cymod.Pipeline.run (Cython)"
    assert _native._demangle("__pyx_f_5cymod_mix") == "cymod.mix (Cython)"
    assert (_native._demangle("CPyDef_linegen___LineGenerator___visit_default")
            == "linegen.LineGenerator.visit_default (mypyc)")
    assert _native._demangle("CPyPy_trans___is_split") == "trans.is_split (mypyc)"
    # private names: the separator is the first three underscores of a run
    assert _native._demangle("CPyDef_black____format_str_once") == "black._format_str_once (mypyc)"
    assert _native._demangle("CPyDef_parse___Parser____addtoken") == "parse.Parser._addtoken (mypyc)"
    for plain in ("deflate", "_Zoops", "", "__pyx_pw_", "__pyx_pw_99cymod_1f", "__pyx_pw_5cymod_",
                  "__pyx_module_is_main_cymod", "CPyDef_"):
        assert _native._demangle(plain) == plain


def test_static_function_of_a_stripped_library_is_unresolved_with_its_file_offset(clib, tmp_path):
    strip, nm = shutil.which("strip"), shutil.which("nm")
    if strip is None or nm is None:
        pytest.skip("no strip/nm")
    symbols = subprocess.run([nm, "-S", clib], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([0-9a-f]+) ([0-9a-f]+) t middle_c$", symbols, re.M)
    assert m, symbols
    start, size = int(m.group(1), 16), int(m.group(2), 16)
    stripped = tmp_path / "libstripped.so"
    subprocess.run([strip, "--strip-all", "-o", str(stripped), clib], check=True)
    res = run_scenario(CAPTURE + f"""
lib = ctypes.CDLL({str(stripped)!r})
lib.outer_c.argtypes = [CB]
lib.outer_c(callback)
emit({{"frames": rows(captured[0])}})
""")
    frames = res["frames"]
    names = [f[1] for f in frames]
    i = names.index("inner_c")  # exported: still named from .dynsym
    ip, symbol, filename, offset, resolved = frames[i + 1]
    assert not resolved and symbol == hex(ip) and filename.endswith("libstripped.so"), frames[i + 1]
    assert start < offset <= start + size, (hex(offset), hex(start), size)  # its place in the file
    assert names[i + 2] == "outer_c" and frames[i + 2][4]


def test_a_library_replaced_on_disk_is_not_read_for_names(clib, tmp_path):
    """A file that is not the loaded object any more (another build id) is
    not read: exported names come from the loader (dladdr), a static function
    stays unresolved instead of being named from the wrong file."""
    cc = shutil.which("cc")
    other = tmp_path / "other.c"
    other.write_text("int pad_a(void) { return 1; }\nint pad_b(int x) { return x * 3 + pad_a(); }\n" + C_SRC)
    replacement = tmp_path / "replacement.so"
    subprocess.run([cc, "-O0", "-g", "-shared", "-fPIC", "-o", str(replacement), str(other)], check=True)
    lib_path = tmp_path / "libreplaced.so"
    shutil.copy(clib, lib_path)
    res = run_scenario(CAPTURE + f"""
lib = ctypes.CDLL({str(lib_path)!r})
lib.outer_c.argtypes = [CB]
os.rename({str(replacement)!r}, {str(lib_path)!r})  # the mapping keeps the old file
lib.outer_c(callback)
emit({{"frames": rows(captured[0])}})
""")
    frames = res["frames"]
    names = [f[1] for f in frames]
    i = names.index("inner_c")
    assert [f[4] for f in frames[i:i + 3]] == [True, False, True], frames[i:i + 3]
    assert names[i + 2] == "outer_c" and names[i + 1] == hex(frames[i + 1][0]), names


def test_depth_is_bounded_and_threads_unwind(clib):
    res = run_scenario(CAPTURE + f"""
import threading, time
lib = ctypes.CDLL({clib!r})
lib.recurse_c.argtypes = [ctypes.c_int, CB]
lib.recurse_c(300, callback)
lib.outer_c.argtypes = [CB]
t = threading.Thread(target=lambda: lib.outer_c(callback))
t.start(); t.join()
t0 = time.perf_counter()
for _ in range(200):
    spprof.capture_native_stack()
per_call_us = (time.perf_counter() - t0) / 200 * 1e6
# During a session at 1 ms: SIGPROF lands inside libunwind and the
# symbolizer (the handler uses neither).
spprof.start(interval_ms=1)
during = [len(spprof.capture_native_stack()) for _ in range(2000)]
sampled = spprof.stop().sample_count
emit({{"deep": [f.symbol for f in captured[0]], "thread": [f.symbol for f in captured[1]],
       "thread_files": [f.filename for f in captured[1]], "per_call_us": per_call_us,
       "during": [min(during), max(during)], "sampled": sampled}})
""")
    deep, thread = res["deep"], res["thread"]
    assert 100 <= len(deep) <= 128 and deep.count("recurse_c") >= 100, deep[:10]
    i = thread.index("inner_c")
    assert thread[i:i + 3] == ["inner_c", "middle_c", "outer_c"], thread
    # A thread's stack ends in libc's thread start, not in the program's main.
    assert "Py_BytesMain" not in thread and "libc" in res["thread_files"][-1], thread
    print(f"capture_native_stack(): {res['per_call_us']:.1f} us per call (depth ~12, cached)")
    assert res["per_call_us"] < 5000
    assert res["sampled"] >= 10 and res["during"][0] == res["during"][1] >= 5, res


def test_unavailable_build_raises_with_the_reason():
    # What a build without libunwind-dev reports (native_unwind_none.cpp),
    # fed to the Python layer in place of this build's answer.
    none_src = (ROOT / "src" / "native" / "native_unwind_none.cpp").read_text()
    reason = re.search(r'return "(spprof was built without libunwind[^"]*)"', none_src).group(1)
    res = run_scenario(f"""
import spprof
from spprof import _native
_native.native_unwinding_unavailable_reason = lambda: {reason!r}
out = {{"available": spprof.native_unwinding_available(),
        "enabled": spprof.native_unwinding_enabled()}}
for name, call in (("capture", spprof.capture_native_stack),
                   ("enable", lambda: spprof.set_native_unwinding(True))):
    try:
        call()
        out[name] = None
    except RuntimeError as e:
        out[name] = [type(e).__name__, str(e)]
spprof.set_native_unwinding(False)
emit(out)
""")
    assert res["available"] is False and res["enabled"] is False
    expected = ["ProfilerError", f"native unwinding is not available: {reason}"]
    assert res["capture"] == expected and res["enable"] == expected
    assert "libunwind-dev" in reason


@pytest.mark.default_python
@pytest.mark.timeout(600)
def test_a_build_without_libunwind_headers_works_and_says_why(tmp_path):
    """The real build-time path: CMake told to ignore the directory of
    libunwind.h builds native_unwind_none.cpp; that extension samples as
    usual and reports native unwinding unavailable, naming the package."""
    # make test builds it ahead, in the background (SPPROF_NO_LIBUNWIND_BUILD):
    # then this finds it up to date.
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from build_without_libunwind import build as build_without_libunwind
    finally:
        sys.path.pop(0)
    build = Path(os.environ.get("SPPROF_NO_LIBUNWIND_BUILD") or tmp_path / "build")
    status, output, extension = build_without_libunwind(build)
    if status == 2 and output == "no cmake":
        pytest.skip("no cmake")
    assert status == 0, output
    assert "built without native unwinding" in output, output
    # The package from src/ with this extension, imported without site
    # (-S) so the editable install's finder does not bring the other one.
    package = tmp_path / "pkg" / "spprof"
    shutil.copytree(ROOT / "src" / "spprof", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(extension, package)
    code = """
import json, time, spprof
out = {"file": spprof._native.__file__, "available": spprof.native_unwinding_available()}
try:
    spprof.capture_native_stack()
except RuntimeError as e:
    out["error"] = [type(e).__name__, str(e)]
spprof.start(interval_ms=1)
t = time.thread_time()
while time.thread_time() - t < 0.05:
    pass
out["samples"] = spprof.stop().sample_count
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path), **child_kwargs({"PYTHONPATH": str(tmp_path / "pkg")}))
    assert proc.returncode == 0, proc.stderr
    res = __import__("json").loads(proc.stdout.splitlines()[-1])
    assert res["file"].startswith(str(package)) and res["available"] is False, res
    assert res["error"] == ["ProfilerError", "native unwinding is not available: spprof was built without "
                            "libunwind (install Debian's libunwind-dev and rebuild)"], res
    assert res["samples"] >= 20, res


def test_native_frame_is_a_frozen_record():
    import dataclasses
    f = spprof.NativeFrame(0x1000, "inner_c", "/lib/x.so", 16, True)
    assert [x.name for x in dataclasses.fields(f)] == ["ip", "symbol", "filename", "offset", "resolved"]
    assert f == spprof.NativeFrame(0x1000, "inner_c", "/lib/x.so", 16, True) and hash(f)
    assert repr(f) == "NativeFrame(ip=4096, symbol='inner_c', filename='/lib/x.so', offset=16, resolved=True)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.ip = 1  # type: ignore[misc]
