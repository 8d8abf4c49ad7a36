"""The pprof writer: decoded content, and what ``go tool pprof`` makes of it."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from conftest import child_kwargs
from spprof import Frame, Profile, Sample
from spprof.writers import format_for_path, formats, get_writer
from spprof.writers import pprof as pprof_writer
from spprof.writers.pprof import decode

INTERVAL_MS = 5
INTERVAL_NS = 5_000_000
START = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
END = START + timedelta(seconds=1, milliseconds=500)
BIG_TID = 140_234_567_890_123  # pthread ids are large; needs multi-byte varints

MAIN = Frame("main", "/app/main.py", 1)
HOT10 = Frame("hot", "/app/work.py", 10)
HOT14 = Frame("hot", "/app/work.py", 14)
COLD = Frame("cold", "/app/work.py", 30)
HELPER = Frame("helper", "/app/util.py", 5)


def _samples(n, tid, name, frames, weight):
    return [Sample(1_000 * i, tid, name, frames, weight) for i in range(n)]


def make_profile(**kw) -> Profile:
    """Weight 100 over 55 samples on 3 threads; ``hot`` is the leaf for 70
    of the 100 intervals (but only 35 of the 55 samples)."""
    samples = (
        _samples(20, 101, "MainThread", (MAIN, HOT10), 2)  # weight 40
        + _samples(10, 101, "MainThread", (MAIN, HELPER, HOT14), 1)  # 10
        + _samples(15, 202, "worker-1", (MAIN, COLD), 1)  # 15
        + _samples(5, 202, "worker-1", (MAIN, HOT10), 4)  # 20
        + _samples(5, BIG_TID, None, (MAIN, HELPER), 3)  # 15
    )
    kw.setdefault("dropped_count", 7)
    return Profile(
        START, END, INTERVAL_MS, samples, python_version="3.11.9", platform="linux", **kw
    )


def _decoded(profile: Profile, **options) -> dict:
    data = profile.render("pprof", **options)
    assert data[:2] == b"\x1f\x8b", "pprof files are gzip-compressed"
    return decode(data)


def _resolve(doc: dict):
    """Helpers to turn ids and string indices back into names."""
    st = doc["string_table"]
    funcs = {f["id"]: f for f in doc["function"]}
    locs = {loc["id"]: loc for loc in doc["location"]}

    def frame(loc_id):
        loc = locs[loc_id]
        assert len(loc["line"]) == 1
        line = loc["line"][0]
        f = funcs[line["function_id"]]
        return (st[f["name"]], st[f["filename"]], line["line"])

    def labels(sample):
        out = {}
        for lab in sample["label"]:
            key = st[lab["key"]]
            out[key] = st[lab["str"]] if lab["str"] else lab["num"]
        return out

    return st, frame, labels


# -- structure ----------------------------------------------------------------


def test_registered_and_inferred_from_extension():
    assert "pprof" in formats()
    assert get_writer("pprof") is pprof_writer.WRITER
    assert format_for_path("out.pb.gz") == "pprof"
    assert pprof_writer.WRITER.extension == ".pb.gz"


def test_string_table_invariants():
    doc = _decoded(make_profile())
    st = doc["string_table"]
    assert st[0] == ""
    assert len(st) == len(set(st)), "strings are interned once"
    refs = []
    for vt in doc["sample_type"] + [doc["period_type"]]:
        refs += [vt["type"], vt["unit"]]
    for f in doc["function"]:
        refs += [f["name"], f["system_name"], f["filename"]]
    for s in doc["sample"]:
        for lab in s["label"]:
            refs += [lab["key"], lab["str"], lab["num_unit"]]
    for m in doc["mapping"]:
        refs += [m["filename"], m["build_id"]]
    refs += doc["comment"] + [doc["default_sample_type"]]
    assert all(0 <= r < len(st) for r in refs)
    for name in ("samples", "count", "cpu", "nanoseconds", "main", "hot", "cold", "helper"):
        assert name in st
    for path in ("/app/main.py", "/app/work.py", "/app/util.py"):
        assert path in st


def test_ids_nonzero_unique_and_resolvable():
    doc = _decoded(make_profile())
    fids = [f["id"] for f in doc["function"]]
    lids = [loc["id"] for loc in doc["location"]]
    mids = [m["id"] for m in doc["mapping"]]
    for ids in (fids, lids, mids):
        assert ids and 0 not in ids and len(ids) == len(set(ids))
    for loc in doc["location"]:
        assert loc["mapping_id"] in mids
        for line in loc["line"]:
            assert line["function_id"] in fids
    for s in doc["sample"]:
        assert s["location_id"] and all(i in lids for i in s["location_id"])
    # pprof should not try to symbolize Python frames against a binary
    m = doc["mapping"][0]
    assert m["has_functions"] and m["has_filenames"] and m["has_line_numbers"]


def test_sample_types_period_and_times():
    profile = make_profile()
    doc = _decoded(profile)
    st = doc["string_table"]
    assert [(st[v["type"]], st[v["unit"]]) for v in doc["sample_type"]] == [
        ("samples", "count"),
        ("cpu", "nanoseconds"),
    ]
    period_type = doc["period_type"]
    assert (st[period_type["type"]], st[period_type["unit"]]) == ("cpu", "nanoseconds")
    assert doc["period"] == INTERVAL_NS == profile.interval_ns
    assert st[doc["default_sample_type"]] == "cpu"
    # exact to the microsecond the datetime carries: no float rounding
    assert doc["time_nanos"] == 1_709_294_400_123_456_000
    assert doc["duration_nanos"] == 1_500_000_000
    for s in doc["sample"]:
        assert len(s["value"]) == 2


def test_totals_equal_profile_totals():
    profile = make_profile()
    doc = _decoded(profile)
    assert sum(s["value"][0] for s in doc["sample"]) == profile.sample_count == 55
    assert sum(s["value"][1] for s in doc["sample"]) == profile.total_weight * INTERVAL_NS
    assert profile.total_weight == 100


def test_samples_are_aggregated_stacks_leaf_first():
    profile = make_profile()
    doc = _decoded(profile)
    _, frame, labels = _resolve(doc)
    got = {}
    for s in doc["sample"]:
        key = (labels(s)["thread_id"], tuple(frame(i) for i in s["location_id"]))
        assert key not in got, "one sample per (thread, stack)"
        got[key] = s["value"]
    expected = {}
    for a in profile.aggregate().stacks:
        leaf_first = tuple((f.function_name, f.filename, f.lineno) for f in reversed(a.frames))
        expected[(a.thread_id, leaf_first)] = [a.count, a.weight * INTERVAL_NS]
    assert got == expected
    assert len(got) == 5
    # spelled out for one stack: the running function comes first
    hot14 = (
        ("hot", "/app/work.py", 14),
        ("helper", "/app/util.py", 5),
        ("main", "/app/main.py", 1),
    )
    assert got[(101, hot14)] == [10, 10 * INTERVAL_NS]


def test_functions_and_locations():
    doc = _decoded(make_profile())
    st, frame, _ = _resolve(doc)
    funcs = [
        (st[f["name"]], st[f["system_name"]], st[f["filename"]], f["start_line"])
        for f in doc["function"]
    ]
    # no system_name: pprof then shows the name exactly as written
    assert sorted(funcs) == [
        ("cold", "", "/app/work.py", 30),
        ("helper", "", "/app/util.py", 5),
        ("hot", "", "/app/work.py", 10),  # smallest line seen (10 and 14)
        ("main", "", "/app/main.py", 1),
    ]
    locs = sorted(frame(loc["id"]) for loc in doc["location"])
    assert locs == [
        ("cold", "/app/work.py", 30),
        ("helper", "/app/util.py", 5),
        ("hot", "/app/work.py", 10),
        ("hot", "/app/work.py", 14),
        ("main", "/app/main.py", 1),
    ]


def test_same_name_in_different_files_are_different_functions():
    a = Frame("run", "/a.py", 3)
    b = Frame("run", "/b.py", 3)
    p = Profile(START, END, 1, [Sample(0, 1, "T", (a,), 1), Sample(1, 1, "T", (b,), 1)])
    doc = _decoded(p)
    st = doc["string_table"]
    assert sorted(st[f["filename"]] for f in doc["function"]) == ["/a.py", "/b.py"]


def test_thread_labels():
    doc = _decoded(make_profile())
    st, _, labels = _resolve(doc)
    seen = {}
    for s in doc["sample"]:
        lab = labels(s)
        tid = lab["thread_id"]
        assert isinstance(tid, int)
        seen.setdefault(tid, set()).add(lab.get("thread_name"))
        for raw in s["label"]:
            if st[raw["key"]] == "thread_id":
                assert raw["str"] == 0, "thread_id is a numeric label"
            if st[raw["key"]] == "thread_name":
                assert raw["num"] == 0, "thread_name is a string label"
    assert seen == {101: {"MainThread"}, 202: {"worker-1"}, BIG_TID: {None}}


def test_merge_threads_folds_stacks_and_drops_labels():
    profile = make_profile()
    doc = _decoded(profile, merge_threads=True)
    st, frame, _ = _resolve(doc)
    assert all(not s["label"] for s in doc["sample"])
    stacks = [tuple(frame(i) for i in s["location_id"]) for s in doc["sample"]]
    assert len(stacks) == len(set(stacks)) == 4  # (main, hot@10) was on two threads
    assert sum(s["value"][0] for s in doc["sample"]) == 55
    assert sum(s["value"][1] for s in doc["sample"]) == 100 * INTERVAL_NS
    assert "thread_id" not in st


def test_size_grows_with_unique_stacks_not_samples():
    frames = (MAIN, HOT10)
    small = Profile(START, END, 1, [Sample(i, 1, "T", frames, 1) for i in range(10)])
    large = Profile(START, END, 1, [Sample(i, 1, "T", frames, 1) for i in range(20_000)])
    d_small, d_large = _decoded(small), _decoded(large)
    assert len(d_large["sample"]) == 1
    assert d_large["sample"][0]["value"] == [20_000, 20_000 * 1_000_000]
    raw_small = gzip.decompress(small.render("pprof"))
    raw_large = gzip.decompress(large.render("pprof"))
    assert len(raw_large) - len(raw_small) < 16  # only the varints grew
    assert d_small["string_table"] == d_large["string_table"]


def test_empty_profile():
    p = Profile(START, END, 10, [])
    doc = _decoded(p)
    assert doc["sample"] == [] and doc["location"] == [] and doc["function"] == []
    assert doc["string_table"][0] == ""
    assert doc["period"] == 10_000_000
    assert doc["string_table"][doc["default_sample_type"]] == "cpu"


def test_stack_without_frames_keeps_its_cpu():
    p = Profile(START, END, 1, [Sample(0, 1, "T", (), 3), Sample(1, 1, "T", (MAIN,), 1)])
    doc = _decoded(p)
    _, frame, _ = _resolve(doc)
    assert sum(s["value"][1] for s in doc["sample"]) == 4_000_000
    names = {frame(s["location_id"][0])[0] for s in doc["sample"]}
    assert names == {"main", pprof_writer.NO_FRAMES}


def test_unicode_names_and_big_numbers_round_trip():
    f = Frame("grüße_函数", "/tmp/ünï.py", 70_000)
    p = Profile(START, END, 0.25, [Sample(0, 2**62, "thread ✓", (f,), 1000)])
    doc = _decoded(p)
    _, frame, labels = _resolve(doc)
    (s,) = doc["sample"]
    assert frame(s["location_id"][0]) == ("grüße_函数", "/tmp/ünï.py", 70_000)
    assert labels(s) == {"thread_id": 2**62, "thread_name": "thread ✓"}
    assert s["value"] == [1, 1000 * 250_000]
    assert doc["period"] == 250_000


def test_output_is_deterministic():
    assert make_profile().render("pprof") == make_profile().render("pprof")


def test_decode_accepts_uncompressed_and_rejects_garbage():
    raw = pprof_writer.build_message(make_profile())
    assert decode(raw) == decode(gzip.compress(raw))
    with pytest.raises(ValueError):
        decode(b"\x1f\x8b\x08garbage")
    with pytest.raises(ValueError):
        decode(b"\x12\x05ab")  # length runs past the end


def test_save_writes_pprof_file(tmp_path):
    path = make_profile().save(tmp_path / "cpu.pb.gz")
    with open(path, "rb") as fh:
        data = fh.read()
    assert decode(data)["sample"]


# -- go tool pprof ---------------------------------------------------------------


def _go() -> str:
    go = shutil.which("go")
    if go is None and os.access("/usr/lib/go/bin/go", os.X_OK):
        go = "/usr/lib/go/bin/go"
    if go is None:
        if os.environ.get("SPPROF_REQUIRE_TOOLS") == "1":
            pytest.fail(
                "go is not installed but SPPROF_REQUIRE_TOOLS=1: "
                "install golang-go (apt-get install -y golang-go)"
            )
        pytest.skip("go not installed (apt-get install -y golang-go)")
    return go


def _pprof(tmp_path, *args: str) -> str:
    go = _go()
    home = tmp_path / "home"
    for d in ("home", "gocache", "pprof", "gopath"):
        (tmp_path / d).mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GOCACHE=str(tmp_path / "gocache"),
        GOPATH=str(tmp_path / "gopath"),
        PPROF_TMPDIR=str(tmp_path / "pprof"),
        GOTOOLCHAIN="local",  # never download a toolchain
        GOFLAGS="",
    )
    proc = subprocess.run(
        [go, "tool", "pprof", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, f"go tool pprof {args} failed:\n{proc.stderr}"
    # A warning here would mean pprof tried to symbolize or fix up the file.
    assert "not available" not in proc.stderr, proc.stderr
    return proc.stdout


def _top_rows(out: str) -> list[tuple[float, str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "flat%" in line and "cum%" in line)
    rows = []
    for line in lines[start + 1 :]:
        parts = line.split()
        if len(parts) >= 6:
            rows.append((float(parts[1].rstrip("%")), " ".join(parts[5:])))
    return rows


def test_go_pprof_top_lists_hot_function_first(tmp_path):
    path = make_profile().save(tmp_path / "cpu.pb.gz")
    out = _pprof(tmp_path, "-top", path)
    assert "Type: cpu" in out
    assert "Duration: 1.50s" in out
    rows = _top_rows(out)
    assert rows[0][1] == "hot"
    assert abs(rows[0][0] - 70.0) <= 5.0, rows
    flat = {name: pct for pct, name in rows}
    assert abs(flat["helper"] - 15.0) <= 5.0 and abs(flat["cold"] - 15.0) <= 5.0
    assert flat["main"] == 0.0


def test_go_pprof_sample_index_count_uses_sample_counts(tmp_path):
    path = make_profile().save(tmp_path / "cpu.pb.gz")
    rows = _top_rows(_pprof(tmp_path, "-top", "-sample_index=samples", path))
    assert rows[0][1] == "hot"
    assert abs(rows[0][0] - 100.0 * 35 / 55) <= 1.0


def test_go_pprof_tags_show_threads(tmp_path):
    path = make_profile().save(tmp_path / "cpu.pb.gz")
    out = _pprof(tmp_path, "-tags", path)
    assert re.search(r"^\s*thread_id:", out, re.MULTILINE)
    assert re.search(r"^\s*thread_name:", out, re.MULTILINE)
    # weights: MainThread 50, worker-1 35, the unnamed thread 15 (of 100)
    assert re.search(r"\(\s*50(\.00)?%\):\s+101\s*$", out, re.MULTILINE), out
    assert re.search(r"\(\s*35(\.00)?%\):\s+202\s*$", out, re.MULTILINE), out
    assert re.search(rf"\(\s*15(\.00)?%\):\s+{BIG_TID}\s*$", out, re.MULTILINE), out
    assert re.search(r":\s+MainThread\s*$", out, re.MULTILINE), out
    assert re.search(r":\s+worker-1\s*$", out, re.MULTILINE), out


def test_go_pprof_reads_merged_profile(tmp_path):
    path = make_profile().save(tmp_path / "merged.pb.gz", merge_threads=True)
    rows = _top_rows(_pprof(tmp_path, "-top", path))
    assert rows[0][1] == "hot" and abs(rows[0][0] - 70.0) <= 5.0
    assert "thread_" not in _pprof(tmp_path, "-tags", path)


def test_go_pprof_traces_are_leaf_first(tmp_path):
    path = make_profile().save(tmp_path / "cpu.pb.gz")
    out = _pprof(tmp_path, "-traces", path)
    # -traces prints each stack leaf first; helper -> hot@14 must read
    # "hot" then "helper" then "main"
    blocks = [b for b in out.split("-----------+") if "helper" in b and "hot" in b]
    assert blocks, out
    names = [line.split()[-1] for line in blocks[0].splitlines() if line.strip()]
    names = [n for n in names if n in {"hot", "helper", "main"}]
    assert names == ["hot", "helper", "main"], blocks[0]


# Names CPython and spprof put in angle brackets: code objects without a
# proper name, module-level code as spprof names it, and the frames the
# sampler itself adds.
ANGLE_BRACKET_NAMES = [
    "<module> pkg.mod",
    "<module>",
    "<lambda>",
    "<listcomp>",
    "<genexpr>",
    "<dictcomp>",
    "<gc>",
    "<unknown>",
    "<truncated>",
    "<subinterpreter>",
    pprof_writer.NO_FRAMES,
]


def test_go_pprof_top_shows_angle_bracket_names_as_written(tmp_path):
    # pprof treats a name with <...> as a demangled C++ name and cuts the
    # bracketed part unless the file marks the name as final.
    samples = []
    for i, name in enumerate(ANGLE_BRACKET_NAMES):
        frames = (Frame(name, f"/app/m{i}.py", i + 1),) if name != pprof_writer.NO_FRAMES else ()
        samples.append(Sample(i, 1, "MainThread", frames, i + 1))
    path = Profile(START, END, INTERVAL_MS, samples).save(tmp_path / "angles.pb.gz")
    out = _pprof(tmp_path, "-top", path)
    assert "[[python]]" not in out, out
    rows = {name: pct for pct, name in _top_rows(out)}
    assert set(rows) == set(ANGLE_BRACKET_NAMES), out
    # each name kept its own samples (none were folded together)
    total = sum(range(1, len(ANGLE_BRACKET_NAMES) + 1))
    for i, name in enumerate(ANGLE_BRACKET_NAMES):
        assert abs(rows[name] - 100.0 * (i + 1) / total) < 0.1, (name, out)


MODULE_LEVEL_SPIN = """\
import time
end = time.thread_time() + {seconds}
while time.thread_time() < end:
    pass
"""


def test_go_pprof_top_names_module_level_code_after_its_module(tmp_path):
    # A real profile through the command line: the script and a module of
    # a package both burn CPU at module level.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "work.py").write_text(MODULE_LEVEL_SPIN.format(seconds=0.3))
    (tmp_path / "main.py").write_text("import pkg.work\n" + MODULE_LEVEL_SPIN.format(seconds=0.3))
    proc = subprocess.run(
        [sys.executable, "-m", "spprof", "run", "-q", "-o", "cpu.pb.gz", "main.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        **child_kwargs(),
    )
    assert proc.returncode == 0, proc.stderr
    out = _pprof(tmp_path, "-top", str(tmp_path / "cpu.pb.gz"))
    assert "[[python]]" not in out, out
    flat = {name: pct for pct, name in _top_rows(out)}
    assert flat.get("<module> main", 0) > 25.0, out
    assert flat.get("<module> pkg.work", 0) > 25.0, out


def test_wall_mode_sample_type_and_state_labels():
    """A wall-mode profile: the sample type is wall time, and every sample
    says its state (idle ones end in <idle>, GIL waits in <waiting for the
    GIL>, collections have <gc>); a CPU profile has no state label (every
    sample is on CPU)."""
    gc = Frame("<gc>", "", 0)
    samples = (
        [Sample(1, 101, "MainThread", (MAIN, HOT10), 3, "cpu")]
        + [Sample(2, 101, "MainThread", (MAIN, COLD), 5, "idle")]
        + [Sample(3, 202, "worker-1", (MAIN, HELPER), 2, "gil")]
        + [Sample(4, 202, "worker-1", (MAIN, gc), 1, "gc")]
    )
    prof = Profile(START, END, INTERVAL_MS, samples)
    assert prof.mode == "wall"
    doc = _decoded(prof)
    st, frame, labels = _resolve(doc)
    assert [(st[t["type"]], st[t["unit"]]) for t in doc["sample_type"]] == [
        ("samples", "count"), ("wall", "nanoseconds")]
    assert st[doc["default_sample_type"]] == "wall"
    got = sorted(
        (labels(s)["state"], frame(s["location_id"][0])[0], s["value"][1] // INTERVAL_NS)
        for s in doc["sample"])
    assert got == [("cpu", "hot", 3), ("gc", "<gc>", 1), ("gil", "<waiting for the GIL>", 2),
                   ("idle", "<idle>", 5)]
    cpu_doc = _decoded(make_profile())
    cst, _, clabels = _resolve(cpu_doc)
    assert cst[cpu_doc["default_sample_type"]] == "cpu"
    assert not any("state" in clabels(s) for s in cpu_doc["sample"])
