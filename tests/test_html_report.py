"""The HTML report: what the file contains, and how the page behaves in a
real (headless Chromium) browser.

The browser tests need the Debian packages ``chromium`` and
``chromium-driver`` and the PyPI package ``selenium``. Without them they are
skipped, unless ``SPPROF_REQUIRE_TOOLS=1`` asks for them to fail instead.
"""

from __future__ import annotations

import html as html_mod
import json
import os
import re
import shutil
import time
from array import array
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spprof._model import Frame, Profile, Sample
from spprof.writers import format_for_path, get_writer
from spprof.writers import html as html_writer

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "build" / "artifacts"
T0 = datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)

EVIL_NAME = '<lambda></script><img src=x onerror="window.pwned=1"><!--'

# ---------------------------------------------------------------------------
# hand-made profiles


def fr(name: str, file: str, line: int, native: bool = False) -> Frame:
    return Frame(name, file, line, native)


def samples_for(tid: int, tname: str | None, frames, count: int, weight: int, t_ns: list[int]):
    """``count`` samples of one stack whose weights add up to ``weight``
    (some samples carry a timer overrun, as the native sampler reports)."""
    assert weight >= count
    extra = weight - count
    out = []
    for i in range(count):
        w = 1 + extra // count + (1 if i < extra % count else 0)
        t_ns[0] += 1_000_000
        out.append(Sample(t_ns[0], tid, tname, tuple(frames), w))
    return out


def build_profile(spec, *, interval_ms: float = 10.0, dropped: int = 0, seconds: float = 12.5) -> Profile:
    """``spec``: list of (tid, thread name, frames root first, count, weight)."""
    t_ns = [0]
    samples = []
    for tid, tname, frames, count, weight in spec:
        samples.extend(samples_for(tid, tname, frames, count, weight, t_ns))
    return Profile(
        T0,
        T0 + timedelta(seconds=seconds),
        interval_ms,
        samples,
        dropped_count=dropped,
        python_version="3.11.9",
        platform="Linux-6.1-x86_64",
    )


MAIN, WORKER = 1001, 1002
main_ = fr("main", "app.py", 10)
serve = fr("serve", "app.py", 55)
handle = fr("handle_request", "app.py", 80)
render_page = fr("render_page", "views.py", 30)
hot = fr("compute_scores", "scoring.py", 42)
math_helper = fr("math_helper", "scoring.py", 90)
parse_json = fr("parse_json", "json/decoder.py", 337)
scanstring = fr("scanstring", "<built-in>", 0, native=True)
db_query = fr("db_query", "db.py", 120)
recv = fr("socket.recv", "<built-in>", 0, native=True)
setup = fr("setup", "app.py", 20)
load_config = fr("load_config", "config.py", 11)
worker_main = fr("worker_main", "worker.py", 5)
poll = fr("poll_queue", "worker.py", 30)
io_wait = fr("io_wait", "worker.py", 77)
process_item = fr("process_item", "worker.py", 50)
evil = fr(EVIL_NAME, "evil.py", 1)

# Total weight 1000; compute_scores under render_page carries 480 + 60 + 50
# = 590 of it (59%), handle_request 770.
DEMO_SPEC = [
    (MAIN, "MainThread", [main_, serve, handle, render_page, hot], 400, 480),
    (MAIN, "MainThread", [main_, serve, handle, render_page, hot, math_helper], 60, 60),
    (MAIN, "MainThread", [main_, serve, handle, render_page, hot, hot], 50, 50),
    (MAIN, "MainThread", [main_, serve, handle, parse_json, scanstring], 90, 90),
    (MAIN, "MainThread", [main_, serve, handle, db_query, recv], 70, 70),
    (MAIN, "MainThread", [main_, serve, handle], 20, 20),
    (MAIN, "MainThread", [main_, setup, load_config], 30, 30),
    (WORKER, "worker-1", [worker_main, poll, io_wait], 140, 140),
    (WORKER, "worker-1", [worker_main, process_item, hot], 50, 50),
    (WORKER, "worker-1", [worker_main, evil], 10, 10),
]


def demo_profile() -> Profile:
    return build_profile(DEMO_SPEC, dropped=3)


def empty_profile() -> Profile:
    return Profile(T0, T0 + timedelta(seconds=1), 10.0, [], python_version="3.11.9", platform="linux")


def single_thread_profile() -> Profile:
    return build_profile(
        [
            (7, "MainThread", [main_, hot], 30, 30),
            (7, "MainThread", [main_, setup], 10, 10),
        ]
    )


def big_profile(n_samples: int = 1_000_000, n_stacks: int = 5000) -> Profile:
    """Many unique stacks with little shared structure: a pessimistic case for
    the embedded data's size and the page's drawing time."""
    funcs = [fr(f"function_{i}", f"/srv/app/pkg/module_{i % 50}.py", 10 + i) for i in range(700)]
    stacks = []
    for s in range(n_stacks):
        depth = 4 + (s * 7) % 30
        tail = [funcs[5 + (s * 31 + k * 17 + k * k * s) % 695] for k in range(depth)]
        stacks.append(tuple([funcs[0], funcs[1 + s % 4], *tail]))
    # A skewed stack popularity, like a real profile; every stack is used.
    idx = array("q", ((i * 2654435761) % (n_stacks * 4) for i in range(n_samples)))
    idx = array("q", (v if v < n_stacks else (v % 97) for v in idx))
    return Profile.from_columns(
        start_time=T0,
        end_time=T0 + timedelta(seconds=100),
        interval_ms=1.0,
        stacks=stacks,
        timestamps_ns=array("q", range(0, n_samples * 1000, 1000)),
        thread_ids=array("q", (1 + i % 4 for i in range(n_samples))),
        stack_indices=idx,
        weights=array("q", [1]) * n_samples,
        thread_names={1: "MainThread", 2: "worker-1", 3: None, 4: "io"},
        python_version="3.11.9",
        platform="linux",
    )


# A server's profile: 300 request threads (2 intervals each, 600 in all), the
# main thread (250) and three pool workers (30 each, 90): 940 intervals.
REQUEST_GROUP = "Thread-* (process_request_thread)"
POOL_GROUP = "ThreadPoolExecutor-*_*"
POOL_MAIN = 1
serve_forever = fr("serve_forever", "socketserver.py", 230)
process_request = fr("process_request_thread", "socketserver.py", 690)
handle_get = fr("do_GET", "server.py", 40)
event_loop = fr("event_loop", "app.py", 12)
pool_worker = fr("_worker", "concurrent/futures/thread.py", 83)
run_job = fr("run_job", "jobs.py", 9)


def server_profile() -> Profile:
    spec = [(POOL_MAIN, "MainThread", [main_, event_loop], 200, 250)]
    for n in range(300):
        spec.append((5000 + n, f"Thread-{n + 2} (process_request_thread)", [process_request, handle_get], 2, 2))
    for n in range(3):
        spec.append((9000 + n, f"ThreadPoolExecutor-0_{n}", [pool_worker, run_job], 30, 30))
    return build_profile(spec)


# ``dispatch`` calls ``helper`` from three of its lines: 50%, 30% and 20%
# of the 100 intervals.
dispatch_28, dispatch_31, dispatch_40 = (fr("dispatch", "app.py", ln) for ln in (28, 31, 40))
helper = fr("helper", "util.py", 5)


def three_lines_profile() -> Profile:
    return build_profile([
        (1, "MainThread", [main_, dispatch_28, helper], 50, 50),
        (1, "MainThread", [main_, dispatch_31, helper], 30, 30),
        (1, "MainThread", [main_, dispatch_40, helper], 20, 20),
    ])


gc_frame = fr("<gc>", "", 0)
no_python = fr("<no Python frame>", "", 0)
lambda_frame = fr("<lambda>", "app.py", 77)


def gc_profile() -> Profile:
    return build_profile([
        (1, "MainThread", [main_, gc_frame], 40, 40),
        (1, "MainThread", [no_python], 30, 30),
        (1, "MainThread", [main_, lambda_frame], 30, 30),
    ])


# ---------------------------------------------------------------------------
# reading the file back


def render(profile: Profile, **options) -> str:
    return get_writer("html").render(profile, **options).decode("utf-8")


def embedded_data(page: str) -> dict:
    m = re.search(r'<script id="spprof-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "no embedded data block"
    return json.loads(m.group(1))


def stacks_from_data(data: dict) -> dict[tuple[int, tuple[Frame, ...]], tuple[int, int]]:
    """{(tid, frames): (count, weight)} rebuilt from the embedded data."""
    strings, frames = data["strings"], data["frames"]
    nodes = html_writer.decode_trie(data["trie"])

    def frame(i: int) -> Frame:
        n, f, line, native = frames[4 * i : 4 * i + 4]
        return Frame(strings[n], strings[f], line, bool(native))

    def path(node: int) -> tuple[Frame, ...]:
        out = []
        while node:
            parent, fi = nodes[node - 1]
            out.append(frame(fi))
            node = parent
        return tuple(reversed(out))

    result = {}
    for th in data["threads"]:
        for node, (weight, count) in html_writer.decode_leaves(th["leaves"]).items():
            result[(th["tid"], path(node))] = (count, weight)
    return result


# ---------------------------------------------------------------------------
# the file itself


def test_writer_is_registered():
    writer = get_writer("html")
    assert writer.name == "html"
    assert writer.extension == ".html"
    assert format_for_path("out/report.html") == "html"
    assert isinstance(demo_profile().render("html"), bytes)


def test_single_self_contained_file_with_csp():
    page = render(demo_profile())
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert csp, "no CSP meta"
    policy = html_mod.unescape(csp.group(1))
    assert "default-src 'none'" in policy
    assert "script-src 'unsafe-inline'" in policy
    assert "connect-src" not in policy  # so default-src 'none' governs fetch/XHR
    # The CSP must come before anything that could load.
    assert page.index("Content-Security-Policy") < page.index("<style")
    assert "http://" not in page and "https://" not in page
    # No resource references at all, remote or local, in the markup, styles
    # and code. (The data block is JSON text holding profile strings, one of
    # which here reads like markup; it cannot become markup, see
    # test_script_end_tag_in_names_cannot_break_out.)
    shell = re.sub(r'<script id="spprof-data"[^>]*>.*?</script>', "", page, flags=re.S)
    assert not re.search(r"<(?:link|iframe|object|embed|img|base|form)\b", shell, re.I)
    assert not re.search(r"<script[^>]*\ssrc\s*=", shell, re.I)
    assert not re.search(r"\b(?:src|href|action|srcset|poster)\s*=", shell, re.I)
    assert "@import" not in shell and "url(" not in shell
    # nor protocol-relative ones ("//host/x"); scripts are left out because
    # their comments start with "//".
    assert "//" not in re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)


def test_embedded_data_matches_the_profile():
    profile = demo_profile()
    data = embedded_data(render(profile))
    assert data["total_weight"] == profile.total_weight == 1000
    assert data["total_samples"] == profile.sample_count == 920
    assert data["interval_ms"] == 10.0
    by_tid = {t["tid"]: t for t in data["threads"]}
    assert set(by_tid) == {MAIN, WORKER}
    assert by_tid[MAIN]["name"] == "MainThread" and by_tid[WORKER]["name"] == "worker-1"
    assert by_tid[MAIN]["weight"] == 800 and by_tid[WORKER]["weight"] == 200
    expected = {(s.thread_id, s.frames): (s.count, s.weight) for s in profile.aggregate().stacks}
    assert stacks_from_data(data) == expected
    # compute_scores is one frame in the string table, shared by both threads
    assert data["strings"].count("compute_scores") == 1


def test_header_shows_the_facts():
    page = render(demo_profile())

    def fact(name: str) -> str:
        m = re.search(rf'<dd data-fact="{name}">([^<]*)</dd>', page)
        assert m, name
        return html_mod.unescape(m.group(1))

    assert fact("Duration") == "12.5 s"
    assert fact("Samples") == "920"
    assert fact("CPU time") == "10.0 s"
    assert fact("Threads") == "2"
    assert fact("Interval") == "10 ms"
    assert fact("Dropped") == "3"
    assert fact("Python") == "3.11.9"
    assert fact("Platform") == "Linux-6.1-x86_64"
    assert fact("Effective rate") == f"{920 / 10.0:.1f} Hz"


def test_script_end_tag_in_names_cannot_break_out():
    page = render(demo_profile())
    # Exactly the two script elements of the template close.
    assert page.count("</script") == 2
    assert EVIL_NAME not in page
    assert "<img" not in page and "<!--" not in page
    data = embedded_data(page)
    assert EVIL_NAME in data["strings"]


def test_header_text_is_escaped():
    p = demo_profile()
    p.platform = "<b>linux</b>"
    page = render(p)
    assert "<b>linux</b>" not in page
    assert "&lt;b&gt;linux&lt;/b&gt;" in page


def test_unencodable_and_non_ascii_names():
    p = build_profile([(1, "MainThread", [fr("caf\u00e9_\u4e2d", "b\udcffad.py", 3)], 2, 2)])
    page = render(p)  # lone surrogates must not make encoding fail
    data = embedded_data(page)
    assert "caf\u00e9_\u4e2d" in data["strings"]


def test_empty_profile():
    p = empty_profile()
    page = render(p)
    data = embedded_data(page)
    assert data["threads"] == [] and data["trie"] == [] and data["total_weight"] == 0
    assert "No samples" in page


def test_stack_without_python_frames_is_counted():
    p = build_profile([(1, "MainThread", [], 5, 5), (1, "MainThread", [main_], 5, 5)])
    data = embedded_data(render(p))
    got = stacks_from_data(data)
    assert sum(w for _, w in got.values()) == 10
    assert html_writer.NO_FRAMES_LABEL in data["strings"]


def test_render_is_deterministic():
    p = demo_profile()
    assert render(p) == render(demo_profile())


def test_big_profile_is_fast_and_small(tmp_path):
    p = big_profile()
    assert p.sample_count == 1_000_000 and len(p.stacks) == 5000
    t = time.perf_counter()
    out = p.render("html")
    elapsed = time.perf_counter() - t
    print(f"1M samples / 5000 stacks: rendered in {elapsed:.2f} s, {len(out) / 1024:.0f} KiB")
    assert elapsed < 5.0
    assert len(out) < 3 * 1024 * 1024
    data = embedded_data(out.decode("utf-8"))
    assert data["total_weight"] == p.total_weight
    assert sum(t["samples"] for t in data["threads"]) == 1_000_000


def tracks_of(data: dict) -> list[tuple[str, list[int], int]]:
    """The embedded tracks as (name, thread ids, weight)."""
    return [(g["name"], [data["threads"][i]["tid"] for i in g["threads"]], g["weight"]) for g in data["tracks"]]


def test_tracks_are_thread_groups_in_cpu_order():
    data = embedded_data(render(server_profile()))
    assert data["thread_view"] == "auto"
    assert len(data["threads"]) == 304 and data["total_weight"] == 940
    assert tracks_of(data) == [
        (REQUEST_GROUP, list(range(5000, 5300)), 600),
        ("MainThread", [POOL_MAIN], 250),
        (POOL_GROUP, [9000, 9001, 9002], 90),
    ]
    # Every thread is in exactly one track, and the weights add up.
    assert sorted(i for g in data["tracks"] for i in g["threads"]) == list(range(304))
    assert sum(g["weight"] for g in data["tracks"]) == data["total_weight"]


def test_few_threads_are_tracks_of_their_own_costliest_first():
    data = embedded_data(render(demo_profile()))
    assert tracks_of(data) == [("MainThread", [MAIN], 800), ("worker-1", [WORKER], 200)]
    # Sorted by CPU, not by thread id.
    p = build_profile([(1, "light", [main_], 1, 1), (2, "heavy", [main_], 5, 5), (3, None, [main_], 3, 3)])
    assert tracks_of(embedded_data(render(p))) == [("heavy", [2], 5), ("<unnamed>", [3], 3), ("light", [1], 1)]


def test_threads_option_threads_merged_and_invalid():
    p = server_profile()
    per_thread = embedded_data(render(p, threads="threads"))
    assert per_thread["thread_view"] == "threads"
    tracks = tracks_of(per_thread)
    assert len(tracks) == 304
    assert all(len(tids) == 1 for _, tids, _ in tracks)
    assert tracks[0] == ("MainThread", [POOL_MAIN], 250)
    assert [w for _, _, w in tracks] == sorted((w for _, _, w in tracks), reverse=True)
    assert {tids[0] for _, tids, _ in tracks} == {t["tid"] for t in per_thread["threads"]}
    assert ("Thread-2 (process_request_thread)", [5000], 2) in tracks

    grouped = embedded_data(render(build_profile(DEMO_SPEC), threads="groups"))
    assert [name for name, _, _ in tracks_of(grouped)] == ["MainThread", "worker-1"]

    merged = embedded_data(render(p, threads="merged"))
    assert merged["tracks"] == []
    # The per-thread data (the merged view's input) is still there.
    assert len(merged["threads"]) == 304 and merged["total_weight"] == 940

    with pytest.raises(ValueError) as info:
        p.render("html", threads="per-thread")
    for allowed in ("auto", "groups", "threads", "merged"):
        assert allowed in str(info.value)
    assert "per-thread" in str(info.value)


def test_merge_threads_is_accepted_and_threads_decides():
    p = server_profile()
    assert render(p, merge_threads=True) == render(p) == render(p, merge_threads=False)
    assert embedded_data(render(p, merge_threads=False, threads="merged"))["tracks"] == []
    assert len(embedded_data(render(p, merge_threads=True, threads="threads"))["tracks"]) == 304


# ---------------------------------------------------------------------------
# in the browser

TOOLS_HINT = (
    "the HTML report browser tests need headless Chromium and its driver "
    "(Debian packages: chromium chromium-driver) and the PyPI package selenium"
)


def _unavailable(reason: str):
    msg = f"{reason}; {TOOLS_HINT}"
    if os.environ.get("SPPROF_REQUIRE_TOOLS") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _find_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def driver():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    driver_path = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.isfile("/usr/bin/chromedriver") else None
    )
    browser = _find_browser()
    if not driver_path:
        _unavailable("chromedriver was not found")
    if not browser:
        _unavailable("chromium was not found")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--hide-scrollbars"):
        options.add_argument(arg)
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver path keeps Selenium Manager (which downloads
    # drivers) out of the picture.
    try:
        drv = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - any start-up failure means "no browser"
        _unavailable(f"could not start headless Chromium: {exc}")
    try:
        yield drv
    finally:
        drv.quit()


def open_report(driver, profile: Profile, path: Path, **options) -> None:
    path.write_bytes(profile.render("html", **options))
    driver.get_log("performance")  # drop entries from earlier pages
    driver.get_log("browser")
    driver.get(path.resolve().as_uri())
    wait_for(driver, "return document.body.dataset.ready === '1'")


def wait_for(driver, script: str, *args, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = driver.execute_script(script, *args)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.05)


def frames_named(driver, name: str) -> list[dict]:
    """Drawn frames with that function name: their geometry and classes,
    widths as a share of the flame graph's width, widest first."""
    return driver.execute_script(
        """
        var name = arguments[0], flame = document.getElementById('flame');
        var W = flame.getBoundingClientRect().width, out = [];
        flame.querySelectorAll('.f').forEach(function (el) {
          if (el.dataset.name !== name) return;
          var r = el.getBoundingClientRect();
          out.push({share: r.width / W, cls: el.className, node: el.dataset.node, loc: el.dataset.loc});
        });
        out.sort(function (a, b) { return b.share - a.share; });
        return out;
        """,
        name,
    )


def drawn_names(driver) -> set[str]:
    return set(driver.execute_script(
        "return Array.from(document.querySelectorAll('#flame .f[data-name]')).map(function (e) { return e.dataset.name; })"
    ))


def network_requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def severe_console(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def table_rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#func-table tbody tr')).map(function (tr) {"
        " return Array.from(tr.cells).map(function (c) { return c.textContent.replace(/[\\u2068\\u2069]/g, ''); }); })"
    )


def pct(text: str) -> float:
    return float(text.rstrip("%"))


def test_browser_interactions(driver, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    profile = demo_profile()
    open_report(driver, profile, tmp_path / "report.html")

    # The hot function's widest frame is as wide as its weight share.
    hot_frames = frames_named(driver, "compute_scores")
    assert hot_frames, "no flame-graph element for compute_scores"
    assert hot_frames[0]["share"] == pytest.approx(590 / 1000, abs=0.01)
    assert hot_frames[0]["loc"] == "scoring.py:42"
    assert frames_named(driver, "main")[0]["share"] == pytest.approx(0.8, abs=0.01)
    assert {"main", "worker_main", "handle_request", "io_wait", "scanstring"} <= drawn_names(driver)
    assert "native" in frames_named(driver, "scanstring")[0]["cls"]
    assert driver.execute_script("return window.pwned") is None

    # Function table: hot function first by self time; matches FunctionStats.
    rows = table_rows(driver)
    assert rows[0][0] == "compute_scores" and rows[0][1] == "scoring.py:42"
    stats = {s.function_name: s for s in profile.aggregate().merged().function_stats()}
    for name, loc, _self_ms, self_pct, _total_ms, total_pct in rows:
        s = stats[name]
        assert loc == (f"{s.filename}:{s.lineno}")
        assert pct(self_pct) == pytest.approx(100 * s.self_weight / 1000, abs=0.01)
        assert pct(total_pct) == pytest.approx(100 * s.total_weight / 1000, abs=0.01)

    # Hover: tooltip with function, file:line, samples, CPU time and percent.
    target = driver.find_element(By.CSS_SELECTOR, f'#flame .f[data-node="{hot_frames[0]["node"]}"]')
    ActionChains(driver).move_to_element(target).perform()
    tip = driver.find_element(By.ID, "tooltip")
    wait_for(driver, "return !document.getElementById('tooltip').hidden")
    text = tip.text
    assert "compute_scores" in text and "scoring.py:42" in text
    assert "Samples: 510" in text  # 400 + 60 + 50 samples, 590 intervals
    assert "5.90 s" in text and "59.0%" in text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "html_report.png"))
    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
    wait_for(driver, "return document.getElementById('tooltip').hidden")

    driver.find_element(By.XPATH, "//th[text()='Total %']").click()
    assert table_rows(driver)[0][0] == "main"

    # Search highlights matching frames only, and reports the matched share.
    search = driver.find_element(By.ID, "search")
    search.send_keys("db_query")
    wait_for(driver, "return document.querySelectorAll('#flame .f.match').length > 0")
    assert all("match" in f["cls"] for f in frames_named(driver, "db_query"))
    assert not any("match" in f["cls"] for f in frames_named(driver, "compute_scores"))
    assert not any("match" in f["cls"] for f in frames_named(driver, "main"))
    assert "7.00%" in driver.find_element(By.ID, "match-info").text
    search.clear()
    search.send_keys("scoring.py")  # file names match too
    wait_for(driver, "return document.getElementById('match-info').textContent.indexOf('64.0%') >= 0")
    search.clear()
    search.send_keys("x")
    search.send_keys("\b")
    wait_for(driver, "return document.querySelectorAll('#flame .f.match').length === 0")

    # Click a non-root frame: it fills the width; reset goes back.
    handle_el = driver.find_element(By.CSS_SELECTOR, '#flame .f[data-name="handle_request"]')
    handle_el.click()
    wait_for(driver, "return !document.getElementById('reset-zoom').disabled")
    assert frames_named(driver, "handle_request")[0]["share"] > 0.98
    assert frames_named(driver, "compute_scores")[0]["share"] == pytest.approx(590 / 770, abs=0.01)
    assert "io_wait" not in drawn_names(driver)  # outside the zoomed frame
    crumbs = driver.find_element(By.ID, "breadcrumb").text
    assert "handle_request" in crumbs and "serve" in crumbs
    driver.find_element(By.ID, "reset-zoom").click()
    wait_for(driver, "return document.getElementById('reset-zoom').disabled")
    assert frames_named(driver, "handle_request")[0]["share"] == pytest.approx(0.77, abs=0.01)

    # Thread selector: the worker's graph has only the worker's functions.
    select = Select(driver.find_element(By.ID, "thread-select"))
    labels = [o.text for o in select.options]
    assert labels[0] == "All threads"
    assert any("MainThread" in t and str(MAIN) in t for t in labels)
    assert any("worker-1" in t and str(WORKER) in t for t in labels)
    select.select_by_index([i for i, t in enumerate(labels) if "worker-1" in t][0])
    wait_for(driver, "return !!document.querySelector('#flame .f[data-name=\"io_wait\"]') && "
                     "!document.querySelector('#flame .f[data-name=\"handle_request\"]')")
    names = drawn_names(driver)
    assert {"worker_main", "poll_queue", "io_wait", "process_item", "compute_scores", EVIL_NAME} <= names
    assert not names & {"main", "serve", "handle_request", "render_page", "db_query"}
    # Now shares are of the worker's 200 intervals.
    assert frames_named(driver, "io_wait")[0]["share"] == pytest.approx(140 / 200, abs=0.01)
    # The table follows the thread, keeping the chosen sort (total).
    assert table_rows(driver)[0][0] == "worker_main"
    driver.find_element(By.XPATH, "//th[text()='Self %']").click()
    assert table_rows(driver)[0][0] == "io_wait"
    # The hostile name is text, not markup.
    assert driver.execute_script("return window.pwned") is None
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0

    # Nothing was fetched: no resource entries, no network requests other
    # than the file itself, and no CSP violations or script errors.
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    remote = [u for u in network_requests(driver) if not u.startswith(("file:", "data:"))]
    assert remote == []
    assert severe_console(driver) == []


def test_browser_csp_blocks_network(driver, tmp_path):
    """The CSP is in force: a load injected into the page is refused."""
    open_report(driver, single_thread_profile(), tmp_path / "one.html")
    blocked = driver.execute_async_script(
        """
        var done = arguments[arguments.length - 1];
        document.addEventListener('securitypolicyviolation', function (e) { done(e.violatedDirective); });
        var img = document.createElement('img');
        img.src = 'http://127.0.0.1:9/x.png';
        document.body.appendChild(img);
        setTimeout(function () { done(null); }, 3000);
        """
    )
    assert blocked in ("img-src", "default-src")


def test_browser_single_thread(driver, tmp_path):
    open_report(driver, single_thread_profile(), tmp_path / "single.html")
    options = driver.execute_script(
        "return Array.from(document.querySelectorAll('#thread-select option')).map(function (o) { return o.textContent; })"
    )
    assert len(options) == 2 and "MainThread (tid 7)" in options[1]
    assert frames_named(driver, "compute_scores")[0]["share"] == pytest.approx(0.75, abs=0.01)
    driver.execute_script(
        "var s = document.getElementById('thread-select'); s.value = '1'; s.dispatchEvent(new Event('change'));"
    )
    assert frames_named(driver, "compute_scores")[0]["share"] == pytest.approx(0.75, abs=0.01)
    assert severe_console(driver) == []


def test_browser_empty_profile(driver, tmp_path):
    open_report(driver, empty_profile(), tmp_path / "empty.html")
    assert driver.execute_script("return document.getElementById('empty').hidden") is False
    assert "No samples" in driver.execute_script("return document.getElementById('empty').textContent")
    assert driver.execute_script("return document.querySelectorAll('#flame .f').length") == 0
    assert severe_console(driver) == []


def test_browser_big_profile_draws_quickly(driver, tmp_path):
    p = big_profile()
    path = tmp_path / "big.html"
    path.write_bytes(p.render("html"))
    driver.get_log("performance")
    t = time.perf_counter()
    driver.get(path.resolve().as_uri())
    wait_for(driver, "return document.body.dataset.ready === '1'")
    # Force layout so the time includes placing the frames, not just the script.
    drawn = driver.execute_script("document.body.offsetHeight; return document.querySelectorAll('#flame .f').length")
    elapsed = time.perf_counter() - t
    print(f"5000-stack report drawn in {elapsed:.2f} s ({drawn} frame elements)")
    assert drawn > 100
    # About a second on a desktop; generous here so that a loaded CI machine
    # does not make the test flaky.
    assert elapsed < 8.0
    assert severe_console(driver) == []


def option_texts(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#thread-select option')).map(function (o) { return o.textContent; })"
    )


def choose_view(driver, index: int) -> None:
    """Pick the selector's ``index``-th entry, as a user would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "thread-select")).select_by_index(index)


def type_into(driver, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, element_id)
    box.clear()
    if text:
        box.send_keys(text)
    else:  # clear() fires no input event
        box.send_keys("x", "\b")


def root_label(driver) -> str:
    return driver.execute_script("return document.querySelector('#flame .f.root').textContent")


def hover_tooltip(driver, node: str) -> list[str]:
    """The tooltip's lines while the mouse is over flame-graph node ``node``."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
    wait_for(driver, "return document.getElementById('tooltip').hidden")
    el = driver.find_element(By.CSS_SELECTOR, f'#flame .f[data-node="{node}"]')
    ActionChains(driver).move_to_element(el).perform()
    wait_for(driver, "return !document.getElementById('tooltip').hidden")
    return driver.execute_script(
        "return Array.from(document.getElementById('tooltip').children).map(function (d) {"
        " return [d.className, d.textContent]; })"
    )


def test_browser_thread_groups(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_report(driver, server_profile(), tmp_path / "server.html")
    options = option_texts(driver)
    # 304 threads, but one entry for all, then one per group, costliest first.
    assert len(options) < 20
    assert options == [
        "All threads",
        f"{REQUEST_GROUP} (300 threads) \u2014 63.8%",
        f"MainThread (tid {POOL_MAIN}) \u2014 26.6%",
        f"{POOL_GROUP} (3 threads) \u2014 9.57%",
    ]
    assert driver.execute_script("return document.getElementById('thread-select').value") == "0"
    all_names = drawn_names(driver)
    assert {"main", "event_loop", "process_request_thread", "do_GET", "_worker", "run_job"} <= all_names
    assert "304 threads" in driver.find_element(By.ID, "view-info").text

    # The search box filters the entries (any case); "All threads" stays.
    type_into(driver, "thread-filter", "pool")
    assert option_texts(driver) == ["All threads", f"{POOL_GROUP} (3 threads) \u2014 9.57%"]
    type_into(driver, "thread-filter", "REQUEST")
    assert option_texts(driver) == ["All threads", f"{REQUEST_GROUP} (300 threads) \u2014 63.8%"]
    type_into(driver, "thread-filter", "no such thread")
    assert option_texts(driver) == ["All threads"]
    type_into(driver, "thread-filter", f"tid {POOL_MAIN}")
    assert option_texts(driver) == ["All threads", f"MainThread (tid {POOL_MAIN}) \u2014 26.6%"]
    # Enter shows the first match.
    driver.find_element(By.ID, "thread-filter").send_keys(Keys.ENTER)
    wait_for(driver, "return document.getElementById('thread-select').value === '2'")
    assert drawn_names(driver) == {"main", "event_loop"}
    type_into(driver, "thread-filter", "")
    assert len(option_texts(driver)) == 4

    # Choosing the costliest group draws only its threads' stacks, its
    # label on the root and its total.
    choose_view(driver, 1)
    wait_for(driver, "return !document.querySelector('#flame .f[data-name=\"main\"]')")
    assert drawn_names(driver) == {"process_request_thread", "do_GET"}
    assert root_label(driver) == f"{REQUEST_GROUP} (300 threads)"
    info = driver.find_element(By.ID, "view-info").text
    assert "300 threads" in info and "6.00 s" in info and "63.8%" in info
    assert frames_named(driver, "do_GET")[0]["share"] == pytest.approx(1.0, abs=0.01)
    rows = table_rows(driver)
    assert [r[0] for r in rows] == ["do_GET", "process_request_thread"]
    assert pct(rows[0][3]) == pytest.approx(100.0)

    # The filter keeps the entry being shown, whatever is typed.
    type_into(driver, "thread-filter", "pool")
    assert option_texts(driver) == ["All threads", f"{REQUEST_GROUP} (300 threads) \u2014 63.8%",
                                    f"{POOL_GROUP} (3 threads) \u2014 9.57%"]
    choose_view(driver, 2)
    wait_for(driver, "return !!document.querySelector('#flame .f[data-name=\"run_job\"]')")
    assert drawn_names(driver) == {"_worker", "run_job"}
    choose_view(driver, 0)
    wait_for(driver, "return !!document.querySelector('#flame .f[data-name=\"main\"]')")
    assert drawn_names(driver) == all_names
    assert severe_console(driver) == []


def test_browser_threads_option(driver, tmp_path):
    open_report(driver, server_profile(), tmp_path / "per-thread.html", threads="threads")
    options = option_texts(driver)
    assert len(options) == 305 and options[0] == "All threads"
    assert options[1] == f"MainThread (tid {POOL_MAIN}) \u2014 26.6%"
    assert options[2].startswith("ThreadPoolExecutor-0_0 (tid 9000)")
    assert any(o.startswith("Thread-301 (process_request_thread) (tid 5299)") for o in options)

    open_report(driver, server_profile(), tmp_path / "merged.html", threads="merged")
    assert option_texts(driver) == ["All threads"]
    assert driver.execute_script("return document.getElementById('thread-filter').offsetParent") is None
    assert {"main", "do_GET", "run_job"} <= drawn_names(driver)
    assert severe_console(driver) == []


def test_browser_one_box_per_function(driver, tmp_path):
    from selenium.webdriver.common.by import By

    open_report(driver, three_lines_profile(), tmp_path / "lines.html")
    boxes = frames_named(driver, "dispatch")
    assert len(boxes) == 1
    assert boxes[0]["share"] == pytest.approx(1.0, abs=0.01)
    assert len(frames_named(driver, "helper")) == 1
    tip = hover_tooltip(driver, boxes[0]["node"])
    assert ["tt-loc", "app.py: lines 28 (50%), 31 (30%), 40 (20%)"] in tip
    assert ["tt-name", "dispatch"] in tip
    # The table gives the function once, at its most frequent line, and the
    # lines in the location's title.
    rows = {r[0]: r for r in table_rows(driver)}
    assert rows["dispatch"][1] == "app.py:28" and pct(rows["dispatch"][5]) == pytest.approx(100.0)
    title = driver.execute_script(
        "return document.querySelector('#func-table tr[data-name=\"dispatch\"] td.loc').title")
    assert title == "app.py: lines 28 (50%), 31 (30%), 40 (20%)"

    split = driver.find_element(By.ID, "split-lines")
    split.click()
    wait_for(driver, "return document.querySelectorAll('#flame .f[data-name=\"dispatch\"]').length === 3")
    boxes = frames_named(driver, "dispatch")
    assert [b["loc"] for b in boxes] == ["app.py:28", "app.py:31", "app.py:40"]
    assert [round(b["share"], 2) for b in boxes] == [0.5, 0.3, 0.2]
    assert len(frames_named(driver, "helper")) == 3
    tip = hover_tooltip(driver, boxes[1]["node"])
    assert ["tt-loc", "app.py:31"] in tip

    # Zoomed into one line's box, merging again keeps the function in focus.
    driver.find_element(By.CSS_SELECTOR, f'#flame .f[data-node="{boxes[1]["node"]}"]').click()
    wait_for(driver, "return !document.getElementById('reset-zoom').disabled")
    split.click()
    wait_for(driver, "return document.querySelectorAll('#flame .f[data-name=\"dispatch\"]').length === 1")
    assert frames_named(driver, "dispatch")[0]["share"] == pytest.approx(1.0, abs=0.01)
    assert severe_console(driver) == []


def test_browser_only_the_sorted_column_has_an_arrow(driver, tmp_path):
    from selenium.webdriver.common.by import By

    open_report(driver, demo_profile(), tmp_path / "sort.html")
    arrows = ("return Array.from(document.querySelectorAll('#func-table th')).filter(function (th) {"
              " return getComputedStyle(th, '::after').content.indexOf('\\u25bc') >= 0 ||"
              " getComputedStyle(th, '::after').content.indexOf('\\u25b2') >= 0; }).map(function (th) {"
              " return th.textContent; })")
    assert driver.execute_script(arrows) == ["Self %"]
    driver.find_element(By.XPATH, "//th[text()='Self ms']").click()
    assert driver.execute_script(arrows) == ["Self ms"]
    assert table_rows(driver)[0][0] == "compute_scores"  # same key, same order
    driver.find_element(By.XPATH, "//th[text()='Total ms']").click()
    assert driver.execute_script(arrows) == ["Total ms"]
    assert table_rows(driver)[0][0] == "main"


def test_browser_markers_have_no_location(driver, tmp_path):
    open_report(driver, gc_profile(), tmp_path / "gc.html")
    for name in ("<gc>", "<no Python frame>"):
        boxes = frames_named(driver, name)
        assert boxes and boxes[0]["loc"] == ""
        tip = hover_tooltip(driver, boxes[0]["node"])
        assert ["tt-name", name] in tip
        assert not [text for cls, text in tip if cls == "tt-loc"]
        assert not any(":0" in text or text.endswith(" 0") for _, text in tip[:2])
    rows = {r[0]: r for r in table_rows(driver)}
    assert rows["<gc>"][1] == "" and rows["<no Python frame>"][1] == ""
    # A <lambda> is real code: it keeps its file and line.
    assert rows["<lambda>"][1] == "app.py:77"
    assert frames_named(driver, "<lambda>")[0]["loc"] == "app.py:77"
    assert severe_console(driver) == []


def wall_profile() -> Profile:
    """A wall-mode profile: 20 intervals on CPU in `work`, 60 idle in
    `wait_here` (ending in <idle>), 20 waiting for the GIL in `contend`."""
    main = Frame("<module> app", "/app/app.py", 1)
    samples = (
        [Sample(i, 7, "MainThread", (main, Frame("work", "/app/app.py", 10)), 1, "cpu")
         for i in range(20)]
        + [Sample(100 + i, 7, "MainThread", (main, Frame("wait_here", "/app/app.py", 20)), 3, "idle")
           for i in range(20)]
        + [Sample(200 + i, 8, "worker", (main, Frame("contend", "/app/app.py", 30)), 2, "gil")
           for i in range(10)]
    )
    return Profile(T0, T0 + timedelta(seconds=1), 10, samples)


def test_html_wall_mode_facts_and_data():
    page = render(wall_profile())
    data = embedded_data(page)
    assert data["mode"] == "wall"
    assert data["off_cpu_frames"] == ["<idle>", "<waiting for the GIL>"]
    for fact in ("Wall time", "On CPU", "Idle", "Waiting for the GIL"):
        assert f"<dt>{fact}</dt>" in page, fact
    assert "<dt>CPU time</dt>" not in page
    assert "<dt>CPU time</dt>" in render(single_thread_profile())


def test_browser_wall_mode_idle_toggle(driver, tmp_path):
    """Idle time is shown by default (wait_here is 60% of the width, its
    <idle> leaf too); unticking "time off CPU" redraws without it (work is
    then the whole graph), ticking it brings it back. No re-run."""
    open_report(driver, wall_profile(), tmp_path / "wall.html")
    assert driver.execute_script("return document.getElementById('idle-toggle').hidden") is False
    assert "real time" in driver.execute_script("return document.getElementById('widths').textContent")
    assert frames_named(driver, "wait_here")[0]["share"] == pytest.approx(0.6, abs=0.01)
    assert frames_named(driver, "<idle>")[0]["share"] == pytest.approx(0.6, abs=0.01)
    assert frames_named(driver, "<waiting for the GIL>")[0]["share"] == pytest.approx(0.2, abs=0.01)
    toggle = ("var b = document.getElementById('show-idle'); b.checked = arguments[0];"
              "b.dispatchEvent(new Event('change'));")
    driver.execute_script(toggle, False)
    assert frames_named(driver, "<idle>") == [] and frames_named(driver, "wait_here") == []
    assert frames_named(driver, "work")[0]["share"] == pytest.approx(1.0, abs=0.01)
    assert "on CPU" in driver.execute_script("return document.getElementById('widths').textContent")
    driver.execute_script(toggle, True)
    assert frames_named(driver, "wait_here")[0]["share"] == pytest.approx(0.6, abs=0.01)
    # A CPU profile has no such control.
    open_report(driver, single_thread_profile(), tmp_path / "cpu.html")
    assert driver.execute_script("return document.getElementById('idle-toggle').hidden") is True
    assert severe_console(driver) == []
