"""A self-contained interactive HTML report: header, flame graph, function table.

The page is one file with its script and styles inline and a
Content-Security-Policy that forbids every network load, so it can be opened
from disk, mailed around or attached to a CI run without leaking anything or
depending on a CDN.

The profile is embedded as compact JSON built from the aggregate (unique
stacks), never from individual samples:

* ``strings``: every function name and file name once;
* ``frames``: flat ``[name_idx, file_idx, lineno, is_native, ...]``;
* ``trie``: every unique stack of every thread as one call tree (a trie), so
  shared prefixes, and stacks seen on several threads, are stored once.
  Node 0 is the implicit root; nodes 1..N follow in creation order, so a
  parent always precedes its children and the page can sum totals in one
  backwards pass. Most nodes are the child of the node just before them, so
  such a node is written as just its frame index; any other node is written
  as ``-(distance back to its parent), frame index``.
* ``threads[i].leaves``: flat ``[node_delta, weight, weight - count, ...]``
  for the nodes where that thread's stacks end, in node order, node indices
  delta-encoded (weight minus count is 0 unless the timer overran).
* ``tracks``: the thread selector's entries after "All threads", costliest
  first (``spprof._groups.thread_tracks``): ``{"name", "threads": [indices
  into threads], "weight"}``; one per thread or per group of like-named
  threads, as the ``threads`` option says.

Per-thread and per-group trees, the merged ("all threads") tree, the boxes
of one function called from several lines folded into one, and the function
table are computed in the page from these, so nothing is embedded twice.
The page's script is html_page/tree.js (the model) followed by page.js (the
drawing), in one ``<script>`` element.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .._coverage import coverage_lines
from .._groups import check_view, thread_tracks
from .._states import STATE_FRAMES

if TYPE_CHECKING:
    from .._model import Profile

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

# Samples with no Python frame at all still cost CPU; showing them as a frame
# keeps the flame graph's widths adding up to the header's totals.
NO_FRAMES_LABEL = "<no Python frames>"


def build_data(profile: Profile, threads: str = "auto") -> dict:
    """The JSON document the page reads (see the module docstring);
    ``threads`` is one of ``spprof._groups.THREAD_VIEWS``."""
    check_view(threads)
    agg = profile.aggregate()
    strings: list[str] = []
    string_index: dict[str, int] = {}
    frames: list[int] = []
    frame_index: dict[object, int] = {}

    def intern(s: str) -> int:
        i = string_index.get(s)
        if i is None:
            i = string_index[s] = len(strings)
            strings.append(s)
        return i

    def frame_id(fr) -> int:
        i = frame_index.get(fr)
        if i is None:
            i = frame_index[fr] = len(frames) // 4
            name, file = intern(fr.function_name), intern(fr.filename)
            frames.extend((name, file, int(fr.lineno), 1 if fr.is_native else 0))
        return i

    trie: list[int] = []
    trie_index: dict[tuple[int, int], int] = {}
    node_count = 1  # node 0 is the root
    last_node = 0
    no_frames_id = -1
    # Aggregated stacks of different threads share the profile's stack
    # tuples; keying by identity avoids re-hashing every Frame of every stack.
    # ``keep_alive`` pins the tuples so their ids stay unique.
    leaf_of: dict[int, int] = {}
    keep_alive: list[object] = []
    leaves: dict[int, dict[int, list[int]]] = {}
    totals: dict[int, list[int]] = {}

    for s in agg.stacks:
        leaf = leaf_of.get(id(s.frames))
        if leaf is None:
            if s.frames:
                ids = [frame_id(fr) for fr in s.frames]
            else:
                if no_frames_id < 0:
                    no_frames_id = len(frames) // 4
                    frames.extend((intern(NO_FRAMES_LABEL), intern(""), 0, 0))
                ids = [no_frames_id]
            node = 0
            for fi in ids:
                key = (node, fi)
                child = trie_index.get(key)
                if child is None:
                    child = trie_index[key] = node_count
                    node_count += 1
                    if node != last_node:
                        trie.append(node - child)
                    trie.append(fi)
                    last_node = child
                node = child
            leaf = leaf_of[id(s.frames)] = node
            keep_alive.append(s.frames)
        per_thread = leaves.get(s.thread_id)
        if per_thread is None:
            per_thread = leaves[s.thread_id] = {}
            totals[s.thread_id] = [0, 0]
        acc = per_thread.get(leaf)
        if acc is None:
            per_thread[leaf] = [s.weight, s.count]
        else:
            acc[0] += s.weight
            acc[1] += s.count
        t = totals[s.thread_id]
        t[0] += s.count
        t[1] += s.weight

    names = agg.thread_names
    thread_list = []
    for tid in sorted(leaves):
        flat: list[int] = []
        prev = 0
        for node, (weight, count) in sorted(leaves[tid].items()):
            flat.extend((node - prev, weight, weight - count))
            prev = node
        count, weight = totals[tid]
        thread_list.append(
            {"tid": tid, "name": names.get(tid), "samples": count, "weight": weight,
             "leaves": flat}
        )
    position = {th["tid"]: i for i, th in enumerate(thread_list)}
    tracks = [
        {"name": g.name, "threads": [position[t] for t in g.thread_ids], "weight": g.weight}
        for g in thread_tracks(agg, threads)
    ]
    return {
        "version": 1,
        "interval_ms": profile.interval_ms,
        "mode": profile.mode,
        "off_cpu_frames": sorted(STATE_FRAMES.values()),
        "total_samples": sum(t["samples"] for t in thread_list),
        "total_weight": sum(t["weight"] for t in thread_list),
        "strings": strings,
        "frames": frames,
        "trie": trie,
        "threads": thread_list,
        "thread_view": threads,
        "tracks": tracks,
    }


def decode_trie(trie: list[int]) -> list[tuple[int, int]]:
    """``[(parent, frame_idx)]`` for nodes 1..N, from the encoding in
    ``build_data`` (for tests and other readers of the embedded data)."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(trie):
        node = len(out) + 1
        v = trie[i]
        if v < 0:
            parent, fi = node + v, trie[i + 1]
            i += 2
        else:
            parent, fi = node - 1, v
            i += 1
        out.append((parent, fi))
    return out


def decode_leaves(flat: list[int]) -> dict[int, tuple[int, int]]:
    """``{node: (weight, count)}`` from a thread's ``leaves``."""
    out: dict[int, tuple[int, int]] = {}
    node = 0
    for i in range(0, len(flat), 3):
        node += flat[i]
        out[node] = (flat[i + 1], flat[i + 1] - flat[i + 2])
    return out


def embed_json(data: object) -> str:
    """JSON that is safe inside a ``<script>`` element.

    ``<`` only ever occurs inside JSON strings, where ``\\u003c`` means the
    same thing, so escaping every one rules out ``</script>`` and ``<!--``
    (which would change how the HTML parser reads the rest of the element).
    ``ensure_ascii`` also turns lone surrogates from undecodable file names
    into escapes, so the document always encodes as UTF-8.
    """
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _fmt_ms(ms: float) -> str:
    if ms >= 10_000:
        return f"{ms / 1000:,.1f} s"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms"


def _fmt_num(x: float) -> str:
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.3g}"


def _time_facts(profile: Profile, total_weight: int) -> list[tuple[str, str]]:
    """What the boxes' widths are: CPU time, or in wall mode real time,
    with its split between on and off CPU; and the CPU spent without the
    GIL, where the samples say."""
    by_gil = profile.gil_totals_ms()
    known = by_gil["held"] + by_gil["released"]
    gil = []
    if known > 0:
        share = 100.0 * by_gil["released"] / known
        gil = [("CPU without the GIL", f"{_fmt_ms(by_gil['released'])} ({share:.0f}% of Python threads')")]
    if profile.mode != "wall":
        return [("CPU time", _fmt_ms(total_weight * profile.interval_ms)), *gil]
    by_state = profile.state_totals_ms()
    return [
        ("Mode", "wall clock: boxes are real time, on and off CPU"),
        ("Wall time", _fmt_ms(total_weight * profile.interval_ms)),
        ("On CPU", _fmt_ms(by_state["cpu"] + by_state["gc"])),
        *gil,
        ("Idle", _fmt_ms(by_state["idle"])),
        ("Waiting for the GIL", _fmt_ms(by_state["gil"])),
    ]


def header_facts(profile: Profile, data: dict) -> list[tuple[str, str]]:
    total_weight = data["total_weight"]
    facts = [
        ("Duration", _fmt_ms(profile.total_duration_ms)),
        ("Samples", f"{profile.sample_count:,}"),
        *_time_facts(profile, total_weight),
        ("Threads", f"{len(data['threads'])}"),
        ("Interval", f"{_fmt_num(profile.interval_ms)} ms"),
        ("Effective rate", f"{profile.effective_rate_hz:,.1f} Hz"),
        ("Dropped", f"{profile.dropped_count:,}"),
        ("Python", profile.python_version or "unknown"),
        ("Platform", profile.platform or "unknown"),
    ]
    try:
        facts.append(("Started", profile.start_time.isoformat(timespec="seconds")))
    except (AttributeError, TypeError, ValueError):
        pass
    # "profiled 2.29 s of 4.66 s process CPU (49%)" and what the rest is
    for i, line in enumerate(coverage_lines(profile)):
        facts.append(("Coverage" if i == 0 else "", line))
    return facts


# The page around the data: html_page/page.html with page.css and the
# scripts put in, package data files read once.
PAGE_DIR = Path(__file__).resolve().parent / "html_page"
# The script is the model (tree.js, which defines ``spprofModel``) and the
# drawing (page.js, which calls it), in that order in one element.
SCRIPTS = ("tree.js", "page.js")
_parts: tuple[str, str, str] | None = None


def _page_parts() -> tuple[str, str, str]:
    global _parts
    if _parts is None:
        def read(name: str) -> str:
            return (PAGE_DIR / name).read_text(encoding="utf-8")

        _parts = (read("page.html"), read("page.css"), "\n".join(read(n) for n in SCRIPTS))
    return _parts


def render_html(profile: Profile, threads: str = "auto") -> str:
    data = build_data(profile, threads)
    facts = header_facts(profile, data)
    facts_html = "".join(
        f'<div class="fact"><dt>{html.escape(k)}</dt><dd data-fact="{html.escape(k)}">'
        f"{html.escape(v)}</dd></div>"
        for k, v in facts
    )
    dropped_class = " warn" if profile.dropped_count else ""
    title = f"spprof profile: {profile.sample_count:,} samples"
    template, css, js = _page_parts()
    page = template
    for token, value in (
        ("%%CSP%%", html.escape(CSP, quote=True)),
        ("%%TITLE%%", html.escape(title)),
        ("%%FACTS%%", facts_html),
        ("%%DROPPED_CLASS%%", dropped_class),
        ("%%CSS%%", css),
        ("%%JS%%", js),
        # Last, so nothing inside the data can be mistaken for a token.
        ("%%DATA%%", embed_json(data)),
    ):
        page = page.replace(token, value, 1)
    return page


class HtmlWriter:
    name = "html"
    extension = ".html"

    def render(
        self,
        profile: Profile,
        *,
        threads: str | None = None,
        merge_threads: bool = True,
        **_: object,
    ) -> bytes:
        """The page. ``threads`` (one of ``spprof._groups.THREAD_VIEWS``,
        ``"auto"`` by default) decides the thread selector's entries after
        "All threads": one per thread, one per group of like-named threads,
        or none (``"merged"``). ``merge_threads`` is accepted, as every
        writer takes it, and changes nothing: the page always opens on all
        threads merged and offers the tracks ``threads`` gives."""
        del merge_threads
        view = "auto" if threads is None else threads
        return render_html(profile, view).encode("utf-8", "replace")


WRITER = HtmlWriter()
