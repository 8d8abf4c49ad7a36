// The report's model: call trees, per-line shares and the function table,
// computed from the embedded data (see html.py). No DOM here; page.js,
// which follows this file in the same <script> element, draws what it returns.
function spprofModel(D) {
  "use strict";
  var S = D.strings, F = D.frames, NF = F.length / 4;

  function fName(f) { return f < 0 ? "all" : S[F[4 * f]]; }
  function fFile(f) { return S[F[4 * f + 1]]; }
  function fLine(f) { return F[4 * f + 2]; }
  function fNative(f) { return F[4 * f + 3] === 1; }
  // Markers the profiler adds (<gc>, <no Python frame>, <truncated>, ...)
  // have no place in the source: no file, or a bracketed name on line 0.
  // (<lambda> and <module> frames have a file and a line, and keep them.)
  function fSynthetic(f) {
    return !fFile(f) || (fLine(f) <= 0 && /^<[^<>]*>$/.test(fName(f)));
  }
  function fLoc(f) { return fSynthetic(f) ? "" : fFile(f) + ":" + fLine(f); }

  function fmtInt(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function fmtMs(ms) {
    if (ms >= 10000) { var tenths = Math.round(ms / 100); return fmtInt(Math.floor(tenths / 10)) + "." + tenths % 10 + " s"; }
    if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
    if (ms >= 10) return ms.toFixed(0) + " ms";
    return ms.toFixed(1) + " ms";
  }
  function fmtPct(x) { return (x >= 10 ? x.toFixed(1) : x.toFixed(2)) + "%"; }

  // One id per function (name and file), whatever the line.
  var FUNC = new Int32Array(NF), NFUNC = 0;
  (function () {
    var ids = new Map();
    for (var f = 0; f < NF; f++) {
      var key = F[4 * f] * S.length + F[4 * f + 1], id = ids.get(key);
      if (id === undefined) { id = NFUNC++; ids.set(key, id); }
      FUNC[f] = id;
    }
  })();

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

  // The trie with the children of a node that run the same function on
  // different lines folded into one node ("one box per function"). A merged
  // node is created after its parent, so parents still precede children.
  // ``of`` maps a trie node to its merged node; ``members`` lists, per merged
  // node, the trie nodes folded into it (for the per-line shares).
  var MERGED = (function () {
    var n = TRIE.size, of = new Int32Array(n), parent = [-1], frame = [-1], index = new Map();
    for (var i = 1; i < n; i++) {
      var p = of[TRIE.parent[i]], f = TRIE.frame[i], key = p * NFUNC + FUNC[f], m = index.get(key);
      if (m === undefined) { m = parent.length; index.set(key, m); parent.push(p); frame.push(f); }
      of[i] = m;
    }
    var size = parent.length, start = new Int32Array(size + 1);
    for (i = 1; i < n; i++) start[of[i] + 1]++;
    for (i = 0; i < size; i++) start[i + 1] += start[i];
    var members = new Int32Array(Math.max(n - 1, 0)), fill = start.slice(0, size);
    for (i = 1; i < n; i++) members[fill[of[i]]++] = i;
    return { size: size, parent: Int32Array.from(parent), frame: Int32Array.from(frame), of: of,
             start: start, members: members };
  })();

  // Wall mode: the frames that end time off CPU (html.py's OFF_CPU_FRAMES),
  // left out of every tree while idle time is hidden.
  var OFF = new Uint8Array(NF), hideIdle = false;
  for (var f0 = 0; f0 < NF; f0++) OFF[f0] = !fFile(f0) && (D.off_cpu_frames || []).indexOf(fName(f0)) >= 0 ? 1 : 0;

  // A view's trie-level tree: the shared trie with the chosen threads' weights.
  function splitTree(threads) {
    var n = TRIE.size, selfW = new Float64Array(n), selfC = new Float64Array(n);
    threads.forEach(function (th) {
      var lv = th.leaves, node = 0;
      for (var j = 0; j < lv.length; j += 3) {
        node += lv[j];
        if (hideIdle && OFF[TRIE.frame[node]]) continue;
        selfW[node] += lv[j + 1]; selfC[node] += lv[j + 1] - lv[j + 2];
      }
    });
    return finish({ size: n, parent: TRIE.parent, frame: TRIE.frame, selfW: selfW, selfC: selfC, split: true });
  }

  // The same view with one node per function among siblings.
  function mergedTree(split) {
    var n = MERGED.size, selfW = new Float64Array(n), selfC = new Float64Array(n), of = MERGED.of;
    for (var i = 0; i < split.size; i++) { selfW[of[i]] += split.selfW[i]; selfC[of[i]] += split.selfC[i]; }
    return finish({ size: n, parent: MERGED.parent, frame: MERGED.frame, selfW: selfW, selfC: selfC, split: false });
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
        seg.sort(function (u, v) {
          return tw[v] - tw[u] || (fName(t.frame[u]) < fName(t.frame[v]) ? -1 : fName(t.frame[u]) > fName(t.frame[v]) ? 1 : 0) ||
            fLine(t.frame[u]) - fLine(t.frame[v]);
        });
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

  // A view: a label and its threads; its trees are made when first shown.
  function View(label, threads, weight) {
    this.label = label; this.threads = threads; this.weight = weight;
    this.split = null; this.merged = null;
  }
  View.prototype.tree = function (byLine) {
    if (!this.split) this.split = splitTree(this.threads);
    if (byLine) return this.split;
    if (!this.merged) this.merged = mergedTree(this.split);
    return this.merged;
  };

  // Show or hide the time off CPU: every view's trees are made again.
  function setHideIdle(all, hide) {
    hideIdle = !!hide;
    all.forEach(function (v) { v.split = null; v.merged = null; });
  }

  // "All threads", then one view per track in the embedded (CPU) order.
  function views() {
    var out = [new View("All threads", D.threads, D.total_weight)];
    (D.tracks || []).forEach(function (g) {
      var ths = g.threads.map(function (i) { return D.threads[i]; });
      var label = ths.length === 1 ? g.name + " (tid " + ths[0].tid + ")" : g.name + " (" + ths.length + " threads)";
      out.push(new View(label, ths, g.weight));
    });
    return out;
  }

  // The node of the other tree of the same view that stands for node n:
  // its merged node, or a merged node's heaviest member.
  function counterpart(view, n, toSplit) {
    if (n === 0) return 0;
    if (!toSplit) return MERGED.of[n];
    var best = -1, bw = -1, tw = view.split.totalW;
    for (var i = MERGED.start[n]; i < MERGED.start[n + 1]; i++) {
      var m = MERGED.members[i];
      if (tw[m] > bw) { bw = tw[m]; best = m; }
    }
    return best < 0 ? 0 : best;
  }

  function lineText(lines, most) {
    var total = 0;
    lines.forEach(function (lw) { total += lw[1]; });
    var parts = lines.slice(0, most).map(function (lw) {
      return lw[0] + " (" + Math.round(100 * lw[1] / (total || 1)) + "%)";
    });
    if (lines.length > most) parts.push(lines.length - most + " more");
    return "lines " + parts.join(", ");
  }

  function sortedLines(map) {
    var lines = [];
    map.forEach(function (w, ln) { if (w > 0) lines.push([ln, w]); });
    lines.sort(function (a, b) { return b[1] - a[1] || a[0] - b[0]; });
    return lines;
  }

  // Where node n of tree t is in the source: "file:line" for one line,
  // "file: lines 28 (60%), 31 (40%)" for a merged node of several lines, ""
  // for the profiler's markers.
  function nodeLoc(view, t, n) {
    var f = t.frame[n];
    if (fSynthetic(f)) return "";
    if (t.split || MERGED.start[n + 1] - MERGED.start[n] < 2) return fLoc(f);
    var tw = view.split.totalW, byLine = new Map();
    for (var i = MERGED.start[n]; i < MERGED.start[n + 1]; i++) {
      var m = MERGED.members[i], ln = fLine(TRIE.frame[m]);
      byLine.set(ln, (byLine.get(ln) || 0) + tw[m]);
    }
    var lines = sortedLines(byLine);
    if (lines.length <= 1) return fFile(f) + ":" + (lines.length ? lines[0][0] : fLine(f));
    return fFile(f) + ": " + lineText(lines, 4);
  }

  // Self = leaf weight; total = weight of the subtrees where the function
  // first appears on the path, so recursion is counted once, as in
  // FunctionStats. Lines come from the trie-level tree.
  function functionStats(t) {
    var byFunc = new Map(), list = [];
    function entry(f) {
      var e = byFunc.get(FUNC[f]);
      if (!e) {
        e = { name: fName(f), file: fFile(f), synthetic: fSynthetic(f), self: 0, total: 0,
              selfLines: new Map(), anyLines: new Map() };
        byFunc.set(FUNC[f], e); list.push(e);
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
      var lines = sortedLines(e.selfLines.size ? e.selfLines : e.anyLines);
      e.line = lines.length ? lines[0][0] : 0;
      e.loc = e.synthetic ? "" : e.file + ":" + e.line;
      e.lines = e.synthetic || lines.length < 2 ? e.loc : e.file + ": " + lineText(lines, 6);
      delete e.selfLines; delete e.anyLines;
    });
    return list;
  }

  return {
    NF: NF, fName: fName, fFile: fFile, fLine: fLine, fNative: fNative, fLoc: fLoc,
    fmtInt: fmtInt, fmtMs: fmtMs, fmtPct: fmtPct,
    views: views, counterpart: counterpart, nodeLoc: nodeLoc, functionStats: functionStats,
    setHideIdle: setHideIdle
  };
}
