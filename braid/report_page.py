"""The page of ``braid run --report``: markup, styles and the drawing script, all inline.

:func:`braid.report.render_report` fills the ``{{name}}`` placeholders (title, totals,
legend, failures, and the run's data as JSON); the script reads the data and draws the
timeline on a canvas, the lane labels as elements (their ``title`` is the full place),
the hovered or selected run's dependency edges, and the detail panel.  It loads nothing
from anywhere.
"""

__all__ = ["PAGE"]

PAGE = """<!DOCTYPE html>
<html lang="en" data-bars-drawn="0">
<head>
<meta charset="utf-8">
<title>braid run: {{title}}</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #1f2328; }
  header { padding: 10px 14px; border-bottom: 1px solid #d0d7de; }
  h1 { font-size: 16px; margin: 0 0 4px; }
  .key { margin-right: 14px; white-space: nowrap; }
  .key i { display: inline-block; width: 11px; height: 11px; margin-right: 5px;
           vertical-align: -1px; border-radius: 2px; }
  .tasks { color: #57606a; }
  #failures { margin: 6px 0 0; padding-left: 18px; color: #b42318; max-height: 6em;
              overflow: auto; }
  #controls { padding: 6px 14px; color: #57606a; }
  #controls button { margin-right: 4px; }
  #axis { display: block; width: 100%; height: 26px; }
  #scroller { position: relative; overflow-y: auto; height: calc(100vh - 200px);
              min-height: 200px; }
  #timeline { position: sticky; top: 0; display: block; width: 100%; cursor: grab; }
  #gutter { position: absolute; left: 0; top: 0; width: 220px; z-index: 2; }
  .lane { position: absolute; left: 0; width: 214px; padding-left: 6px; font-size: 11px;
          line-height: 14px; white-space: nowrap; overflow: hidden; background: #fff; }
  .lane.odd { background: #f6f8fa; }
  #tip { position: fixed; display: none; pointer-events: none; background: #fff;
         border: 1px solid #8c959f; border-radius: 4px; padding: 6px 8px; z-index: 5;
         box-shadow: 0 2px 8px rgba(0,0,0,.15); max-width: 520px; white-space: pre-wrap; }
  #detail { position: fixed; right: 0; top: 0; bottom: 0; width: 400px; display: none;
            overflow: auto; background: #fff; border-left: 1px solid #d0d7de; z-index: 4;
            padding: 10px 14px; box-shadow: -2px 0 8px rgba(0,0,0,.08); }
  #detail h2 { font-size: 14px; margin: 0 26px 6px 0; word-break: break-all; }
  #detail dl { margin: 0; } #detail dt { color: #57606a; margin-top: 6px; }
  #detail dd { margin: 0; white-space: pre-wrap; word-break: break-word; }
  #detail pre { margin: 2px 0; font-size: 11px; white-space: pre-wrap;
                background: #f6f8fa; padding: 6px; border-radius: 4px; }
  #detail-close { position: absolute; right: 10px; top: 8px; }
  body.with-detail #axis, body.with-detail #scroller { width: calc(100% - 429px); }
</style>
</head>
<body>
<header>
  <h1>braid run: {{title}}</h1>
  <div>{{totals}}</div>
  <div id="legend">{{legend}}</div>
  {{failures}}
</header>
<div id="controls">
  <button id="zoom-in" type="button">zoom in</button>
  <button id="zoom-out" type="button">zoom out</button>
  <button id="zoom-tasks" type="button">fit task runs</button>
  <button id="zoom-reset" type="button">whole run</button>
  ctrl + wheel zooms, drag pans, double-click shows the whole run; hover a bar for details
  and its dependencies, click it to keep them
</div>
<canvas id="axis"></canvas>
<div id="scroller"><div id="gutter"></div><canvas id="timeline"></canvas><div id="spacer">
</div></div>
<div id="tip"></div>
<aside id="detail"><button id="detail-close" type="button">×</button><h2></h2><dl></dl></aside>
<script type="application/json" id="run-data">{{data}}</script>
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("run-data").textContent);
  var B = D.bars, N = B.start.length;
  var ROW = 14, BAR = 10, GAP = 8, AXIS = 26, GUTTER = 220;
  var canvas = document.getElementById("timeline"), axis = document.getElementById("axis");
  var scroller = document.getElementById("scroller"), gutter = document.getElementById("gutter");
  var spacer = document.getElementById("spacer"), tip = document.getElementById("tip");
  var panel = document.getElementById("detail");
  var ctx = canvas.getContext("2d"), actx = axis.getContext("2d");
  var keys = D.states.map(function (s) { return s.key; });
  var labels = D.states.map(function (s) { return s.label; });
  var outline = D.states.map(function (s) { return s.color; });
  var fills = D.tasks.map(function (t) { return t.color; });
  var laneTop = [], laneBars = [], y = 0;
  D.lanes.forEach(function (lane, i) {
    laneTop.push(y);
    var div = document.createElement("div");
    div.className = "lane" + (i % 2 ? " odd" : "");
    div.style.top = y + "px"; div.style.height = (lane.rows * ROW + GAP) + "px";
    div.textContent = lane.label; div.title = lane.name;
    gutter.appendChild(div);
    y += lane.rows * ROW + GAP; laneBars.push([]);
  });
  var contentH = y;
  for (var n = 0; n < N; n++) laneBars[B.lane[n]].push(n);
  var ups = {}, downs = {};
  D.edges.forEach(function (e) {
    (downs[e[0]] = downs[e[0]] || []).push(e[1]); (ups[e[1]] = ups[e[1]] || []).push(e[0]);
  });
  var span = Math.max(D.duration, 1e-6), W = 0, H = 0, selected = -1, hovered = -1;
  var v0 = D.focus[0], v1 = Math.max(D.focus[1], D.focus[0] + 1e-6);
  var hatch = (function () {
    var c = document.createElement("canvas"); c.width = c.height = 6;
    var x = c.getContext("2d"); x.fillStyle = "#fff"; x.fillRect(0, 0, 6, 6);
    x.strokeStyle = outline[keys.indexOf("UpstreamFailed")]; x.lineWidth = 2;
    x.beginPath(); x.moveTo(0, 6); x.lineTo(6, 0); x.stroke();
    return ctx.createPattern(c, "repeat");
  })();

  function fmt(s) {
    if (s === 0) return "0 s";
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    if (s < 120) return s.toFixed(2) + " s";
    return Math.floor(s / 60) + " min " + (s % 60).toFixed(0) + " s";
  }
  function xOf(t) { return GUTTER + (t - v0) / (v1 - v0) * (W - GUTTER - 8); }
  function tOf(x) { return v0 + (x - GUTTER) / (W - GUTTER - 8) * (v1 - v0); }
  function yOf(i) { return laneTop[B.lane[i]] + B.row[i] * ROW + 2 - scroller.scrollTop; }

  function resize() {
    var dpr = window.devicePixelRatio || 1;
    W = scroller.clientWidth;
    H = Math.min(scroller.clientHeight, contentH);
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    canvas.style.height = H + "px";
    axis.width = Math.round(W * dpr); axis.height = Math.round(AXIS * dpr);
    spacer.style.height = Math.max(0, contentH - H) + "px";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0); actx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }

  function drawBar(i, x0, y0, w) {
    var key = keys[B.state[i]], h = B.is_flow[i] ? BAR - 4 : BAR;
    var fill = B.color[i] < 0 ? D.flow_color : fills[B.color[i]];
    ctx.setLineDash([]); ctx.globalAlpha = 1;
    if (key === "UpstreamFailed") { fill = hatch; w = Math.max(w, 4); }
    else if (key === "CANCELLED") fill = "#e5e7eb";
    else if (key === "PENDING") fill = "#ffffff";
    else if (key === "RETRIED") ctx.globalAlpha = 0.45;
    ctx.fillStyle = fill; ctx.fillRect(x0, y0, w, h); ctx.globalAlpha = 1;
    if (key === "COMPLETED" && !B.is_flow[i]) return;
    ctx.strokeStyle = outline[B.state[i]];
    ctx.lineWidth = key === "FAILED" || key === "CRASHED" || key === "RUNNING" ? 2 : 1;
    if (key === "CANCELLED") ctx.setLineDash([3, 2]);
    if (key === "RETRIED" || key === "Cached") ctx.setLineDash([1, 2]);
    if (key === "Cached") ctx.lineWidth = 2;
    ctx.strokeRect(x0 + 0.5, y0 + 0.5, Math.max(1, w - 1), h - 1);
    if (key === "CRASHED") {
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x0 + w, y0 + h);
      ctx.moveTo(x0, y0 + h); ctx.lineTo(x0 + w, y0); ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  function draw() {
    var top = scroller.scrollTop, drawn = 0, delays = 0;
    ctx.clearRect(0, 0, W, H);
    for (var l = 0; l < D.lanes.length; l++) {
      var ly = laneTop[l] - top, lh = D.lanes[l].rows * ROW;
      if (ly + lh + GAP < 0 || ly > H) continue;
      ctx.fillStyle = l % 2 ? "#f6f8fa" : "#ffffff";
      ctx.fillRect(0, ly, W, lh + GAP);
      var bars = laneBars[l];
      for (var k = 0; k < bars.length; k++) {
        var i = bars[k], y0 = ly + B.row[i] * ROW + 2;
        if (y0 + BAR < 0 || y0 > H) continue;
        var x0 = Math.floor(xOf(B.start[i])), x1 = Math.floor(xOf(B.end[i]));
        if (x1 < GUTTER || x0 > W) continue;
        x0 = Math.max(x0, GUTTER);
        drawBar(i, x0, y0, Math.max(2, x1 - x0));
        if (B.attempt[i] && B.attempt[i] < B.attempts[i]) {
          // the retry delay: a dotted line to the next attempt (on any lane)
          ctx.strokeStyle = "#8c959f"; ctx.lineWidth = 1; ctx.setLineDash([2, 2]);
          ctx.beginPath(); ctx.moveTo(x1, y0 + BAR / 2);
          ctx.lineTo(xOf(B.start[i + 1]), yOf(i + 1) + BAR / 2); ctx.stroke();
          ctx.setLineDash([]);
          delays++;
        }
        drawn++;
      }
    }
    var edges = drawEdges(selected >= 0 ? selected : hovered);
    drawAxis();
    document.documentElement.setAttribute("data-bars-drawn", String(drawn));
    document.documentElement.setAttribute("data-edges-drawn", String(edges));
    document.documentElement.setAttribute("data-delays-drawn", String(delays));
  }

  function drawEdges(r) {
    if (r < 0) return 0;
    var list = (ups[r] || []).map(function (u) { return [u, r]; })
      .concat((downs[r] || []).map(function (d) { return [r, d]; }));
    ctx.strokeStyle = "#0969da"; ctx.lineWidth = 1.5;
    list.forEach(function (e) {
      var ax = xOf(B.end[e[0]]), ay = yOf(e[0]) + BAR / 2;
      var bx = xOf(B.start[e[1]]), by = yOf(e[1]) + BAR / 2, mx = (ax + bx) / 2;
      ctx.beginPath(); ctx.moveTo(ax, ay); ctx.bezierCurveTo(mx, ay, mx, by, bx, by);
      ctx.stroke();
      ctx.beginPath(); ctx.arc(bx, by, 2.5, 0, 2 * Math.PI); ctx.fillStyle = "#0969da";
      ctx.fill();
    });
    return list.length;
  }

  function drawAxis() {
    actx.clearRect(0, 0, W, AXIS);
    actx.font = "11px system-ui, sans-serif"; actx.textBaseline = "middle";
    actx.strokeStyle = "#d0d7de"; actx.beginPath();
    actx.moveTo(0, AXIS - 0.5); actx.lineTo(W, AXIS - 0.5); actx.stroke();
    var step = Math.pow(10, Math.floor(Math.log10((v1 - v0) / 6)));
    [1, 2, 5, 10].some(function (m) {
      if ((v1 - v0) / (step * m) <= 10) { step *= m; return true; } return false; });
    actx.fillStyle = "#57606a";
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var x = Math.floor(xOf(t)) + 0.5;
      actx.beginPath(); actx.moveTo(x, AXIS - 6); actx.lineTo(x, AXIS); actx.stroke();
      actx.fillText(fmt(t), x + 3, AXIS / 2);
    }
    actx.fillStyle = "#ffffff"; actx.fillRect(0, 0, GUTTER - 4, AXIS - 1);
    actx.fillStyle = "#57606a"; actx.fillText("+ time since start", 6, AXIS / 2);
  }

  function hit(ev) {
    var r = canvas.getBoundingClientRect(), x = ev.clientX - r.left;
    var cy = ev.clientY - r.top + scroller.scrollTop;
    if (x < GUTTER) return -1;
    for (var l = 0; l < D.lanes.length; l++) {
      var ly = laneTop[l];
      if (cy < ly || cy >= ly + D.lanes[l].rows * ROW) continue;
      var row = Math.floor((cy - ly) / ROW), best = -1, bestD = 4;
      laneBars[l].forEach(function (i) {
        if (B.row[i] !== row) return;
        var x0 = xOf(B.start[i]), x1 = Math.max(xOf(B.end[i]), x0 + 2);
        var d = x < x0 ? x0 - x : (x > x1 ? x - x1 : 0);
        if (d < bestD) { bestD = d; best = i; }
      });
      return best;
    }
    return -1;
  }

  function summary(i) {
    var lines = [(B.is_flow[i] ? "flow run " : "") + B.name[i],
                 (B.is_flow[i] ? "flow: " : "task: ") + B.task[i],
                 "state: " + labels[B.state[i]] +
                 (B.attempts[i] > 1 ? "  (attempt " + B.attempt[i] + " of " + B.attempts[i] + ")"
                  : ""),
                 "duration: " + fmt(B.end[i] - B.start[i]) + "  (from +" + fmt(B.start[i]) + ")",
                 "where: " + D.lanes[B.lane[i]].name];
    if (!B.is_flow[i]) lines.push("flow run: " + B.flow[i]);
    if (B.error[i]) lines.push("error: " + B.error[i]);
    return lines;
  }

  function tipFor(i, cx, cy) {
    tip.textContent = summary(i).join("\\n");
    tip.style.display = "block";
    var left = Math.min(cx + 14, window.innerWidth - tip.offsetWidth - 4);
    var top = Math.min(cy + 14, window.innerHeight - tip.offsetHeight - 4);
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, top) + "px";
  }

  function field(dl, name, text, pre) {
    var dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = name;
    if (pre) { var p = document.createElement("pre"); p.textContent = text; dd.appendChild(p); }
    else dd.textContent = text;
    dl.appendChild(dt); dl.appendChild(dd);
  }

  function select(i) {
    selected = i < 0 ? -1 : B.final[i];
    panel.style.display = selected < 0 ? "none" : "block";
    document.body.classList.toggle("with-detail", selected >= 0);   // the panel sits beside
    document.documentElement.setAttribute("data-selected", selected < 0 ? "" : B.name[selected]);
    resize();
    if (selected < 0) return;
    var r = selected, extra = D.details[String(r)] || {}, dl = panel.querySelector("dl");
    panel.querySelector("h2").textContent = (B.is_flow[r] ? "flow run " : "") + B.name[r];
    dl.textContent = "";
    field(dl, B.is_flow[r] ? "flow" : "task", B.task[r]);
    field(dl, "state", labels[B.state[r]]);
    field(dl, "where", D.lanes[B.lane[r]].name);
    field(dl, "started", "+" + fmt(B.start[r]) + ", took " + fmt(B.end[r] - B.start[r]));
    if (B.attempts[r] > 1) {
      var tries = [];
      for (var a = 0; a < N; a++) if (B.final[a] === r) tries.push(
        "attempt " + B.attempt[a] + ": +" + fmt(B.start[a]) + " for " +
        fmt(B.end[a] - B.start[a]) + " on " + D.lanes[B.lane[a]].name +
        (B.error[a] && a !== r ? " (" + B.error[a] + ")" : ""));
      field(dl, "attempts", tries.join("\\n"));
    }
    if (!B.is_flow[r]) field(dl, "flow run", B.flow[r]);
    field(dl, "message", extra.message || B.error[r] || "(none)");
    if (extra.parameters) field(dl, "arguments", Object.keys(extra.parameters).map(
      function (k) { return k + " = " + extra.parameters[k]; }).join("\\n"), true);
    if (ups[r]) field(dl, "waited for", ups[r].map(function (u) { return B.name[u]; })
      .join("\\n"));
    if (downs[r]) field(dl, "needed by", downs[r].map(function (d) { return B.name[d]; })
      .join("\\n"));
    if (extra.logs) field(dl, "logs", extra.logs, true);
    if (extra.traceback) field(dl, "traceback", extra.traceback, true);
    // a run that did not fail has no traceback to miss
    var failed = ["FAILED", "CRASHED"].indexOf(keys[B.state[r]]) >= 0;
    var missing = ["arguments", "logs", "traceback"].filter(function (k) {
      return !extra[k === "arguments" ? "parameters" : k] && (k !== "traceback" || failed); });
    if (!B.is_flow[r] && missing.length) field(dl, "not recorded", missing.join(", "));
  }

  // a link to one run: FILE.html#run=NAME scrolls to it, shows its details and edges
  function showLinkedRun() {
    var m = /^#run=(.+)$/.exec(window.location.hash);
    if (!m) return;
    var i = B.name.indexOf(decodeURIComponent(m[1]));
    if (i < 0) return;
    i = B.final[i];
    scroller.scrollTop = Math.max(0, laneTop[B.lane[i]] - ROW);
    select(i);
    var r = canvas.getBoundingClientRect();
    tipFor(i, r.left + xOf(B.start[i]), r.top + yOf(i));
    tip.setAttribute("data-run", B.name[i]);
  }

  function zoom(factor, at) {
    var t = at === undefined ? (v0 + v1) / 2 : at, w = (v1 - v0) * factor;
    w = Math.min(Math.max(w, span / 1e6), span * 1.05);
    var f = (t - v0) / (v1 - v0);
    v0 = t - f * w; v1 = v0 + w; draw();
  }

  var drag = null;
  canvas.addEventListener("mousedown", function (ev) {
    drag = {x: ev.clientX, v0: v0, v1: v1, moved: false}; });
  window.addEventListener("mouseup", function (ev) {
    if (drag && !drag.moved && ev.target === canvas) select(hit(ev));
    drag = null;
  });
  canvas.addEventListener("mousemove", function (ev) {
    if (drag) {
      var dt = (ev.clientX - drag.x) / (W - GUTTER - 8) * (drag.v1 - drag.v0);
      if (Math.abs(ev.clientX - drag.x) > 2) drag.moved = true;
      v0 = drag.v0 - dt; v1 = drag.v1 - dt; draw(); tip.style.display = "none"; return;
    }
    var i = hit(ev), r = i < 0 ? -1 : B.final[i];
    if (r !== hovered) { hovered = r; if (selected < 0) draw(); }
    if (i < 0) { tip.style.display = "none"; return; }
    tipFor(i, ev.clientX, ev.clientY);
  });
  canvas.addEventListener("mouseleave", function () {
    tip.style.display = "none"; hovered = -1; if (selected < 0) draw(); });
  canvas.addEventListener("wheel", function (ev) {
    if (!ev.ctrlKey && !ev.metaKey) return;
    ev.preventDefault();
    var r = canvas.getBoundingClientRect();
    zoom(ev.deltaY > 0 ? 1.25 : 0.8, tOf(ev.clientX - r.left));
  }, {passive: false});
  canvas.addEventListener("dblclick", function () { v0 = 0; v1 = span; draw(); });
  document.getElementById("detail-close").onclick = function () { select(-1); };
  document.getElementById("zoom-in").onclick = function () { zoom(0.5); };
  document.getElementById("zoom-out").onclick = function () { zoom(2); };
  document.getElementById("zoom-tasks").onclick = function () {
    v0 = D.focus[0]; v1 = Math.max(D.focus[1], v0 + 1e-6); draw(); };
  document.getElementById("zoom-reset").onclick = function () { v0 = 0; v1 = span; draw(); };
  scroller.addEventListener("scroll", draw);
  window.addEventListener("resize", resize);
  window.addEventListener("hashchange", showLinkedRun);
  resize();
  showLinkedRun();
})();
</script>
</body>
</html>
"""
