"""The native boundary, declared once on each side and checked here: the
C++ table (src/native/stats_schema.h) that generates the native stats dict,
the Python table (spprof._results.STATS_KEYS, RESULT_KEYS) that reads it,
and what the extension really returns."""

from __future__ import annotations

import re

from conftest import ROOT, run_scenario
from spprof._results import RESULT_KEYS, STATS_KEYS

CPP_TYPES = {"bool": "bool", "uint64_t": "int", "int64_t": "int", "const char*": "str"}


def cpp_table() -> dict[str, str]:
    text = (ROOT / "src" / "native" / "stats_schema.h").read_text()
    body = text[text.index("#define SPPROF_STATS_FIELDS(X)"):text.index("namespace spprof")]
    return {key: CPP_TYPES[ctype.strip()] for key, ctype in re.findall(r"X\((\w+),\s*([\w\s*]+?)\)", body)}


def test_the_cpp_and_python_tables_agree():
    cpp = cpp_table()
    assert len(cpp) == len(STATS_KEYS) > 40
    assert cpp == {key: t.__name__ for key, (t, _) in STATS_KEYS.items()}


def test_the_extension_returns_what_the_tables_say():
    result = run_scenario(
        """
import time, spprof
from spprof import _state
native = _state.native()
def types(d):
    return {k: type(v).__name__ for k, v in d.items()}
out = {"idle": types(native.stats())}
spprof.start(interval_ms=1)
t = time.thread_time()
while time.thread_time() - t < 0.03:
    pass
out["running"] = types(native.stats())
stop = native.stop
def keep(*a):
    raw = stop(*a)
    out["result"] = types(raw)
    return raw
native.stop = keep
spprof.stop()
emit(out)
"""
    )
    stats = {key: t.__name__ for key, (t, _) in STATS_KEYS.items()}
    assert result["idle"] == stats
    assert result["running"] == stats
    assert result["result"] == {**stats, **{key: t.__name__ for key, t in RESULT_KEYS.items()}}
