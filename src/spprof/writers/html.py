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

Per-thread trees, the merged ("all threads") tree and the function table are
computed in the page from these, so nothing is embedded twice.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._model import Profile

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

# Samples with no Python frame at all still cost CPU; showing them as a frame
# keeps the flame graph's widths adding up to the header's totals.
NO_FRAMES_LABEL = "<no Python frames>"


def build_data(profile: Profile) -> dict:
    """The JSON document the page reads (see the module docstring)."""
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
    threads = []
    for tid in sorted(leaves):
        flat: list[int] = []
        prev = 0
        for node, (weight, count) in sorted(leaves[tid].items()):
            flat.extend((node - prev, weight, weight - count))
            prev = node
        count, weight = totals[tid]
        threads.append(
            {"tid": tid, "name": names.get(tid), "samples": count, "weight": weight,
             "leaves": flat}
        )
    return {
        "version": 1,
        "interval_ms": profile.interval_ms,
        "total_samples": sum(t["samples"] for t in threads),
        "total_weight": sum(t["weight"] for t in threads),
        "strings": strings,
        "frames": frames,
        "trie": trie,
        "threads": threads,
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


def header_facts(profile: Profile, data: dict) -> list[tuple[str, str]]:
    total_weight = data["total_weight"]
    facts = [
        ("Duration", _fmt_ms(profile.total_duration_ms)),
        ("Samples", f"{profile.sample_count:,}"),
        ("CPU time", _fmt_ms(total_weight * profile.interval_ms)),
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
    return facts


def render_html(profile: Profile) -> str:
    data = build_data(profile)
    facts = header_facts(profile, data)
    facts_html = "".join(
        f'<div class="fact"><dt>{html.escape(k)}</dt><dd data-fact="{html.escape(k)}">'
        f"{html.escape(v)}</dd></div>"
        for k, v in facts
    )
    dropped_class = " warn" if profile.dropped_count else ""
    title = f"spprof profile: {profile.sample_count:,} samples"
    page = _TEMPLATE
    for token, value in (
        ("%%CSP%%", html.escape(CSP, quote=True)),
        ("%%TITLE%%", html.escape(title)),
        ("%%FACTS%%", facts_html),
        ("%%DROPPED_CLASS%%", dropped_class),
        ("%%CSS%%", _CSS),
        ("%%JS%%", _JS),
        # Last, so nothing inside the data can be mistaken for a token.
        ("%%DATA%%", embed_json(data)),
    ):
        page = page.replace(token, value, 1)
    return page


class HtmlWriter:
    name = "html"
    extension = ".html"

    def render(self, profile: Profile, **_: object) -> bytes:
        return render_html(profile).encode("utf-8", "replace")


WRITER = HtmlWriter()


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="%%CSP%%">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="spprof">
<title>%%TITLE%%</title>
<style>%%CSS%%</style>
</head>
<body>
<header>
<h1>spprof profile</h1>
<dl class="facts%%DROPPED_CLASS%%">%%FACTS%%</dl>
</header>
<main>
<section class="controls" aria-label="Flame graph controls">
<label>Thread <select id="thread-select"></select></label>
<label>Search <input id="search" type="search" placeholder="function or file" autocomplete="off" spellcheck="false"></label>
<span id="match-info" aria-live="polite"></span>
<button id="reset-zoom" type="button" disabled>Reset zoom</button>
</section>
<nav id="breadcrumb" aria-label="Zoom path"></nav>
<div id="flame-wrap">
<div id="flame" role="img" aria-label="Flame graph"></div>
<div id="empty" hidden>No samples were recorded.</div>
</div>
<p class="hint">Widths are CPU time. Root at the top. Click a frame to zoom in, click the top frame, a breadcrumb or press Esc to zoom out.</p>
<section id="functions">
<h2>Top functions <span class="hint">(click a header to sort, a row to highlight it in the graph)</span></h2>
<table id="func-table">
<thead><tr>
<th data-key="name" class="txt">Function</th>
<th data-key="loc" class="txt">File:line</th>
<th data-key="self">Self ms</th>
<th data-key="self" class="sorted desc">Self %</th>
<th data-key="total">Total ms</th>
<th data-key="total">Total %</th>
</tr></thead>
<tbody></tbody>
</table>
<p id="func-more" class="hint"></p>
</section>
<noscript><p>This report needs JavaScript for the flame graph and the function table.</p></noscript>
</main>
<div id="tooltip" role="tooltip" hidden></div>
<script id="spprof-data" type="application/json">%%DATA%%</script>
<script>%%JS%%</script>
</body>
</html>
"""

_CSS = r"""
:root { --fg: #1d2330; --muted: #5b6474; --bg: #f7f8fa; --panel: #fff; --line: #dde1e8; --accent: #2f6fdb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { background: #1f2633; color: #eef1f6; padding: 12px 20px 10px; }
h1 { margin: 0 0 8px; font-size: 18px; font-weight: 600; }
h2 { font-size: 16px; margin: 22px 0 8px; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 26px; margin: 0; }
.fact { display: flex; flex-direction: column; }
.fact dt { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: #9aa5b8; }
.fact dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
.facts.warn dd[data-fact="Dropped"] { color: #ffb15c; }
main { padding: 12px 20px 30px; }
.controls { display: flex; flex-wrap: wrap; align-items: center; gap: 10px 18px; margin-bottom: 6px; }
.controls label { color: var(--muted); }
.controls select, .controls input { font: inherit; padding: 3px 6px; border: 1px solid #b9c0cc; border-radius: 4px; background: #fff; color: var(--fg); }
#search { width: 220px; }
#match-info { color: #7a2a90; font-weight: 600; min-width: 10em; }
button { font: inherit; padding: 3px 10px; border: 1px solid #b9c0cc; border-radius: 4px; background: #fff; cursor: pointer; }
button:disabled { cursor: default; color: #9aa2ae; }
#breadcrumb { min-height: 22px; font-size: 13px; color: var(--muted); margin-bottom: 4px; overflow-wrap: anywhere; }
#breadcrumb button { border: 0; background: none; padding: 0 2px; color: var(--accent); text-decoration: underline; }
#breadcrumb .sep { margin: 0 4px; color: #9aa2ae; }
#flame-wrap { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 4px; }
#flame { position: relative; width: 100%; min-height: 18px; overflow: hidden; }
#empty { padding: 40px; text-align: center; color: var(--muted); font-size: 16px; }
/* No padding or border on frames: either would give a sub-pixel frame a
   minimum width and make neighbours overlap. Labelled (wide) frames get
   padding; the separator is an inset shadow, which takes no space. */
.f { position: absolute; height: 17px; overflow: hidden; cursor: pointer; border-radius: 2px;
     box-shadow: inset -1px 0 0 rgba(255,255,255,.75);
     font: 12px/17px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: #231a0e; white-space: nowrap; text-overflow: ellipsis; }
.f.l { padding: 0 4px; }
.f:hover { outline: 1px solid #1f2633; outline-offset: -1px; }
.f.elided { cursor: default; background: repeating-linear-gradient(135deg, #c9ced8 0 3px, #e6e9ee 3px 6px); box-shadow: none; }
.f.root { background: #d9dde4 !important; color: #1d2330; }
.f.anc { opacity: .55; }
.f.native { color: #0d2233; }
#flame.searching .f:not(.match):not(.root) { opacity: .3; }
.f.match { background: #c658e0 !important; color: #fff; opacity: 1; }
.hint { color: var(--muted); font-size: 12px; margin: 6px 0 0; font-weight: normal; }
table { border-collapse: collapse; width: 100%; background: var(--panel); border: 1px solid var(--line); font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid #edf0f4; text-align: right; white-space: nowrap; }
th { background: #eef1f5; cursor: pointer; user-select: none; font-weight: 600; position: sticky; top: 0; }
th.txt, td.txt { text-align: left; }
td.name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; max-width: 28em; overflow: hidden; text-overflow: ellipsis; }
td.loc { color: var(--muted); max-width: 36em; overflow: hidden; text-overflow: ellipsis; direction: rtl; }
th.sorted.desc::after { content: " \25BC"; font-size: 10px; }
th.sorted.asc::after { content: " \25B2"; font-size: 10px; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f3f6fb; }
td.pct { min-width: 9em; }
td.pct .track { display: inline-block; vertical-align: middle; width: 56px; height: 8px; margin-right: 8px; background: #edf0f4; border-radius: 2px; overflow: hidden; }
td.pct .bar { display: block; height: 100%; background: #e8893a; }
td.pct .v { display: inline-block; min-width: 4.2em; }
#tooltip { position: fixed; z-index: 10; pointer-events: none; max-width: 560px; background: #1f2633; color: #f1f3f7; padding: 7px 10px;
           border-radius: 5px; font-size: 12px; box-shadow: 0 3px 12px rgba(0,0,0,.25); overflow-wrap: anywhere; }
#tooltip .tt-name { font-weight: 700; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; margin-bottom: 2px; }
#tooltip .tt-loc { color: #b9c3d6; margin-bottom: 4px; }
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("spprof-data").textContent);
  var S = D.strings, F = D.frames, NF = F.length / 4;
  var INTERVAL_MS = D.interval_ms;
  var ROW = 18;
  // Frames narrower than this are skipped with their subtrees: they cannot be
  // seen or clicked, and skipping them keeps big profiles to a few thousand
  // elements.
  var MIN_PX = 1;
  var TABLE_ROWS = 100;

  var flame = document.getElementById("flame");
  var emptyBox = document.getElementById("empty");
  var select = document.getElementById("thread-select");
  var search = document.getElementById("search");
  var matchInfo = document.getElementById("match-info");
  var resetBtn = document.getElementById("reset-zoom");
  var crumbs = document.getElementById("breadcrumb");
  var tooltip = document.getElementById("tooltip");
  var tbody = document.querySelector("#func-table tbody");
  var moreInfo = document.getElementById("func-more");

  function fName(f) { return f < 0 ? "all" : S[F[4 * f]]; }
  function fFile(f) { return S[F[4 * f + 1]]; }
  function fLine(f) { return F[4 * f + 2]; }
  function fNative(f) { return F[4 * f + 3] === 1; }
  function fLoc(f) { var file = fFile(f); return file ? file + ":" + fLine(f) : ""; }

  function fmtMs(ms) {
    if (ms >= 10000) { var tenths = Math.round(ms / 100); return fmtInt(Math.floor(tenths / 10)) + "." + tenths % 10 + " s"; }
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    if (ms >= 10) return ms.toFixed(0) + " ms";
    return ms.toFixed(1) + " ms";
  }
  function fmtPct(x) { return (x >= 10 ? x.toFixed(1) : x.toFixed(2)) + "%"; }
  function fmtInt(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }

  // ---- call trees -------------------------------------------------------

  // The shared trie: parent and frame of every node (see build_data).
  var TRIE = (function () {
    var enc = D.trie, parent = [-1], frame = [-1];
    for (var i = 0; i < enc.length; i++) {
      var n = parent.length, v = enc[i];
      if (v < 0) { parent.push(n + v); frame.push(enc[++i]); }
      else { parent.push(n - 1); frame.push(v); }
    }
    return { size: parent.length, parent: Int32Array.from(parent), frame: Int32Array.from(frame) };
  })();

  // A view's tree is the shared trie with the chosen threads' weights.
  function viewTree(threads) {
    var n = TRIE.size, selfW = new Float64Array(n), selfC = new Float64Array(n);
    threads.forEach(function (th) {
      var lv = th.leaves, node = 0;
      for (var j = 0; j < lv.length; j += 3) { node += lv[j]; selfW[node] += lv[j + 1]; selfC[node] += lv[j + 1] - lv[j + 2]; }
    });
    return finish({ size: n, parent: TRIE.parent, frame: TRIE.frame, selfW: selfW, selfC: selfC });
  }

  // Totals, depths, children (heaviest first) and x offsets, relying on
  // parents having smaller indices than their children.
  function finish(t) {
    var n = t.size, i, p;
    t.totalW = Float64Array.from(t.selfW); t.totalC = Float64Array.from(t.selfC);
    for (i = n - 1; i > 0; i--) { p = t.parent[i]; t.totalW[p] += t.totalW[i]; t.totalC[p] += t.totalC[i]; }
    t.depth = new Int32Array(n);
    var nkids = new Int32Array(n + 1);
    for (i = 1; i < n; i++) { t.depth[i] = t.depth[t.parent[i]] + 1; nkids[t.parent[i] + 1]++; }
    for (i = 0; i < n; i++) nkids[i + 1] += nkids[i];
    t.kidStart = nkids;
    t.kids = new Int32Array(Math.max(n - 1, 0));
    var fill = nkids.slice(0, n);
    for (i = 1; i < n; i++) t.kids[fill[t.parent[i]]++] = i;
    var tw = t.totalW;
    for (p = 0; p < n; p++) {
      var a = nkids[p], z = nkids[p + 1];
      if (z - a > 1) {
        var seg = Array.prototype.slice.call(t.kids, a, z);
        seg.sort(function (u, v) { return tw[v] - tw[u] || (fName(t.frame[u]) < fName(t.frame[v]) ? -1 : 1); });
        for (i = 0; i < seg.length; i++) t.kids[a + i] = seg[i];
      }
    }
    t.x = new Float64Array(n);
    for (p = 0; p < n; p++) {
      var off = t.x[p];
      for (i = nkids[p]; i < nkids[p + 1]; i++) { var c = t.kids[i]; t.x[c] = off; off += tw[c]; }
    }
    return t;
  }

  // ---- state ------------------------------------------------------------

  var views = [{ label: "All threads (merged)", tree: null }];
  D.threads.forEach(function (th, k) {
    views.push({ label: (th.name || "thread") + " (tid " + th.tid + ")", thread: k, tree: null });
  });
  var cur = { view: 0, tree: null, focus: 0 };
  var matchFrame = null, query = "";
  var sortKey = "self", sortDir = -1;

  function treeFor(v) {
    var view = views[v];
    if (!view.tree) view.tree = viewTree(view.thread === undefined ? D.threads : [D.threads[view.thread]]);
    return view.tree;
  }

  var hueCache = [];
  function colour(f) {
    var c = hueCache[f];
    if (c) return c;
    var s = fName(f), h = 2166136261;
    for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
    h >>>= 0;
    // Warm hues for Python frames, cool ones for native, as in classic flame
    // graphs; the name hash keeps a function's colour stable across views.
    c = fNative(f)
      ? "hsl(" + (190 + h % 40) + "," + (45 + (h >> 8) % 25) + "%," + (68 + (h >> 16) % 12) + "%)"
      : "hsl(" + (h % 50) + "," + (70 + (h >> 8) % 25) + "%," + (58 + (h >> 16) % 14) + "%)";
    hueCache[f] = c;
    return c;
  }

  // ---- flame graph ------------------------------------------------------

  var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }

  // Frames are written as one HTML string and parsed once: for thousands of
  // frames that is several times faster than createElement per frame.
  function box(out, t, n, left, width, cls, pxWidth) {
    var f = t.frame[n], root = n === 0, label = pxWidth > 30;
    var c = "f" + cls + (root ? " root" : "") + (label ? " l" : "") + (!root && fNative(f) ? " native" : "") +
      (matchFrame && !root && matchFrame[f] ? " match" : "");
    out.push('<div class="', c, '" data-node="', n, '" ',
      root ? 'data-root="1"' : 'data-name="' + esc(fName(f)) + '" data-loc="' + esc(fLoc(f)) + '"',
      ' style="left:', left.toFixed(4), "%;width:", width.toFixed(4), "%;top:", t.depth[n] * ROW, "px",
      root ? "" : ";background:" + colour(f), '">',
      label ? esc(root ? views[cur.view].label : fName(f)) : "", "</div>");
  }

  function render() {
    var t = cur.tree, focus = cur.focus;
    var empty = t.totalW[0] <= 0;
    emptyBox.hidden = !empty;
    flame.hidden = empty;
    flame.classList.toggle("searching", !!matchFrame);
    if (empty) { flame.textContent = ""; renderCrumbs(); return; }
    var W = flame.clientWidth || 1000;
    var x0 = t.x[focus], w0 = t.totalW[focus] || 1;
    var out = [];
    for (var a = t.parent[focus]; a >= 0; a = t.parent[a]) box(out, t, a, 0, 100, " anc", W);
    var stack = [focus], maxDepth = t.depth[focus];
    while (stack.length) {
      var n = stack.pop(), share = t.totalW[n] / w0;
      box(out, t, n, (t.x[n] - x0) / w0 * 100, share * 100, "", share * W);
      if (t.depth[n] > maxDepth) maxDepth = t.depth[n];
      var i = t.kidStart[n], end = t.kidStart[n + 1];
      for (; i < end; i++) {
        var c = t.kids[i];
        if (t.totalW[c] / w0 * W < MIN_PX) break;  // children are heaviest first
        stack.push(c);
      }
      // The skipped children are drawn as one block, so that the parent does
      // not appear to have self time it does not have.
      if (i < end) {
        var from = t.x[t.kids[i]], rest = t.x[n] + t.totalW[n] - t.selfW[n] - from;
        if (rest / w0 * W >= MIN_PX) {
          out.push('<div class="f elided" data-elided="', n, '" data-from="', i, '" style="left:',
            ((from - x0) / w0 * 100).toFixed(4), "%;width:", (rest / w0 * 100).toFixed(4), "%;top:",
            (t.depth[n] + 1) * ROW, 'px"></div>');
          if (t.depth[n] + 1 > maxDepth) maxDepth = t.depth[n] + 1;
        }
      }
    }
    flame.style.height = ((maxDepth + 1) * ROW) + "px";
    flame.innerHTML = out.join("");
    renderCrumbs();
  }

  function renderCrumbs() {
    var t = cur.tree, chain = [];
    for (var n = cur.focus; n >= 0; n = t.parent[n]) chain.unshift(n);
    crumbs.textContent = "";
    resetBtn.disabled = cur.focus === 0;
    if (cur.focus === 0) return;
    chain.forEach(function (n, k) {
      if (k) { var sep = document.createElement("span"); sep.className = "sep"; sep.textContent = "\u203A"; crumbs.appendChild(sep); }
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = n === 0 ? "all" : fName(t.frame[n]);
      b.dataset.node = n;
      crumbs.appendChild(b);
    });
  }

  function zoom(n) { cur.focus = n; render(); }

  flame.addEventListener("click", function (e) {
    var el = e.target.closest(".f");
    if (el && el.dataset.node) zoom(+el.dataset.node);
  });
  crumbs.addEventListener("click", function (e) {
    var b = e.target.closest("button");
    if (b) zoom(+b.dataset.node);
  });
  resetBtn.addEventListener("click", function () { zoom(0); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && e.target !== search && cur.focus !== 0) zoom(0);
  });

  // ---- tooltip ----------------------------------------------------------

  var hovered = -1;
  function line(cls, text) { var d = document.createElement("div"); if (cls) d.className = cls; d.textContent = text; return d; }
  flame.addEventListener("mousemove", function (e) {
    var el = e.target.closest(".f");
    if (!el) { tooltip.hidden = true; hovered = -1; return; }
    var t = cur.tree, total = t.totalW[0];
    if (el.dataset.elided) {
      var p = +el.dataset.elided, k = +el.dataset.from, key = "e" + p;
      if (key !== hovered) {
        hovered = key;
        var w = 0, cnt = 0, nk = t.kidStart[p + 1] - k;
        for (var j = k; j < t.kidStart[p + 1]; j++) { w += t.totalW[t.kids[j]]; cnt += t.totalC[t.kids[j]]; }
        tooltip.textContent = "";
        tooltip.appendChild(line("tt-name", nk + " smaller frame" + (nk === 1 ? "" : "s") + " under " + (p === 0 ? "the root" : fName(t.frame[p]))));
        tooltip.appendChild(line("tt-loc", "Too narrow to draw at this zoom; click the parent to zoom in."));
        tooltip.appendChild(line("", "Samples: " + fmtInt(cnt)));
        tooltip.appendChild(line("", "CPU: " + fmtMs(w * INTERVAL_MS)));
        tooltip.appendChild(line("", fmtPct(100 * w / total) + " of total"));
        tooltip.hidden = false;
      }
      placeTooltip(e);
      return;
    }
    var n = +el.dataset.node;
    if (n !== hovered) {
      hovered = n;
      var f = t.frame[n];
      tooltip.textContent = "";
      tooltip.appendChild(line("tt-name", n === 0 ? views[cur.view].label : fName(f)));
      if (n !== 0) tooltip.appendChild(line("tt-loc", (fLoc(f) || "(no file)") + (fNative(f) ? "  [native]" : "")));
      tooltip.appendChild(line("", "Samples: " + fmtInt(t.totalC[n]) + " (self " + fmtInt(t.selfC[n]) + ")"));
      tooltip.appendChild(line("", "CPU: " + fmtMs(t.totalW[n] * INTERVAL_MS) + " (self " + fmtMs(t.selfW[n] * INTERVAL_MS) + ")"));
      tooltip.appendChild(line("", fmtPct(100 * t.totalW[n] / total) + " of total (self " + fmtPct(100 * t.selfW[n] / total) + ")"));
      tooltip.hidden = false;
    }
    placeTooltip(e);
  });
  function placeTooltip(e) {
    var r = tooltip.getBoundingClientRect(), x = e.clientX + 14, y = e.clientY + 16;
    if (x + r.width > window.innerWidth - 4) x = Math.max(4, e.clientX - r.width - 14);
    if (y + r.height > window.innerHeight - 4) y = Math.max(4, e.clientY - r.height - 12);
    tooltip.style.left = x + "px"; tooltip.style.top = y + "px";
  }
  flame.addEventListener("mouseleave", function () { tooltip.hidden = true; hovered = -1; });

  // ---- search -----------------------------------------------------------

  function applySearch() {
    query = search.value.trim().toLowerCase();
    if (!query) { matchFrame = null; matchInfo.textContent = ""; render(); return; }
    matchFrame = new Uint8Array(NF);
    for (var f = 0; f < NF; f++) {
      if (fName(f).toLowerCase().indexOf(query) >= 0 || fFile(f).toLowerCase().indexOf(query) >= 0) matchFrame[f] = 1;
    }
    // A match nested under another match is already counted by its ancestor.
    var t = cur.tree, covered = new Uint8Array(t.size), sum = 0;
    for (var n = 1; n < t.size; n++) {
      if (covered[t.parent[n]]) { covered[n] = 1; }
      else if (matchFrame[t.frame[n]]) { covered[n] = 1; sum += t.totalW[n]; }
    }
    var total = t.totalW[0];
    matchInfo.textContent = "Matched: " + fmtPct(total ? 100 * sum / total : 0) + " of total (" + fmtMs(sum * INTERVAL_MS) + ")";
    render();
  }
  var searchTimer = 0;
  search.addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applySearch, 60);
  });

  // ---- function table ---------------------------------------------------

  // Self = leaf weight; total = weight of the subtrees where the function
  // first appears on the path, so recursion is counted once, as in
  // FunctionStats.
  function functionStats(t) {
    var byKey = new Map(), list = [];
    function entry(f) {
      var key = F[4 * f] * S.length + F[4 * f + 1], e = byKey.get(key);
      if (!e) {
        e = { name: fName(f), file: fFile(f), self: 0, total: 0, selfLines: new Map(), anyLines: new Map() };
        byKey.set(key, e); list.push(e);
      }
      return e;
    }
    var entryOf = new Array(t.size);
    for (var n = 1; n < t.size; n++) {
      var w = t.totalW[n];
      if (w <= 0) continue;  // in the trie, but not in this view's threads
      var f = t.frame[n], e = entry(f);
      entryOf[n] = e;
      var seen = false;
      for (var a = t.parent[n]; a > 0; a = t.parent[a]) { if (entryOf[a] === e) { seen = true; break; } }
      if (!seen) e.total += w;
      var ln = fLine(f);
      e.anyLines.set(ln, (e.anyLines.get(ln) || 0) + w);
      if (t.selfW[n] > 0) { e.self += t.selfW[n]; e.selfLines.set(ln, (e.selfLines.get(ln) || 0) + t.selfW[n]); }
    }
    list.forEach(function (e) {
      var lines = e.selfLines.size ? e.selfLines : e.anyLines, best = -1, bw = -1;
      lines.forEach(function (w, ln) { if (w > bw || (w === bw && ln < best)) { bw = w; best = ln; } });
      e.line = best;
      e.loc = e.file ? e.file + ":" + best : "";
      delete e.selfLines; delete e.anyLines;
    });
    return list;
  }

  function renderTable() {
    var t = cur.tree, total = t.totalW[0];
    if (!t.stats) t.stats = functionStats(t);
    var rows = t.stats.slice();
    rows.sort(function (a, b) {
      var va = a[sortKey], vb = b[sortKey];
      var c = va < vb ? -1 : va > vb ? 1 : 0;
      return c * sortDir || (b.self - a.self) || (b.total - a.total) || (a.name < b.name ? -1 : 1);
    });
    tbody.textContent = "";
    var frag = document.createDocumentFragment();
    rows.slice(0, TABLE_ROWS).forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.name = r.name;
      function td(cls, text, title) { var c = document.createElement("td"); c.className = cls; c.textContent = text; if (title) c.title = title; tr.appendChild(c); return c; }
      function pct(v) {
        var c = td("pct", ""), track = document.createElement("span"), bar = document.createElement("span"), s = document.createElement("span");
        var p = total ? 100 * v / total : 0;
        track.className = "track"; bar.className = "bar"; bar.style.width = Math.min(100, p).toFixed(2) + "%";
        s.className = "v"; s.textContent = fmtPct(p);
        track.appendChild(bar); c.appendChild(track); c.appendChild(s);
      }
      td("txt name", r.name, r.name);
      // direction:rtl elides the start of long paths; the bidi isolate keeps
      // the text itself in reading order.
      td("txt loc", "\u2068" + r.loc + "\u2069", r.loc);
      td("num", fmtMs(r.self * INTERVAL_MS)); pct(r.self);
      td("num", fmtMs(r.total * INTERVAL_MS)); pct(r.total);
      frag.appendChild(tr);
    });
    tbody.appendChild(frag);
    moreInfo.textContent = rows.length > TABLE_ROWS ? (rows.length - TABLE_ROWS) + " more functions not shown." : "";
    document.querySelectorAll("#func-table th").forEach(function (th) {
      var on = th.dataset.key === sortKey;
      th.classList.toggle("sorted", on);
      th.classList.toggle("asc", on && sortDir > 0);
      th.classList.toggle("desc", on && sortDir < 0);
    });
  }

  document.querySelector("#func-table thead").addEventListener("click", function (e) {
    var th = e.target.closest("th");
    if (!th) return;
    var key = th.dataset.key;
    if (key === sortKey) sortDir = -sortDir;
    else { sortKey = key; sortDir = key === "name" || key === "loc" ? 1 : -1; }
    renderTable();
  });
  tbody.addEventListener("click", function (e) {
    var tr = e.target.closest("tr");
    if (!tr) return;
    search.value = tr.dataset.name;
    applySearch();
  });

  // ---- thread selector --------------------------------------------------

  var totalAll = D.total_weight || 1;
  views.forEach(function (v, k) {
    var o = document.createElement("option");
    o.value = String(k);
    o.textContent = k === 0 ? v.label : v.label + " \u2014 " + fmtPct(100 * D.threads[v.thread].weight / totalAll);
    if (k > 0) o.dataset.tid = D.threads[v.thread].tid;
    select.appendChild(o);
  });
  function show(v) {
    cur.view = v; cur.tree = treeFor(v); cur.focus = 0; hovered = -1; tooltip.hidden = true;
    if (query) applySearch(); else render();
    renderTable();
  }
  select.addEventListener("change", function () { show(+select.value); });

  var resizeTimer = 0;
  window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(render, 100); });

  show(0);
  if (!D.threads.length) document.getElementById("functions").hidden = true;
  document.body.dataset.ready = "1";
})();
"""
