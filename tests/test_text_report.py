"""The terminal report: ordering, percentages, layout within the width."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from spprof import Frame, Profile, Sample
from spprof.writers import format_for_path, formats, get_writer
from spprof.writers import text as text_writer

START = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
END = START + timedelta(seconds=1, milliseconds=500)

MAIN = Frame("main", "/app/main.py", 1)
HOT10 = Frame("hot", "/app/work.py", 10)
HOT14 = Frame("hot", "/app/work.py", 14)
COLD = Frame("cold", "/app/work.py", 30)
HELPER = Frame("helper", "/app/util.py", 5)

LONG_NAME = "package.subpackage.SomeVeryLongClassName.an_extremely_long_method_name_that_never_ends"
LONG_FILE = "/usr/lib/python3.11/site-packages/vendor/deeply/nested/package/tree/module_file.py"


def _samples(n, tid, name, frames, weight):
    return [Sample(1_000 * i, tid, name, frames, weight) for i in range(n)]


def make_profile(extra=()) -> Profile:
    """Weight 100 over 55 samples, interval 5 ms: ``hot`` is the leaf for 70
    intervals (35 samples), ``helper`` 15 (5), ``cold`` 15 (15)."""
    samples = (
        _samples(20, 101, "MainThread", (MAIN, HOT10), 2)
        + _samples(10, 101, "MainThread", (MAIN, HELPER, HOT14), 1)
        + _samples(15, 202, "worker-1", (MAIN, COLD), 1)
        + _samples(5, 202, "worker-1", (MAIN, HOT10), 4)
        + _samples(5, 303, None, (MAIN, HELPER), 3)
        + list(extra)
    )
    return Profile(START, END, 5, samples, dropped_count=7)


def render(profile: Profile, **options) -> str:
    data = profile.render("text", **options)
    assert isinstance(data, bytes)
    return data.decode("utf-8")


def tables(report: str) -> dict[str, list[list[str]]]:
    """{'self': rows, 'total': rows} of the whole program's tables (those
    before the threads); a row is [self%, total%, ms, samples, function,
    location]."""
    out: dict[str, list[list[str]]] = {}
    current = None
    for line in report.splitlines():
        if line.startswith(("Threads: ", "== ")):
            break
        m = re.match(r"Top \d+ of \d+ functions by (self|total) time", line)
        if m:
            current = out.setdefault(m.group(1), [])
            continue
        if current is None or line.lstrip().startswith("self"):
            continue
        if not line.strip():
            current = None
            continue
        fixed = line.split(None, 4)
        name, loc = (re.split(r"\s{2,}", fixed[4].strip()) + [""])[:2]
        current.append(fixed[:4] + [name, loc])
    return out


def test_registered():
    assert "text" in formats()
    assert get_writer("text") is text_writer.WRITER
    assert format_for_path("report.txt") == "text"


def test_header():
    report = render(make_profile())
    head = "\n".join(report.splitlines()[:3])
    assert "1.50 s wall" in head
    assert "55 samples" in head
    assert "3 threads" in head
    assert "500.0 ms CPU" in head  # weight 100 x 5 ms
    assert "interval 5 ms (200 Hz)" in head
    assert "effective rate 110.0 Hz" in head  # 55 samples / 0.5 s of CPU
    assert "dropped 7" in head


def test_self_table_order_and_values():
    rows = tables(render(make_profile()))["self"]
    assert [r[4] for r in rows] == ["hot", "helper", "cold"]  # main has no self time
    hot, helper, cold = rows
    assert hot[:4] == ["70.0%", "70.0%", "350.0", "35"]
    assert hot[5] == "/app/work.py:10"  # the line seen most (by weight) as leaf
    assert helper[:4] == ["15.0%", "25.0%", "75.0", "5"]
    assert cold[:4] == ["15.0%", "15.0%", "75.0", "15"]
    assert helper[5] == "/app/util.py:5"


def test_total_table_order_and_values():
    rows = tables(render(make_profile()))["total"]
    assert [r[4] for r in rows] == ["main", "hot", "helper", "cold"]
    main, hot, helper, _ = rows
    assert main[:4] == ["0.0%", "100.0%", "500.0", "55"]
    assert hot[:4] == ["70.0%", "70.0%", "350.0", "35"]
    assert helper[:4] == ["15.0%", "25.0%", "125.0", "15"]


def test_percentages_are_weight_based_not_sample_based():
    rows = tables(render(make_profile()))["self"]
    pct = {r[4]: float(r[0].rstrip("%")) for r in rows}
    assert pct["hot"] == 70.0  # 35 of 55 samples would be 63.6%
    assert sum(pct.values()) == pytest.approx(100.0, abs=0.2)


def test_limit():
    t = tables(render(make_profile(), limit=1))
    assert [r[4] for r in t["self"]] == ["hot"]
    assert [r[4] for r in t["total"]] == ["main"]


def test_every_line_fits_80_columns_with_long_names():
    long = Frame(LONG_NAME, LONG_FILE, 123456)
    extra = _samples(40, 404, "a-thread-with-a-rather-long-name-" * 3, (MAIN, long), 5)
    report = render(make_profile(extra))
    lines = report.splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if "that_never_ends" in line)
    # cut from the left with an ellipsis; the identifying end stays visible
    assert "\u2026" in row
    assert LONG_NAME not in row
    assert "module_file.py:123456" in row
    assert "_never_ends" in row
    # short rows of the same table are untouched
    assert any(re.search(r"\bhot\s+/app/work.py:10$", line) for line in lines)


def test_other_widths():
    long = Frame(LONG_NAME, LONG_FILE, 7)
    profile = make_profile(_samples(3, 101, "MainThread", (MAIN, long), 1))
    for width in (70, 100, 250):
        lines = render(profile, width=width).splitlines()
        assert max(len(line) for line in lines) <= width
        assert any("module_file.py:7" in line for line in lines)
    # narrower than the fixed columns allow: still clamped to the minimum
    for width in (10, 50):
        lines = render(profile, width=width).splitlines()
        assert max(len(line) for line in lines) <= text_writer.MIN_WIDTH
    wide = render(profile, width=250)
    assert LONG_NAME in wide and LONG_FILE + ":7" in wide


def test_no_trailing_whitespace():
    for line in render(make_profile()).splitlines():
        assert line == line.rstrip()


def test_empty_profile():
    report = render(Profile(START, END, 10, []))
    assert "no samples" in report
    assert "0 samples" in report
    assert "Top" not in report
    assert max(len(line) for line in report.splitlines()) <= 80


def test_per_thread_sections():
    report = render(make_profile(), merge_threads=False)
    # the whole program first, then the threads by CPU
    assert report.index("(all threads)") < report.index("Threads: 3 threads, by CPU")
    assert "== MainThread: tid 101, 250.0 ms CPU (50.0%) ==" in report
    assert "== worker-1: tid 202, 175.0 ms CPU (35.0%) ==" in report
    assert "== <unnamed>: tid 303, 75.0 ms CPU (15.0%) ==" in report
    assert report.index("== MainThread") < report.index("== worker-1") < report.index("== <unnamed>")
    main_section = report.split("== MainThread")[1].split("== worker-1")[0]
    t = tables(main_section)
    # within MainThread: hot is all of the self time (weight 50 of 50)
    assert t["self"][0][4] == "hot" and t["self"][0][0] == "100.0%"
    assert max(len(line) for line in report.splitlines()) <= 80


def test_newlines_in_names_do_not_break_rows():
    odd = Frame("weird\nname", "/app/x.py", 3)
    report = render(Profile(START, END, 1, [Sample(0, 1, "T", (odd,), 1)]))
    assert "weird name" in report


def test_cut_helpers():
    assert text_writer.cut_left("abcdef", 10) == "abcdef"
    assert text_writer.cut_left("abcdef", 4) == "\u2026def"
    cut = text_writer.cut_path("/very/long/directory/name/file.py:12", 20)
    assert len(cut) <= 20 and cut.endswith("file.py:12") and cut.startswith("\u2026")


def test_save_infers_text(tmp_path):
    path = make_profile().save(tmp_path / "report.txt")
    with open(path, encoding="utf-8") as fh:
        assert "functions by self time" in fh.read()


def _server_profile(requests: int = 1000) -> Profile:
    """A thread-per-request server: ``requests`` short threads named as
    socketserver's, a main thread, a pool of 4 workers, a <gc> sample."""
    serve = Frame("serve_forever", "/app/server.py", 20)
    handle = Frame("handle", "/app/server.py", 40)
    samples = []
    for i in range(requests):
        name = f"Thread-{i + 1} (process_request_thread)"
        samples += [Sample(i, 10_000 + i, name, (handle, HOT10), 2),
                    Sample(i, 10_000 + i, name, (handle, COLD), 1)]
    for k in range(4):
        samples += _samples(30, 500 + k, f"ThreadPoolExecutor-0_{k}", (MAIN, HELPER), 1)
    samples += _samples(40, 1, "MainThread", (MAIN, serve), 1)
    samples += [Sample(0, 1, "MainThread", (Frame("<gc>", "", 0),), 3)]
    return Profile(START, END, 1, samples)


def test_many_threads_are_grouped_and_the_report_fits_a_terminal():
    report = render(_server_profile())
    lines = report.splitlines()
    assert len(lines) < 100, len(lines)
    # the whole program's tables come first
    assert lines[3].startswith("Top ") and "(all threads)" in lines[3]
    start = lines.index("Threads: 1005 threads in 3 groups, by CPU")
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 2 : start + 5]]
    assert [(r[-2], r[-1]) for r in rows] == [
        ("1000", "Thread-* (process_request_thread)"),
        ("4", "ThreadPoolExecutor-*_*"),
        ("1", "MainThread"),
    ]
    assert "== Thread-* (process_request_thread): 1000 threads, 3.00 s CPU (94.8%) ==" in lines


def test_thread_list_and_sections_are_capped():
    samples = []
    for i in range(40):  # 40 distinct names: 40 groups of one
        samples += _samples(1 + i, 100 + i, f"worker {chr(65 + i % 26)}{chr(65 + i // 26)}", (MAIN, HOT10), 1)
    report = render(Profile(START, END, 1, samples), threads="groups")
    assert len(report.splitlines()) < 100
    assert f"\u2026 and {40 - text_writer.TRACK_ROWS} more" in report
    assert report.count("\n== ") == text_writer.TRACK_SECTIONS
    # costliest first: the last-made thread has the most samples
    assert "== worker NB: tid 139" in report


def test_thread_views():
    prof = _server_profile(20)
    merged = render(prof, threads="merged")
    assert "Threads:" not in merged and "== " not in merged and "(all threads)" not in merged
    assert render(prof, merge_threads=True) == merged
    each = render(prof, threads="threads")
    assert "Threads: 25 threads, by CPU" in each and "Thread-* (" not in each
    # main (43 ms), the 4 workers (30 ms each), then request threads (3 ms each)
    assert each.index("== MainThread: tid 1,") < each.index("== ThreadPoolExecutor-0_0: tid 500,")
    assert "Thread-1 (process_request_thread)" in each and "\u2026 and 15 more" in each
    grouped = render(prof, threads="groups")
    assert "Threads: 25 threads in 3 groups, by CPU" in grouped
    # auto: up to 8 threads each on its own, more in groups
    assert render(make_profile()).count("\n== ") == 3 and "groups" not in render(make_profile())
    assert render(prof) == grouped
    with pytest.raises(ValueError, match="auto, groups, threads, merged"):
        render(prof, threads="each")


def test_synthetic_frames_print_no_location():
    rows = tables(render(_server_profile(5)))["self"]
    gc = [r for r in rows if r[4] == "<gc>"]
    assert gc and gc[0][5] == "", gc
