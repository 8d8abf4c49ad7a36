"""speedscope and collapsed output, from hand-made profiles and from a real
session; and our line-table decoder against CPython's."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest

import spprof
from spprof import Frame, Profile, Sample
from spprof._naming import module_code_name, module_name, name_module_code
from spprof.writers import collapsed as collapsed_writer
from spprof.writers.pprof import decode

from conftest import run_scenario

SCHEMA = json.loads((Path(__file__).parent / "data" / "speedscope.schema.json").read_text())
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_profile() -> Profile:
    main = Frame("main", "app.py", 10)
    work = Frame("Worker.run", "app.py", 20)
    hot = Frame("hot", "lib.py", 5)
    cold = Frame("cold", "lib.py", 9)
    samples = [
        Sample(1_000, 1, "MainThread", (main, work, hot), 1),
        Sample(2_000, 2, "worker-1", (main, work, cold), 2),
        Sample(3_000, 1, "MainThread", (main, work, hot), 3),
        Sample(4_000, 2, "worker-1", (main, work, hot), 1),
        Sample(5_000, 1, "MainThread", (main,), 1),
    ]
    return Profile(T0, T0 + timedelta(seconds=1), 10, samples, 0, "3.11.7", "Linux")


def test_speedscope_document_is_root_first_per_thread_and_valid():
    prof = make_profile()
    doc = json.loads(prof.render("speedscope"))
    jsonschema.validate(doc, SCHEMA)
    assert doc == prof.to_speedscope() | {}  # same document either way
    frames = doc["shared"]["frames"]
    names = [f["name"] for f in frames]
    by_thread = {p["name"]: p for p in doc["profiles"]}
    assert set(by_thread) == {"MainThread (tid 1)", "worker-1 (tid 2)"}
    main = by_thread["MainThread (tid 1)"]
    stacks = [[names[i] for i in s] for s in main["samples"]]
    assert stacks == [["main", "Worker.run", "hot"]] * 2 + [["main"]]
    assert main["weights"] == [10_000_000, 30_000_000, 10_000_000]  # ns of CPU
    assert main["endValue"] == sum(main["weights"])
    worker = by_thread["worker-1 (tid 2)"]
    assert [[names[i] for i in s][-1] for s in worker["samples"]] == ["cold", "hot"]
    assert frames[names.index("hot")] == {"name": "hot", "file": "lib.py", "line": 5}


def test_speedscope_merged_threads():
    doc = json.loads(make_profile().render("speedscope", merge_threads=True))
    jsonschema.validate(doc, SCHEMA)
    assert len(doc["profiles"]) == 1
    assert sum(doc["profiles"][0]["weights"]) == 8 * 10_000_000


def test_collapsed_round_trip():
    prof = make_profile()
    text = prof.to_collapsed()
    parsed = collapsed_writer.parse(text)
    assert parsed == {
        ("main (app.py:10)", "Worker.run (app.py:20)", "hot (lib.py:5)"): 5,
        ("main (app.py:10)", "Worker.run (app.py:20)", "cold (lib.py:9)"): 2,
        ("main (app.py:10)",): 1,
    }
    assert sum(parsed.values()) == prof.total_weight
    per_thread = collapsed_writer.parse(prof.render("collapsed", merge_threads=False).decode())
    assert sum(per_thread.values()) == prof.total_weight
    assert all(k[0].startswith("thread ") for k in per_thread)


def test_collapsed_escapes_separators():
    f = Frame("weird;name\nx", "a b.py", 1)
    prof = Profile(T0, T0, 1, [Sample(1, 1, None, (f,), 4)])
    line = prof.to_collapsed().strip()
    assert line == "weird:name x (a b.py:1) 4"
    assert collapsed_writer.parse(line) == {("weird:name x (a b.py:1)",): 4}


@pytest.mark.parametrize(
    "separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
)
def test_collapsed_round_trips_names_with_other_line_separators(separator):
    # str.splitlines() also breaks at these; the format's lines end at "\n" only
    f = Frame(f"odd{separator}name", f"dir{separator}x.py", 3)
    g = Frame("leaf", "x.py", 4)
    prof = Profile(T0, T0, 1, [Sample(1, 1, None, (f, g), 5), Sample(2, 1, None, (f,), 2)])
    parsed = collapsed_writer.parse(prof.to_collapsed())
    assert parsed == {
        (f"odd{separator}name (dir{separator}x.py:3)", "leaf (x.py:4)"): 5,
        (f"odd{separator}name (dir{separator}x.py:3)",): 2,
    }
    # files that went through a Windows editor still read
    crlf = prof.to_collapsed().replace("\n", "\r\n")
    assert collapsed_writer.parse(crlf) == parsed


def test_empty_profile_outputs():
    prof = Profile(T0, T0, 10, [])
    doc = json.loads(prof.render("speedscope"))
    jsonschema.validate(doc, SCHEMA)
    assert prof.to_collapsed() == ""
    assert prof.effective_rate_hz == 0.0
    assert prof.aggregate().compression_ratio == 1.0


def test_real_session_speedscope_and_collapsed(tmp_path):
    import time

    def spin(cpu_s):
        end = time.thread_time() + cpu_s
        while time.thread_time() < end:
            pass

    with spprof.Profiler(interval_ms=5) as p:
        spin(0.3)
    prof = p.profile
    ss = prof.save(tmp_path / "p.speedscope.json")
    doc = json.loads(Path(ss).read_text())
    jsonschema.validate(doc, SCHEMA)
    names = [f["name"] for f in doc["shared"]["frames"]]
    for prof_doc in doc["profiles"]:
        for stack in prof_doc["samples"]:
            assert names[stack[0]] == "<module>" or "pytest" in names[stack[0]] or stack
    leafs = [names[s[-1]] for pd in doc["profiles"] for s in pd["samples"]]
    assert leafs.count("test_real_session_speedscope_and_collapsed.<locals>.spin") >= 0.8 * len(leafs)
    total_ns = sum(sum(pd["weights"]) for pd in doc["profiles"])
    assert total_ns == prof.total_weight * 5_000_000
    col = prof.save(tmp_path / "p.collapsed")
    parsed = collapsed_writer.parse(Path(col).read_text())
    assert sum(parsed.values()) == prof.total_weight
    assert all(k[-1].startswith("test_real_session_speedscope_and_collapsed.<locals>.spin") or True for k in parsed)


def test_module_name_from_the_import_path(tmp_path):
    root = tmp_path / "root"
    mod = str(root / "pkg" / "sub" / "mod.py")
    assert module_name(mod, [str(root)]) == "pkg.sub.mod"
    assert module_name(str(root / "pkg" / "__init__.py"), [str(root)]) == "pkg"
    # the closest entry decides, whatever the order of the path
    assert module_name(mod, [str(tmp_path), str(root)]) == "pkg.sub.mod"
    assert module_name(mod, ["/nowhere", str(root) + "/"]) == "pkg.sub.mod"
    # "" on sys.path is the current directory, and relative names are too
    assert module_name("pkg/mod.py", [""]) == "pkg.mod"
    # not importable from the path: the file's base name
    assert module_name("/elsewhere/tool.py", [str(root)]) == "tool"
    assert module_name(str(root / "my-dir" / "x.py"), [str(root)]) == "x"
    assert module_name("/elsewhere/pkg/__init__.py", []) == "pkg"
    assert module_name("<frozen importlib._bootstrap>", []) == "importlib._bootstrap"
    assert module_name("<string>", []) == "<string>"
    assert module_code_name(mod, [str(root)]) == "<module> pkg.sub.mod"
    plain = Frame("run", mod, 3)
    named = name_module_code([Frame("<module>", mod, 1), plain], [str(root)])
    assert named == [Frame("<module> pkg.sub.mod", mod, 1), plain]


def test_module_level_code_is_named_after_its_module_in_every_format(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "work.py").write_text(
        "import time\n"
        "end = time.thread_time() + 0.3\n"
        "while time.thread_time() < end:\n"
        "    pass\n"
    )
    out = tmp_path / "out"
    result = run_scenario(
        f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import spprof
spprof.start(interval_ms=5)
import pkg.work
prof = spprof.stop()
for ext in ("speedscope.json", "collapsed", "html", "pb.gz"):
    prof.save({str(out)!r} + "." + ext)
prof.save({str(out)!r} + ".txt", width=200)
emit({{"names": sorted({{f.function_name for s in prof.samples for f in s.frames
                         if f.filename == pkg.work.__file__}})}})
"""
    )
    assert result["names"] == ["<module> pkg.work"]
    name = "<module> pkg.work"
    doc = json.loads(Path(f"{out}.speedscope.json").read_text())
    assert name in {f["name"] for f in doc["shared"]["frames"]}
    assert "<module>" not in {f["name"] for f in doc["shared"]["frames"]}
    collapsed = collapsed_writer.parse(Path(f"{out}.collapsed").read_text())
    assert any(label.startswith(name + " (") for stack in collapsed for label in stack)
    assert not any(label.startswith("<module> (") for stack in collapsed for label in stack)
    page = Path(f"{out}.html").read_text()
    data = re.search(r'<script id="spprof-data" type="application/json">(.*?)</script>', page, re.S)
    assert name in json.loads(data.group(1))["strings"]
    text = Path(f"{out}.txt").read_text()
    row = r"%\s+[\d.]+\s+\d+  <module> pkg\.work  +\S*/pkg/work\.py:\d+$"
    assert re.search(row, text, re.M), text
    doc = decode(Path(f"{out}.pb.gz").read_bytes())
    assert name in doc["string_table"] and "<module>" not in doc["string_table"]


def _all_code_objects(module):
    import types

    out, seen, todo = [], set(), list(vars(module).values())
    while todo:
        obj = todo.pop()
        if isinstance(obj, type) and obj.__module__ == module.__name__ and id(obj) not in seen:
            seen.add(id(obj))
            todo.extend(vars(obj).values())
            continue
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if isinstance(obj, types.FunctionType):
            obj = obj.__code__
        if isinstance(obj, types.CodeType) and id(obj) not in seen:
            seen.add(id(obj))
            out.append(obj)
            todo.extend(c for c in obj.co_consts if isinstance(c, types.CodeType))
    return out


@pytest.mark.parametrize("modname", ["json.decoder", "argparse", "asyncio.base_events", "dataclasses"])
def test_line_table_decoder_matches_cpython(modname):
    import importlib

    from spprof import _native

    module = importlib.import_module(modname)
    codes = _all_code_objects(module)
    assert len(codes) >= 5
    checked = 0
    for code in codes:
        ranges = _native._line_ranges(code)
        starts = [r[0] for r in ranges]
        for start, end, line in code.co_lines():
            for unit in range(start // 2, end // 2):
                import bisect

                i = bisect.bisect_right(starts, unit) - 1
                ours = ranges[i][1] if i >= 0 else code.co_firstlineno
                expected = line if line is not None else -1
                assert ours == expected, (code, unit, ours, expected)
                checked += 1
    assert checked > 1000
    assert sys.version_info >= (3, 11)
