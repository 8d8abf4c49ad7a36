
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("spprof-data").textContent);
  var M = spprofModel(D);
  var fName = M.fName, fFile = M.fFile, fNative = M.fNative;
  var fmtMs = M.fmtMs, fmtPct = M.fmtPct, fmtInt = M.fmtInt;
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
  var threadFilter = document.getElementById("thread-filter");
  var viewInfo = document.getElementById("view-info");
  var splitBox = document.getElementById("split-lines");
  var search = document.getElementById("search");
  var matchInfo = document.getElementById("match-info");
  var resetBtn = document.getElementById("reset-zoom");
  var crumbs = document.getElementById("breadcrumb");
  var tooltip = document.getElementById("tooltip");
  var tbody = document.querySelector("#func-table tbody");
  var moreInfo = document.getElementById("func-more");

  // ---- state ------------------------------------------------------------

  // View 0 is all threads merged; then one per track, costliest first.
  var views = M.views();
  var cur = { view: 0, tree: null, focus: 0, byLine: splitBox.checked };
  var matchFrame = null, query = "";
  var sortKey = "self", sortCol = "self_pct", sortDir = -1;

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
      root ? 'data-root="1"' : 'data-name="' + esc(fName(f)) + '" data-loc="' + esc(M.nodeLoc(views[cur.view], t, n)) + '"',
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
      var loc = n === 0 ? "" : M.nodeLoc(views[cur.view], t, n);
      if (loc || (n !== 0 && fNative(f))) tooltip.appendChild(line("tt-loc", loc + (fNative(f) ? (loc ? "  " : "") + "[native]" : "")));
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
    matchFrame = new Uint8Array(M.NF);
    for (var f = 0; f < M.NF; f++) {
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

  function renderTable() {
    var t = cur.tree, total = t.totalW[0];
    var split = views[cur.view].tree(true);
    if (!split.stats) split.stats = M.functionStats(split);
    var rows = split.stats.slice();
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
      td("txt loc", "\u2068" + r.loc + "\u2069", r.lines);
      td("num", fmtMs(r.self * INTERVAL_MS)); pct(r.self);
      td("num", fmtMs(r.total * INTERVAL_MS)); pct(r.total);
      frag.appendChild(tr);
    });
    tbody.appendChild(frag);
    moreInfo.textContent = rows.length > TABLE_ROWS ? (rows.length - TABLE_ROWS) + " more functions not shown." : "";
    // Only the header that was clicked shows the arrow ("Self ms" and
    // "Self %" sort alike).
    document.querySelectorAll("#func-table th").forEach(function (th) {
      var on = th.dataset.col === sortCol;
      th.classList.toggle("sorted", on);
      th.classList.toggle("asc", on && sortDir > 0);
      th.classList.toggle("desc", on && sortDir < 0);
    });
  }

  document.querySelector("#func-table thead").addEventListener("click", function (e) {
    var th = e.target.closest("th");
    if (!th) return;
    var key = th.dataset.key;
    if (th.dataset.col === sortCol) sortDir = -sortDir;
    else { sortKey = key; sortDir = key === "name" || key === "loc" ? 1 : -1; }
    sortCol = th.dataset.col;
    renderTable();
  });
  tbody.addEventListener("click", function (e) {
    var tr = e.target.closest("tr");
    if (!tr) return;
    search.value = tr.dataset.name;
    applySearch();
  });

  // ---- thread selector ------------------------------------------------

  var totalAll = D.total_weight || 1;
  views.forEach(function (v, k) {
    v.text = k === 0 ? v.label : v.label + " \u2014 " + fmtPct(100 * v.weight / totalAll);
    v.key = v.label.toLowerCase();
  });
  // The filter keeps "All threads" and the entry shown, and the others whose
  // label holds the text typed (any case).
  function fillSelect() {
    var q = threadFilter.value.trim().toLowerCase(), shown = 0;
    select.textContent = "";
    views.forEach(function (v, k) {
      var hit = k > 0 && (!q || v.key.indexOf(q) >= 0);
      if (hit) shown++;
      if (k > 0 && !hit && k !== cur.view) return;
      var o = document.createElement("option");
      o.value = String(k);
      o.textContent = v.text;
      if (v.threads.length === 1 && k > 0) o.dataset.tid = v.threads[0].tid;
      select.appendChild(o);
    });
    select.value = String(cur.view);
    threadFilter.classList.toggle("none", !!q && !shown);
    return shown;
  }
  function showInfo() {
    var v = views[cur.view], n = v.threads.length;
    viewInfo.textContent = fmtInt(n) + " thread" + (n === 1 ? "" : "s") + ", " + fmtMs(v.weight * INTERVAL_MS) +
      (WALL ? " sampled" : " CPU") + (cur.view ? " (" + fmtPct(100 * v.weight / totalAll) + ")" : "");
  }
  function show(v) {
    var view = views[v];
    cur.view = v; cur.tree = view.tree(cur.byLine); cur.focus = 0; hovered = -1; tooltip.hidden = true;
    fillSelect();
    showInfo();
    if (query) applySearch(); else render();
    renderTable();
  }
  select.addEventListener("change", function () { show(+select.value); });
  threadFilter.addEventListener("input", fillSelect);
  threadFilter.addEventListener("keydown", function (e) {
    // Enter shows the first entry that matches.
    if (e.key !== "Enter") return;
    var q = threadFilter.value.trim().toLowerCase();
    for (var k = 1; k < views.length; k++) {
      if (views[k].key.indexOf(q) >= 0) { show(k); return; }
    }
  });
  threadFilter.parentNode.hidden = views.length < 3;

  // ---- one box per function, or per line -------------------------------

  splitBox.addEventListener("change", function () {
    var view = views[cur.view], byLine = splitBox.checked;
    if (byLine === cur.byLine) return;
    var tree = view.tree(byLine);  // makes the split tree the focus maps through
    cur.focus = M.counterpart(view, cur.focus, byLine);
    cur.byLine = byLine; cur.tree = tree; hovered = -1; tooltip.hidden = true;
    if (query) applySearch(); else render();
  });

  // ---- wall mode: time off CPU shown or hidden --------------------------

  var WALL = D.mode === "wall";
  var showIdle = document.getElementById("show-idle");
  document.getElementById("idle-toggle").hidden = !WALL;
  function describeWidths() {
    document.getElementById("widths").textContent = !WALL ? "Widths are CPU time." :
      showIdle.checked ? "Widths are real time, on and off CPU (<idle>, <waiting for the GIL>)." :
      "Widths are time on CPU (time off CPU hidden).";
  }
  showIdle.addEventListener("change", function () {
    M.setHideIdle(views, !showIdle.checked);
    describeWidths();
    show(cur.view);
  });
  describeWidths();

  var resizeTimer = 0;
  window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(render, 100); });

  show(0);
  if (!D.threads.length) document.getElementById("functions").hidden = true;
  document.body.dataset.ready = "1";
})();
