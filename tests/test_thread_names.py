"""Every thread named from its first sample, in every output; the text
report of a thread-per-request server fits a terminal; the coverage line.

Short threads end before spprof's periodic read of threading's table, so
their names are taken when they start (the thread-start hook sees the
Thread object); threads without one get the kernel's name.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from conftest import BURN_SRC, run_scenario
from spprof.writers.pprof import decode
from test_html_report import (  # noqa: F401  (driver is a fixture)
    choose_view,
    drawn_names,
    driver,
    embedded_data,
    option_texts,
    root_label,
    wait_for,
)
from test_pprof import _pprof, _resolve

SERVER_SRC = BURN_SRC + """
import http.client, http.server, os, threading, _thread, time, spprof

names = {}          # native tid -> threading name, as the thread saw it
def remember():
    names[threading.get_native_id()] = threading.current_thread().name

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        remember()
        burn(0.002)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

def per_item(i):
    remember()
    burn(0.001)

def bare():
    names[threading.get_native_id()] = None   # no Thread object: the kernel's name
    burn(0.002)

remember()
spprof.start(interval_ms=1)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, name="acceptor", daemon=True).start()
port = server.server_address[1]
for _ in range(REQUESTS):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"ok"
    conn.close()
for i in range(ITEMS):
    t = threading.Thread(target=per_item, args=(i,))
    t.start()
    t.join()
done = []
for _ in range(5):
    _thread.start_new_thread(lambda: (bare(), done.append(1)), ())
while len(done) < 5:
    time.sleep(0.01)
server.shutdown()
prof = spprof.stop()

out_dir = sys.argv[1]
paths = {fmt: os.path.join(out_dir, name) for fmt, name in
         (("pprof", "p.pb.gz"), ("speedscope", "p.speedscope.json"), ("html", "p.html"),
          ("text", "p.txt"))}
for fmt, path in paths.items():
    prof.save(path, format=fmt)
emit({
    "names": {str(t): n for t, n in names.items()},
    "samples": [[s.thread_id, s.thread_name, s.weight] for s in prof.samples],
    "paths": paths,
    "process_cpu_ms": prof.process_cpu_ms,
    "total_cpu_ms": prof.total_cpu_ms,
})
"""


@pytest.fixture(scope="module")
def server_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("server")
    from conftest import run_python, scenario_result

    code = SERVER_SRC.replace("REQUESTS", "1000").replace("ITEMS", "2000")
    return scenario_result(run_python(code, args=[str(out)], timeout=600)), out


def test_every_sample_of_a_python_thread_carries_its_name(server_run):
    res, _ = server_run
    names = {int(t): n for t, n in res["names"].items()}
    named = {t for t, n in names.items() if n}
    assert len(named) >= 3000  # 1000 request threads, 2000 per-item threads, main
    samples = res["samples"]
    mine = [s for s in samples if s[0] in named]
    # Most of those threads live ~1-2 ms: most of them have a sample or two.
    assert len({s[0] for s in mine}) >= 1500, len({s[0] for s in mine})
    wrong = [s for s in mine if s[1] != names[s[0]]]
    assert not wrong, wrong[:10]
    # Threads started without a Thread object have the kernel's name.
    bare = [s for s in samples if names.get(s[0], "") is None]
    assert bare and all(s[1] for s in bare), bare[:5]
    assert all(s[1] for s in samples), [s for s in samples if not s[1]][:5]


def test_pprof_has_thread_name_on_every_sample(server_run, tmp_path):
    res, _ = server_run
    names = {int(t): n for t, n in res["names"].items()}
    with open(res["paths"]["pprof"], "rb") as f:
        doc = decode(f.read())
    _, _, labels = _resolve(doc)
    for s in doc["sample"]:
        lab = labels(s)
        assert lab.get("thread_name"), lab
        if names.get(lab["thread_id"]):
            assert lab["thread_name"] == names[lab["thread_id"]], lab
    # Read back by the real go tool pprof: the thread_name tag covers 100%.
    out = _pprof(tmp_path, "-tags", res["paths"]["pprof"])
    section = out[out.index("thread_name:") :]
    first = re.search(r"^\s*thread_name: Total (\S+)", section, re.MULTILINE)
    thread_id_total = re.search(r"^\s*thread_id: Total (\S+)", out, re.MULTILINE)
    assert first and thread_id_total and first.group(1) == thread_id_total.group(1), out[:2000]
    assert re.search(r":\s+MainThread\s*$", out, re.MULTILINE)
    assert re.search(r":\s+Thread-\d+ \(process_request_thread\)\s*$", out, re.MULTILINE)


def test_speedscope_and_html_name_every_thread(server_run):
    res, _ = server_run
    names = {int(t): n for t, n in res["names"].items()}
    with open(res["paths"]["speedscope"]) as f:
        doc = json.load(f)
    seen = 0
    for p in doc["profiles"]:
        m = re.fullmatch(r"(.*) \(tid (\d+)\)", p["name"])
        assert m and m.group(1) and m.group(1) != "thread", p["name"]
        if names.get(int(m.group(2))):
            assert m.group(1) == names[int(m.group(2))]
            seen += 1
    assert seen >= 1500
    with open(res["paths"]["html"], encoding="utf-8") as f:
        page = f.read()
    data = embedded_data(page)
    # the coverage line in the page's header
    assert re.search(r'<dd data-fact="Coverage">profiled \S+ m?s of \S+ m?s process CPU \(\d+%\)</dd>', page)
    for th in data["threads"]:
        assert th["name"], th
        if names.get(th["tid"]):
            assert th["name"] == names[th["tid"]], th


@pytest.mark.default_python  # the browser tools are installed for the default Python
def test_html_selector_of_the_server_in_chromium(server_run, driver):
    res, _ = server_run
    path = res["paths"]["html"]
    with open(path, encoding="utf-8") as f:
        tracks = embedded_data(f.read())["tracks"]
    driver.get_log("browser")
    driver.get("file://" + path)
    wait_for(driver, "return document.body.dataset.ready === '1'")
    options = option_texts(driver)
    # ~3000 threads: "All threads", then the groups, the costliest first
    assert len(options) < 20, options
    assert options[0] == "All threads"
    costliest = max(tracks, key=lambda t: t["weight"])
    assert options[1].startswith(f"{costliest['name']} ({len(costliest['threads'])} threads)"), options
    everything = drawn_names(driver)
    choose_view(driver, 1)
    wait_for(driver, "return document.getElementById('thread-select').value === '1'")
    assert root_label(driver).startswith(costliest["name"])
    assert drawn_names(driver) != everything


def test_text_report_of_the_server_fits_a_terminal(server_run):
    res, _ = server_run
    with open(res["paths"]["text"], encoding="utf-8") as f:
        report = f.read()
    lines = report.splitlines()
    assert len(lines) < 100, len(lines)
    assert lines[0].startswith("spprof: ")
    # The header: totals, (CPU without the GIL,) interval, coverage.
    assert any(re.match(r"profiled .* of .* process CPU \(\d+%\)", line) for line in lines[2:4]), lines[:4]
    first_table = next(i for i, line in enumerate(lines) if line.startswith("Top "))
    assert "(all threads)" in lines[first_table]
    assert first_table < lines.index(next(line for line in lines if line.startswith("Threads: ")))
    # the groups, with how many threads have samples (a ~1 ms thread may have none)
    counts = {m.group(2): int(m.group(1)) for m in
              (re.search(r"%\s+(\d+)  (.+)$", line) for line in lines) if m}
    assert 900 <= counts.get("Thread-* (process_request_thread)", 0) <= 1000, report
    assert 1500 <= counts.get("Thread-* (per_item)", 0) <= 2000, report
    assert counts.get("MainThread") == 1, report


def test_coverage_of_a_pure_python_program():
    res = run_scenario(
        BURN_SRC
        + """
import threading, spprof
spprof.start(interval_ms=1)
burn(0.3)
t = threading.Thread(target=burn, args=(0.2,)); t.start(); t.join()
prof = spprof.stop()
emit({"process": prof.process_cpu_ms, "profiled": prof.total_cpu_ms,
      "others": prof.threads_without_samples, "text": prof.render("text").decode()})
"""
    )
    assert res["profiled"] >= 0.95 * res["process"], res
    line = res["text"].splitlines()[2]
    m = re.fullmatch(r"profiled (\S+ m?s) of (\S+ m?s) process CPU \((\d+)%\)", line)
    assert m and int(m.group(3)) >= 95, line
    assert "the rest" not in res["text"]


def test_coverage_names_threads_that_run_no_python():
    """Threads that burn CPU in C with no Python frame at all (a native
    pool's workers): one that spins 300 ms is sampled from the poll that
    finds it, under a frame naming it; a thread alive at the end that no
    sample covers is named by the coverage lines with its CPU. Together:
    the process's CPU, less what brief threads that ended unseen used."""
    res = run_scenario(
        """
import ctypes, os, time, spprof
# Native threads: pthread_create on a C function that spins on its own CPU
# clock (a ctypes callback would run Python).
code = '''
#include <pthread.h>
#include <time.h>
#include <unistd.h>
static volatile int spun = 0;
static double cpu(void) {
    struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9;
}
static void* spin(void* arg) {
    double end = cpu() + *(double*)arg;
    while (cpu() < end) {}
    if (*(double*)arg > 0.1) {
        spun = 1;
        sleep(5);  /* alive, idle: like a native pool's worker between jobs */
    }
    return 0;
}
static double long_s = 0.3, short_s = 0.003;
int start_spinner(int brief) {
    pthread_t th; return pthread_create(&th, 0, spin, brief ? &short_s : &long_s) || pthread_detach(th);
}
int spinner_done(void) { return spun; }
'''
import subprocess, sys, tempfile
d = tempfile.mkdtemp()
with open(os.path.join(d, "spin.c"), "w") as f:
    f.write(code)
subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", os.path.join(d, "spin.so"),
                os.path.join(d, "spin.c"), "-lpthread"], check=True)
lib = ctypes.CDLL(os.path.join(d, "spin.so"))
spprof.start(interval_ms=1)
end = time.thread_time() + 0.1
while time.thread_time() < end:
    pass
for _ in range(10):
    assert lib.start_spinner(1) == 0  # 3 ms each, then they end
    time.sleep(0.002)
assert lib.start_spinner(0) == 0   # 300 ms in a thread that never runs Python
while not lib.spinner_done():
    time.sleep(0.01)
prof = spprof.stop()
native = sum(s.weight for s in prof.samples if s.frames and s.frames[0].function_name.startswith("<native thread "))
emit({"process": prof.process_cpu_ms, "profiled": prof.total_cpu_ms, "native_ms": native * prof.interval_ms,
      "others": prof.threads_without_samples, "text": prof.render("text").decode()})
"""
    )
    print(res)
    # The long spinner: found within a poll (at most ~100 ms late).
    assert 180 <= res["native_ms"] <= 340, res
    # The ten brief threads (30 ms) may end unsampled before any poll sees
    # them: the kernel no longer tells their CPU per thread.
    not_sampled = sum(cpu_ms for _, _, cpu_ms in res["others"])
    assert res["process"] - 60 <= res["profiled"] + not_sampled <= 1.1 * res["process"], res
    lines = res["text"].splitlines()
    if res["others"]:
        rest = next(i for i, line in enumerate(lines) if line.startswith("the rest: threads that ran no Python: "))
        tid = res["others"][0][0]
        assert any(re.fullmatch(rf"  \S+ \(tid {tid}\): \d+\.\d ms", line) for line in lines[rest + 1:rest + 12]), lines
