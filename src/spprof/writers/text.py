"""A plain-text report for the terminal: the hottest functions at a glance.

Two tables: functions by self time (where the CPU was actually spent) and by
total time (what was on the stack). Percentages are of sampled CPU time, i.e.
sample weights, so a sample that stands for several timer intervals counts
that many times. Every line fits in ``width`` columns: long function names
and paths are cut from the left, because the end (method name, file name and
line) is the part that identifies them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def _duration(ms: float) -> str:
    if ms >= 1000.0:
        return f"{ms / 1000.0:.2f} s"
    return f"{ms:.1f} ms"


def _num(x: float) -> str:
    return f"{x:g}" if x != int(x) else str(int(x))


def _header(profile: Profile, agg: AggregatedProfile) -> list[str]:
    interval = profile.interval_ms
    nominal = 1000.0 / interval
    cpu_ms = agg.total_weight * interval
    rate = agg.total_samples / (cpu_ms / 1000.0) if cpu_ms > 0 else 0.0
    threads = len(agg.thread_ids)
    first = (
        f"spprof: {_duration(profile.total_duration_ms)} wall, "
        f"{agg.total_samples} samples, {threads} thread{'s' if threads != 1 else ''}, "
        f"{_duration(cpu_ms)} CPU"
    )
    second = (
        f"interval {_num(interval)} ms ({nominal:.4g} Hz), "
        f"effective rate {rate:.1f} Hz, dropped {profile.dropped_count}"
    )
    return [first, second]


def _location(f: FunctionStats) -> str:
    return _clean(f"{f.filename}:{f.lineno}") if f.filename else str(f.lineno)


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


def _section(agg: AggregatedProfile, interval_ms: float, limit: int, width: int) -> list[str]:
    stats = agg.function_stats()
    total = agg.total_weight
    if not stats or total <= 0:
        return ["no samples"]
    # Functions never seen as the leaf have no self time to rank.
    top_self = [f for f in stats if f.self_weight > 0][:limit]
    by_total = sorted(stats, key=lambda f: (-f.total_weight, -f.self_weight, f.function_name))
    top_total = by_total[:limit]
    n = len(stats)
    out = _table(
        f"Top {len(top_self)} of {n} functions by self time",
        top_self,
        total,
        interval_ms,
        width,
        by_total=False,
    )
    out.append("")
    out += _table(
        f"Top {len(top_total)} of {n} functions by total time",
        top_total,
        total,
        interval_ms,
        width,
        by_total=True,
    )
    return out


def render_text(
    profile: Profile, *, limit: int = 20, merge_threads: bool = True, width: int = 80
) -> str:
    width = max(int(width), MIN_WIDTH)
    limit = max(int(limit), 1)
    agg = profile.aggregate()
    lines = _header(profile, agg)
    lines.append("")
    if agg.total_samples == 0:
        lines.append("no samples")
    elif merge_threads:
        lines += _section(agg.merged(), profile.interval_ms, limit, width)
    else:
        whole = agg.total_weight
        for tid in agg.thread_ids:
            sub = agg.for_thread(tid)
            name = _clean(agg.thread_names.get(tid) or "thread")
            w = sub.total_weight
            lines.append(
                f"== {name} (tid {tid}): {sub.total_samples} samples, "
                f"{_duration(w * profile.interval_ms)} CPU, "
                f"{_pct(w, whole).strip()} of all =="
            )
            lines += _section(sub, profile.interval_ms, limit, width)
            lines.append("")
        if lines[-1] == "":
            lines.pop()
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
        merge_threads: bool = True,
        width: int = 80,
        **_: object,
    ) -> bytes:
        return render_text(profile, limit=limit, merge_threads=merge_threads, width=width).encode(
            "utf-8"
        )


WRITER = TextWriter()
