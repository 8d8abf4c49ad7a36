
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
