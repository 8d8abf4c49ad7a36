"""Wall-time overhead of profiling a CPU-bound workload (`make bench`), next
to the bare-kernel floor.

    .venv/bin/python bench/bench_overhead.py [--repeats N] [--rounds N] [--quick]

Configurations: spprof in cpu and wall mode, at 10 ms and 1 ms, on each timer
backend (perf_event, timer_create), and cpu mode with native frames
(native=True) at both intervals on both backends; and the floor: the same workload run by
build/bench/timer_floor (bench/floor/timer_floor.c, an embedded CPython built
here with cc) with the same kind of timer armed on the workload's thread and
an empty SIGPROF handler; wall-mode rows' floor adds a thread that wakes
every interval of real time. What spprof adds above the floor is its own
work; the floor is what signal delivery alone costs.

Each configuration runs the same pure-Python workload in a fresh interpreter,
REPEATS times, in rounds (every configuration once per round, in a shuffled
order, so slow drift of the machine hits every configuration alike). The
overhead is the median wall time against the median of the unarmed runs:
`python` unprofiled for spprof, the floor program unarmed for the floor (so
that embedding itself is not counted). Also reported: the spread of the runs,
the samples (signals for the floor), the overhead spprof measures itself
(handler time + service thread CPU over process CPU), the backend that
actually ran, and the time stop() takes with 1000 live registered threads.
A configuration that cannot run here is reported with its error.

Results also go to build/bench/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

REPEATS = 5
ROUNDS = 100  # workload size: fib(24) + a 60,000-item sort, this many times
QUICK_REPEATS = 3
QUICK_ROUNDS = 30
BACKENDS = (("perf_event", "perf"), ("timer_create", "timer"))
INTERVALS = (10, 1)
MODES = ("cpu", "wall")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLOOR_SRC = HERE / "floor" / "timer_floor.c"
OUT_DIR = ROOT / "build" / "bench"

# argv: kind (off | spprof | floor), interval_ms, backend, mode, rounds.
# Prints one JSON line; {"error": ...} when the profiler or timer cannot
# start (the configuration is then reported as unavailable).
WORKLOAD = textwrap.dedent(
    """
    import json, sys, time
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)
    def work(rounds):
        total = 0
        for _ in range(rounds):
            total += fib(24)
            total += sum(sorted(i * 7 % 1000 for i in range(60000)))
        return total
    kind, interval, backend, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rounds = int(sys.argv[5])
    native = len(sys.argv) > 6 and sys.argv[6] == "native"
    work(max(1, rounds // 10))  # warm up outside the measurement
    if kind == "off":
        t0 = time.perf_counter(); work(rounds); wall = time.perf_counter() - t0
        print(json.dumps({"wall": wall}))
    elif kind == "floor":
        import _timer_floor
        try:
            _timer_floor.arm(backend, interval * 1_000_000, mode == "wall")
        except Exception as e:
            print(json.dumps({"error": f"{type(e).__name__}: {e}"})); sys.exit(0)
        t0 = time.perf_counter(); work(rounds); wall = time.perf_counter() - t0
        st = _timer_floor.disarm()
        print(json.dumps({"wall": wall, "samples": st["signals"], "overruns": st["overruns"],
                          "ticks": st["ticks"], "backend": st["backend"], "mode": mode,
                          "perf_kernel": st["perf_kernel"]}))
    else:
        import spprof
        try:
            spprof.start(interval_ms=interval, backend=backend, mode=mode, native=native)
        except Exception as e:
            print(json.dumps({"error": f"{type(e).__name__}: {e}"})); sys.exit(0)
        t0 = time.perf_counter(); work(rounds); wall = time.perf_counter() - t0
        prof = spprof.stop()
        st = prof.stats
        print(json.dumps({"wall": wall, "samples": prof.sample_count, "signals": st.signals,
                          "overruns": st.timer_overruns, "self_overhead": st.overhead_percent,
                          "backend": st.backend, "mode": prof.mode,
                          "native_samples": st.raw.get("native_samples", 0)}))
    """
)

LEGEND = textwrap.dedent(
    """\
    overhead: median wall time / median unprofiled - 1; spread: min..max of the runs against
      that median; paired: median of each run against the unprofiled run of its round;
    ran: prof.stats.backend (! = not the one asked for); samples: spprof's sample count;
    self: spprof's own measure (handler + service thread CPU / process CPU);
    floor: the same workload in build/bench/timer_floor with the same kind of timer on its
      thread and an empty SIGPROF handler (wall rows: plus a thread woken every interval of
      real time), against the floor program unarmed; signals: SIGPROFs it received
      (timer_create below 4 ms: the kernel folds the rest into overruns).
    native rows: cpu mode with native=True (each sample also unwinds the C stack with
      libunwind), next to the cpu rows' floor; compare with the cpu row of the same timer.
    """
)

STOP_TIMING = textwrap.dedent(
    """
    import json, threading, time, spprof
    N = 1000
    times = []
    for _ in range(5):
        go = threading.Event(); ready = threading.Semaphore(0)
        def body():
            spprof.register_thread(); ready.release(); go.wait()
        spprof.start(interval_ms=10)
        ts = [threading.Thread(target=body) for _ in range(N)]
        for t in ts: t.start()
        for _ in range(N): ready.acquire()
        registered = spprof.stats().registered_threads
        t0 = time.perf_counter(); spprof.stop(); times.append(time.perf_counter() - t0)
        go.set()
        for t in ts: t.join()
    print(json.dumps({"registered": registered, "median_ms": 1000 * sorted(times)[len(times) // 2],
                      "max_ms": 1000 * max(times)}))
    """
)


def run(exe: str, args: list[str], code: str = WORKLOAD, timeout: float = 900) -> dict:
    """One fresh interpreter; its JSON line, or {"error": ..., "crash": True}."""
    try:
        out = subprocess.run([exe, "-c", code, *args], capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{type(e).__name__}: {e}", "crash": True}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit status {out.returncode}: {tail}", "crash": True}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"unreadable output: {lines[-1][:200]}", "crash": True}


# --- the floor program -------------------------------------------------------


def c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def python_build_flags() -> tuple[list[str], list[str], str]:
    """Compile and link flags to embed this interpreter, and where they came
    from: its python3.X-config --embed, else the same from sysconfig."""
    var = sysconfig.get_config_var
    version, abiflags = var("VERSION"), var("ABIFLAGS") or ""
    bindir = Path(sys.base_prefix) / "bin"
    for name in (f"python{version}{abiflags}-config", f"python{version}-config", "python3-config"):
        config = bindir / name
        if config.is_file() and os.access(config, os.X_OK):
            def flags(*args: str) -> list[str]:
                out = subprocess.run([str(config), *args], capture_output=True, text=True,
                                     check=True)
                return out.stdout.split()

            return flags("--cflags"), flags("--embed", "--ldflags"), str(config)
    cflags = [f"-I{var('INCLUDEPY')}"]
    if var("CONFINCLUDEPY") and var("CONFINCLUDEPY") != var("INCLUDEPY"):
        cflags.append(f"-I{var('CONFINCLUDEPY')}")
    libdir = var("LIBDIR") if var("Py_ENABLE_SHARED") else var("LIBPL")
    ldflags = [f"-L{libdir}", f"-lpython{version}{abiflags}", *(var("LIBS") or "").split(),
               *(var("SYSLIBS") or "").split()]
    return cflags, ldflags, "sysconfig (no python-config found)"


def build_floor() -> dict:
    """Build build/bench/timer_floor for this interpreter (every time: it
    takes a second and is then never stale). Returns {"exe": path} or
    {"error": ...}, with the command."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return {"error": f"C compiler '{cc}' not found (Debian: apt-get install gcc)"}
    try:
        cflags, ldflags, source = python_build_flags()
    except (OSError, subprocess.CalledProcessError) as e:
        return {"error": f"cannot get the flags to embed Python: {e}"}
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    extra = ["-pthread"]
    # Extension modules (the workload imports some) take their Python
    # symbols from the program when libpython is linked in statically.
    extra += (sysconfig.get_config_var("LINKFORSHARED") or "").split()
    rpath = f"-Wl,-rpath,{sysconfig.get_config_var('LIBDIR')}"
    if shared and sysconfig.get_config_var("LIBDIR") and rpath not in ldflags:
        extra.append(rpath)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    exe = OUT_DIR / "timer_floor"
    tmp = OUT_DIR / "timer_floor.tmp"
    cmd = [cc, "-O2", "-Wall", "-Wextra", *cflags, f"-DFLOOR_PYTHON={c_string(sys.executable)}",
           str(FLOOR_SRC), "-o", str(tmp), *ldflags, *extra]
    info = {"command": cmd, "flags_from": source, "libpython": "shared" if shared else "static"}
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        info["error"] = "cc failed: " + " | ".join(out.stderr.strip().splitlines()[-3:])
        return info
    if out.stderr.strip():
        info["warnings"] = out.stderr.strip().splitlines()
    tmp.replace(exe)
    check = run(str(exe), ["off", "0", "-", "cpu", "1"])
    if "error" in check:
        info["error"] = f"built, but does not run the workload: {check['error']}"
        return info
    info["exe"] = str(exe)
    return info


# --- the machine ---------------------------------------------------------------


def machine() -> dict:
    def text(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in (text("/proc/cpuinfo") or "").splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " + local changes"
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "py_enable_shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
        "commit": commit,
        "perf_event_paranoid": text("/proc/sys/kernel/perf_event_paranoid"),
        "loadavg_start": os.getloadavg(),
    }


# --- the runs --------------------------------------------------------------------


def configurations() -> list[dict]:
    """Baselines first, then each spprof configuration and its floor."""
    configs = [
        {"name": "unprofiled", "kind": "off", "program": "python"},
        {"name": "floor unarmed", "kind": "off", "program": "floor"},
    ]
    for mode in MODES:
        for interval in INTERVALS:
            for backend, short in BACKENDS:
                label = f"{mode} {interval:>2} ms {short}"
                common = {"interval": interval, "backend": backend, "mode": mode}
                configs.append({"name": label, "kind": "spprof", "program": "python", **common})
                configs.append({"name": f"floor {label}", "kind": "floor", "program": "floor",
                                **common})
    # Native frames (native=True): CPU mode, next to the same timer's floor.
    for interval in INTERVALS:
        for backend, short in BACKENDS:
            common = {"interval": interval, "backend": backend, "mode": "cpu", "native": True,
                      "floor": f"floor cpu {interval:>2} ms {short}"}
            configs.append({"name": f"native {interval:>2} ms {short}", "kind": "spprof",
                            "program": "python", **common})
    return configs


def args_of(cfg: dict, rounds: int) -> list[str]:
    return [cfg["kind"], str(cfg.get("interval", 0)), cfg.get("backend", "-"),
            cfg.get("mode", "cpu"), str(rounds), "native" if cfg.get("native") else "python"]


def summarize(runs: list[dict], base_runs: list[dict], cfg: dict) -> dict:
    """Median overhead against the median of base_runs, the spread of the
    runs (each against that median), and the paired median (each run against
    the base run of its round)."""
    ok = [r for r in runs if "error" not in r]
    failed = [r for r in runs if "error" in r]
    out: dict = {"runs": len(runs), "ok": len(ok)}
    if failed:
        out["errors"] = sorted({r["error"] for r in failed})
        out["crashes"] = sum(1 for r in failed if r.get("crash"))
    if not ok:
        return out
    base_ok = [r["wall"] for r in base_runs if "error" not in r]
    if not base_ok:
        out["errors"] = out.get("errors", []) + ["no baseline run succeeded"]
        return out
    base = statistics.median(base_ok)
    walls = [r["wall"] for r in ok]
    ratios = [w / base - 1 for w in walls]
    paired = [on["wall"] / off["wall"] - 1 for on, off in zip(runs, base_runs)
              if "error" not in on and "error" not in off]
    out.update({
        "wall_ms": 1000 * statistics.median(walls),
        "overhead_pct": 100 * (statistics.median(walls) / base - 1),
        "spread_pct": [100 * min(ratios), 100 * max(ratios)],
        "paired_pct": 100 * statistics.median(paired) if paired else None,
        "fastest_pct": 100 * (min(walls) / min(base_ok) - 1),
    })
    if cfg["kind"] != "off":
        out["samples"] = statistics.median(r["samples"] for r in ok)
        ran = sorted({r["backend"] for r in ok})
        modes = sorted({r["mode"] for r in ok})
        out["backend_ran"] = ran
        out["backend_ok"] = ran == [cfg["backend"]] and modes == [cfg["mode"]]
        if not out["backend_ok"]:
            out.setdefault("errors", []).append(
                f"asked for {cfg['backend']} {cfg['mode']}, ran {'/'.join(ran)} {'/'.join(modes)}")
    if cfg["kind"] == "spprof":
        out["self_overhead_pct"] = statistics.median(r["self_overhead"] for r in ok)
        out["signals"] = statistics.median(r["signals"] for r in ok)
    if cfg["kind"] == "floor":
        out["overruns"] = statistics.median(r["overruns"] for r in ok)
        out["perf_kernel"] = any(r.get("perf_kernel") for r in ok)
        if cfg["mode"] == "wall":
            out["ticks"] = statistics.median(r["ticks"] for r in ok)
    return out


def pct(x: float | None, width: int = 6) -> str:
    return f"{x:+{width}.1f}%" if x is not None else " " * width + "-"


def spread(s: dict) -> str:
    lo, hi = s["spread_pct"]
    return f"{lo:+.1f}..{hi:+.1f}%"


def problem(s: dict) -> str:
    """A short note for a configuration that did not run as asked."""
    if "errors" not in s:
        return ""
    msg = "; ".join(s["errors"])
    if not s.get("ok"):
        return f"unavailable: {msg}"
    if s["ok"] < s["runs"]:
        return f"{s['runs'] - s['ok']} of {s['runs']} runs failed: {msg}"
    return msg


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, help=f"runs per configuration (default {REPEATS})")
    p.add_argument("--rounds", type=int, help=f"workload size (default {ROUNDS})")
    p.add_argument("--quick", action="store_true",
                   help=f"a check that everything runs: {QUICK_REPEATS} repeats of a "
                        f"{QUICK_ROUNDS}-round workload (figures only indicative)")
    p.add_argument("--json", type=Path, default=OUT_DIR / "overhead.json",
                   help="where to write the results (default build/bench/overhead.json)")
    p.add_argument("--no-stop-timing", action="store_true",
                   help="skip the timing of stop() with 1000 threads")
    opts = p.parse_args()
    repeats = opts.repeats or (QUICK_REPEATS if opts.quick else REPEATS)
    rounds = opts.rounds or (QUICK_ROUNDS if opts.quick else ROUNDS)
    if repeats < 1 or rounds < 1:
        p.error("--repeats and --rounds must be at least 1")

    info = machine()
    print(f"spprof overhead on a CPU-bound workload ({rounds} rounds of fib(24) + a 60,000-item "
          f"sort), median of {repeats} runs per configuration, fresh interpreter per run")
    libpython = "shared" if info["py_enable_shared"] else "static"
    print(f"machine: {info['nproc']} CPUs ({info['cpus_usable']} usable), {info['cpu']}; "
          f"{info['kernel']}; {info['python']} (libpython {libpython}); commit {info['commit']}; "
          f"perf_event_paranoid {info['perf_event_paranoid']}", flush=True)
    floor = build_floor()
    configs = configurations()
    results: dict[str, list[dict]] = {c["name"]: [] for c in configs}
    skip: dict[str, dict] = {}  # configurations that cannot start here: their first error
    rng = random.Random(1)
    started = time.monotonic()
    for rep in range(repeats):
        order = list(configs)
        rng.shuffle(order)
        for cfg in order:
            name = cfg["name"]
            if cfg["program"] == "floor" and "exe" not in floor:
                result = {"error": f"floor program not built: {floor['error']}"}
            elif name in skip:
                result = skip[name]
            else:
                exe = floor["exe"] if cfg["program"] == "floor" else sys.executable
                result = run(exe, args_of(cfg, rounds))
                if "error" in result and not result.get("crash"):
                    skip[name] = result  # refused to start: no point asking again
            results[name].append(result)
        elapsed = time.monotonic() - started
        remaining = elapsed / (rep + 1) * (repeats - rep - 1)
        print(f"  round {rep + 1}/{repeats} of {len(configs)} configurations done after "
              f"{elapsed:.0f} s, about {remaining:.0f} s to go", file=sys.stderr, flush=True)

    by_name = {c["name"]: c for c in configs}
    summary = {}
    for cfg in configs:
        base = "unprofiled" if cfg["program"] == "python" else "floor unarmed"
        summary[cfg["name"]] = summarize(results[cfg["name"]], results[base], cfg)
    info["loadavg_end"] = os.getloadavg()

    # --- the table ----------------------------------------------------------
    print(f"load average {info['loadavg_start'][0]:.2f} at start, "
          f"{info['loadavg_end'][0]:.2f} at end (on {info['cpus_usable']} CPUs)")
    un, fu = summary["unprofiled"], summary["floor unarmed"]
    if "wall_ms" in un:
        print(f"unprofiled    {un['wall_ms']:8.1f} ms, runs {spread(un)} of the median "
              f"(machine noise: above ~5% the overhead figures are not meaningful)")
    else:
        print(f"unprofiled    {problem(un)}")
    if "exe" not in floor:
        print(f"floor         NOT BUILT: {floor['error']}")
        print(f"              command: {' '.join(floor.get('command', []))}")
    elif "wall_ms" in fu:
        vs = 100 * (fu["wall_ms"] / un["wall_ms"] - 1) if "wall_ms" in un else None
        print(f"floor unarmed {fu['wall_ms']:8.1f} ms, runs {spread(fu)} of the median "
              f"({pct(vs, 0)} vs python: the floor's baseline)")
    else:
        print(f"floor unarmed {problem(fu)}")
    print()
    head = (f"{'configuration':<17} {'ran':<13} {'overhead':>8} {'spread':>14} {'paired':>7} "
            f"{'samples':>7} {'self':>6} | {'floor':>7} {'spread':>14} {'signals':>7}")
    print(head)
    print("-" * len(head))
    notes = []
    for cfg in configs:
        if cfg["kind"] != "spprof":
            continue
        s = summary[cfg["name"]]
        fl = summary[cfg.get("floor", f"floor {cfg['name']}")]
        if "wall_ms" in s:
            ran = "/".join(s["backend_ran"]) + ("" if s["backend_ok"] else "!")
            left = (f"{ran:<13} {pct(s['overhead_pct'], 7)} {spread(s):>14} {pct(s['paired_pct'])} "
                    f"{s['samples']:7.0f} {s['self_overhead_pct']:5.2f}%")
        else:
            left = f"{'unavailable':<13} {'-':>8} {'-':>14} {'-':>7} {'-':>7} {'-':>6}"
        if "wall_ms" in fl:
            right = f"{pct(fl['overhead_pct'])} {spread(fl):>14} {fl['samples']:7.0f}"
        else:
            right = f"{'-':>7} {'-':>14} {'-':>7}"
        print(f"{cfg['name']:<17} {left} | {right}")
        for label, st in ((cfg["name"], s), (cfg.get("floor", f"floor {cfg['name']}"), fl)):
            if problem(st) and f"  {label}: {problem(st)}" not in notes:
                notes.append(f"  {label}: {problem(st)}")
    print()
    print(LEGEND, end="")
    if notes:
        print("problems:")
        print("\n".join(notes))

    stop = None
    if not opts.no_stop_timing:
        stop = run(sys.executable, [], STOP_TIMING)
        if "error" in stop:
            print(f"stop() with 1000 registered threads: FAILED: {stop['error']}")
        else:
            print(f"stop() with {stop['registered']} registered threads: median "
                  f"{stop['median_ms']:.1f} ms, max {stop['max_ms']:.1f} ms (5 runs)")

    opts.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": info,
        "repeats": repeats,
        "rounds": rounds,
        "floor_build": floor,
        "configurations": [{**by_name[n], "summary": summary[n], "runs": results[n]}
                           for n in by_name],
        "stop_timing": stop,
    }
    opts.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"results: {os.path.relpath(opts.json)}")
    # A backend this machine refuses is reported, not a failure; a crash, a
    # backend other than the one asked for or no floor is.
    bad = ("exe" not in floor or (stop is not None and "error" in stop)
           or any(s.get("crashes") or s.get("backend_ok") is False for s in summary.values()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
