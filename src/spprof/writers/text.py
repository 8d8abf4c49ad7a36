"""A plain-text report for the terminal: the hottest functions at a glance.

First the whole program: a coverage line (how much of the process's CPU the
samples account for), then two tables, functions by self time (where the
CPU was actually spent) and by total time (what was on the stack). Then,
when more than one thread ran, the threads or thread groups (see
``spprof._groups``) by CPU, capped, with the top functions of the costliest
few: the report fits a terminal whatever the number of threads. Percentages are of sampled CPU time, i.e.
sample weights, so a sample that stands for several timer intervals counts
that many times. Every line fits in ``width`` columns: long function names
and paths are cut from the left, because the end (method name, file name and
line) is the part that identifies them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._coverage import coverage_lines, duration_text
from .._groups import check_view, thread_tracks

if TYPE_CHECKING:
    from .._aggregate import AggregatedProfile, FunctionStats
    from .._model import Profile

__all__ = ["WRITER", "TextWriter", "cut_left", "cut_path", "render_text"]

ELLIPSIS = "\u2026"
MIN_WIDTH = 50  # below this the fixed columns leave no room for names
MIN_NAME = 10

# self%, total%, CPU ms, samples; the name and location columns take the rest.
_FIXED = "{:>6} {:>6} {:>10} {:>8}  "
_FIXED_WIDTH = len(_FIXED.format("", "", "", ""))
_GAP = 2

# Thread tracks listed, tracks given their own table, rows in those tables.
TRACK_ROWS = 10
TRACK_SECTIONS = 3
TRACK_TABLE_ROWS = 5


def _clean(s: str) -> str:
    # A newline or tab inside a name would break the table's alignment.
    return s.replace("\n", " ").replace("\r", " ").replace("\t", " ")


def cut_left(s: str, width: int) -> str:
    """``s`` shortened to ``width`` by dropping characters on the left."""
    if len(s) <= width:
        return s
    if width <= 1:
        return s[-width:] if width > 0 else ""
    return ELLIPSIS + s[len(s) - (width - 1) :]


def cut_path(location: str, width: int) -> str:
    """``dir/file.py:12`` shortened to ``width`` from the left, starting at
    a directory separator when one is near the cut."""
    if len(location) <= width:
        return location
    tail = location[len(location) - (width - 1) :]
    seps = [i for i in (tail.find("/"), tail.find("\\")) if i >= 0]
    slash = min(seps) if seps else -1
    # Starting at a "/" reads better than a cut mid-word, as long as that
    # costs only a few characters of context.
    if 0 <= slash <= len(tail) // 3:
        return ELLIPSIS + tail[slash:]
    return ELLIPSIS + tail


def _last_sep(path: str) -> int:
    return max(path.rfind("/"), path.rfind("\\"))


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "  0.0%"


def _ms(ms: float) -> str:
    return f"{ms:.1f}" if ms < 1e9 else f"{ms:.3g}"


def _num(x: float) -> str:
    return f"{x:g}" if x != int(x) else str(int(x))


def _header(profile: Profile, agg: AggregatedProfile) -> list[str]:
    interval = profile.interval_ms
    nominal = 1000.0 / interval
    cpu_ms = agg.total_weight * interval
    rate = agg.total_samples / (cpu_ms / 1000.0) if cpu_ms > 0 else 0.0
    threads = len(agg.thread_ids)
    first = (
        f"spprof: {duration_text(profile.total_duration_ms)} wall, "
        f"{agg.total_samples} samples, {threads} thread{'s' if threads != 1 else ''}, "
        f"{duration_text(cpu_ms)} CPU"
    )
    wall = []
    if profile.mode == "wall":
        # The tables' shares are of real time, on and off CPU.
        by_state = profile.state_totals_ms()
        first = first[: -len(" CPU")] + " sampled"
        wall = [
            f"wall mode: {duration_text(by_state['cpu'] + by_state['gc'])} on CPU, "
            f"{duration_text(by_state['idle'])} idle, "
            f"{duration_text(by_state['gil'])} waiting for the GIL"
        ]
    by_gil = profile.gil_totals_ms()
    on_cpu = by_gil["held"] + by_gil["released"]
    if on_cpu > 0 and by_gil["released"] >= 0.01 * on_cpu:
        # C code that released the GIL ran beside the interpreter (under 1%:
        # the instants a thread hands the GIL over, not worth a line).
        wall.append(
            f"{duration_text(by_gil['released'])} of CPU without the GIL "
            f"({100.0 * by_gil['released'] / on_cpu:.0f}% of the Python threads' CPU)"
        )
    second = (
        f"interval {_num(interval)} ms ({nominal:.4g} Hz), "
        f"effective rate {rate:.1f} Hz, dropped {profile.dropped_count}"
    )
    return [first, *wall, second]


def _location(f: FunctionStats) -> str:
    # Synthetic frames (<gc>, <no Python frame>) have no file: no location.
    # A native function's is its source line where its library has line
    # tables, else its library; marked (at the end, which a cut to the
    # column's width keeps).
    if f.is_native:
        where = f"{f.filename}:{f.lineno}" if f.lineno > 0 else f.filename
        return _clean(f"{where} [native]")
    return _clean(f"{f.filename}:{f.lineno}") if f.filename else ""


def _table(
    title: str,
    rows: list[FunctionStats],
    total_weight: int,
    interval_ms: float,
    width: int,
    by_total: bool,
) -> list[str]:
    names = [_clean(f.function_name) for f in rows]
    locs = [_location(f) for f in rows]
    avail = width - _FIXED_WIDTH - _GAP
    name_need = max([len("function"), *map(len, names)])
    loc_need = max([len("location"), *map(len, locs)])
    if name_need + loc_need <= avail:
        name_w, loc_w = name_need, loc_need
    else:
        # The location gets what the names leave, but at least ~40% and
        # enough for "…/basename:line": file and line are what let the
        # reader jump to the code. Names keep a readable minimum.
        base_need = max((len(loc) - _last_sep(loc) + 1 for loc in locs), default=0)
        loc_w = min(loc_need, max(avail - name_need, avail * 2 // 5, base_need))
        loc_w = min(loc_w, avail - MIN_NAME)
        name_w = avail - loc_w
    value = "total" if by_total else "self"
    head = _FIXED.format("self", "total", f"{value} ms", "samples")
    out = [
        title,
        (head + "function".ljust(name_w + _GAP) + "location").rstrip(),
    ]
    for f, name, loc in zip(rows, names, locs, strict=True):
        w, n = (f.total_weight, f.total_count) if by_total else (f.self_weight, f.self_count)
        fixed = _FIXED.format(
            _pct(f.self_weight, total_weight),
            _pct(f.total_weight, total_weight),
            _ms(w * interval_ms),
            n,
        )
        line = fixed + cut_left(name, name_w).ljust(name_w + _GAP) + cut_path(loc, loc_w)
        out.append(line.rstrip())
    return out


def _section(
    agg: AggregatedProfile,
    interval_ms: float,
    limit: int,
    width: int,
    *,
    scope: str = "",
    by_total: bool = True,
) -> list[str]:
    stats = agg.function_stats()
    total = agg.total_weight
    if not stats or total <= 0:
        return ["no samples"]
    # Functions never seen as the leaf have no self time to rank.
    top_self = [f for f in stats if f.self_weight > 0][:limit]
    n = len(stats)
    out = _table(
        f"Top {len(top_self)} of {n} functions by self time{scope}",
        top_self,
        total,
        interval_ms,
        width,
        by_total=False,
    )
    if by_total:
        top_total = sorted(stats, key=lambda f: (-f.total_weight, -f.self_weight, f.function_name))
        top_total = top_total[:limit]
        out.append("")
        out += _table(
            f"Top {len(top_total)} of {n} functions by total time{scope}",
            top_total,
            total,
            interval_ms,
            width,
            by_total=True,
        )
    return out


def _tracks(
    agg: AggregatedProfile, interval_ms: float, limit: int, width: int, threads: str, unit: str = "CPU"
) -> list[str]:
    """The threads or groups by CPU (capped), then the top functions of
    the costliest few. ``unit``: what the weights are (CPU, or wall time)."""
    tracks = thread_tracks(agg, threads)
    n_threads = len(agg.thread_ids)
    if len(tracks) < 2:
        return []
    whole = agg.total_weight
    grouped = any(len(t.thread_ids) > 1 for t in tracks)
    kind = f"{n_threads} threads in {len(tracks)} groups" if grouped else f"{n_threads} threads"
    out = ["", f"Threads: {kind}, by {unit}", f"{unit:>10} {'share':>6} {'threads':>8}  name"]
    for t in tracks[:TRACK_ROWS]:
        out.append(
            f"{duration_text(t.weight * interval_ms):>10} {_pct(t.weight, whole)} "
            f"{len(t.thread_ids):>8}  {_clean(t.name)}"
        )
    rest = tracks[TRACK_ROWS:]
    if rest:
        w = sum(t.weight for t in rest)
        out.append(
            f"{ELLIPSIS} and {len(rest)} more ({duration_text(w * interval_ms)} {unit}, "
            f"{_pct(w, whole).strip()}): the HTML report lists them all"
        )
    for t in tracks[:TRACK_SECTIONS]:
        sub = agg.for_threads(t.thread_ids)
        count = len(t.thread_ids)
        who = f"{count} threads" if count > 1 else f"tid {t.thread_ids[0]}"
        out += [
            "",
            f"== {_clean(t.name)}: {who}, {duration_text(t.weight * interval_ms)} {unit} "
            f"({_pct(t.weight, whole).strip()}) ==",
        ]
        out += _section(sub.merged(), interval_ms, min(limit, TRACK_TABLE_ROWS), width, by_total=False)
    return out


def render_text(
    profile: Profile,
    *,
    limit: int = 20,
    merge_threads: bool | None = None,
    threads: str | None = None,
    width: int = 80,
) -> str:
    """The report. ``threads`` (one of ``spprof._groups.THREAD_VIEWS``,
    default ``"auto"``) says how threads are shown after the whole
    program's tables; ``merge_threads=True`` alone means ``"merged"``."""
    if threads is None:
        threads = "merged" if merge_threads else "auto"
    check_view(threads)
    width = max(int(width), MIN_WIDTH)
    limit = max(int(limit), 1)
    agg = profile.aggregate()
    lines = _header(profile, agg)
    lines += coverage_lines(profile)
    lines.append("")
    if agg.total_samples == 0:
        lines.append("no samples")
    else:
        unit = "wall" if profile.mode == "wall" else "CPU"
        tracks = [] if threads == "merged" else _tracks(agg, profile.interval_ms, limit, width, threads, unit)
        scope = " (all threads)" if tracks else ""
        lines += _section(agg.merged(), profile.interval_ms, limit, width, scope=scope)
        lines += tracks
    # Header lines carry free-form numbers and thread names; clamp them too.
    return "\n".join(cut_right(line, width) for line in lines) + "\n"


def cut_right(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + ELLIPSIS


class TextWriter:
    name = "text"
    extension = ".txt"

    def render(
        self,
        profile: Profile,
        *,
        limit: int = 20,
        merge_threads: bool | None = None,
        threads: str | None = None,
        width: int = 80,
        **_: object,
    ) -> bytes:
        return render_text(
            profile, limit=limit, merge_threads=merge_threads, threads=threads, width=width
        ).encode("utf-8")


WRITER = TextWriter()
