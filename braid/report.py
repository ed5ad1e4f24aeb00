"""A flow run drawn as a self-contained HTML timeline (``braid run --report FILE.html``).

:func:`write_report` turns a :class:`~braid.core.records.FlowRunRecord` (or its
``to_dict()``) into one HTML file that needs no network: the run's data is embedded
as JSON and drawn by an inline script on a ``<canvas>``.  The page shows one lane per
place a task ran (``where``: a process and thread, a Dask worker, a Ray node), one bar
per task run coloured by its final state, the flow runs (nested ones included) on a
lane of their own, a legend and the run's totals; hovering a bar shows its name,
task, state, duration, place and first error line.

It stays fast with tens of thousands of task runs because only what is visible is
drawn: lanes are virtualised (the canvas is the size of the viewport, scrolling
redraws it) and bars overlapping in time on one lane are packed into rows here, in
Python, once.  After every paint the script writes how many bars it drew into
``data-bars-drawn`` on ``<html>``, which tests read back from the DOM.
"""

from __future__ import annotations

import heapq
import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["STATE_COLORS", "format_duration", "render_report", "timeline_data",
           "write_report"]

#: the colour of each legend key: a final state type, or a state name drawn apart
STATE_COLORS: dict[str, str] = {
    "COMPLETED": "#2e9e5b",
    "FAILED": "#d64545",
    "UpstreamFailed": "#f2a7a7",
    "CRASHED": "#8e44ad",
    "CANCELLED": "#9aa0a6",
    "RUNNING": "#3b82f6",
    "PENDING": "#d1d5db",
}
_LABELS = {"UpstreamFailed": "upstream failed (did not run)"}
FLOW_LANE = "flow runs"
NOT_STARTED_LANE = "did not start"


def state_key(state_type: str | None, state_name: str | None) -> str:
    """The legend key of a run: its state type, except runs skipped for a failed upstream."""
    if state_name == "UpstreamFailed":
        return "UpstreamFailed"
    return state_type or "PENDING"


def _natural(text: str) -> list:
    """Sort key that puts ``worker-2`` before ``worker-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _as_dict(run: Any) -> Mapping[str, Any]:
    if isinstance(run, Mapping):
        return run
    to_dict = getattr(run, "to_dict", None)
    if to_dict is None:
        raise TypeError(f"expected a FlowRunRecord or its to_dict(), got {type(run).__name__}")
    return to_dict()


def _walk_flows(flow: Mapping[str, Any], depth: int = 0) -> list[tuple[Mapping, int]]:
    out = [(flow, depth)]
    for child in flow.get("flow_runs", ()):
        out.extend(_walk_flows(child, depth + 1))
    return out


def _pack(spans: list[tuple[float, float, int]]) -> dict[int, int]:
    """Assign each (start, end, index) a row so spans on one row never overlap in time."""
    rows: dict[int, int] = {}
    free: list[tuple[float, int]] = []   # (end of the row's last span, row)
    count = 0
    for start, end, index in sorted(spans):
        if free and free[0][0] <= start:
            _, row = heapq.heappop(free)
        else:
            row, count = count, count + 1
        rows[index] = row
        heapq.heappush(free, (end, row))
    return rows


def timeline_data(run: Any) -> dict[str, Any]:
    """The report's data: lanes, and the bars as columns (times in seconds from the start).

    ``run`` is a FlowRunRecord or its ``to_dict()``.  Lanes come in this order: the
    flow runs, each place tasks ran (natural order), then task runs that never started
    (drawn as a thin mark at the time they ended).  Each bar has its lane, its row in
    the lane, start, end, legend key index, run name, task or flow name, flow run name,
    error and whether it is a flow run.
    """
    top = _as_dict(run)
    flows = _walk_flows(top)
    starts = [f["start"] for f, _ in flows if f.get("start") is not None]
    ends = [f["end"] for f, _ in flows if f.get("end") is not None]
    items: list[dict[str, Any]] = []
    for f, depth in flows:
        items.append({"lane": FLOW_LANE, "start": f.get("start"), "end": f.get("end"),
                      "key": state_key(f.get("state_type"), f.get("state_name")),
                      "name": f.get("name", ""), "task": f.get("flow_name", ""),
                      "flow": f.get("name", ""), "error": f.get("error"),
                      "is_flow": True, "depth": depth})
        for t in f.get("task_runs", ()):
            started = t.get("start") is not None
            items.append({"lane": (t.get("where") or "unknown place") if started
                          else NOT_STARTED_LANE,
                          "start": t.get("start") if started else t.get("end"),
                          "end": t.get("end"),
                          "key": state_key(t.get("state_type"), t.get("state_name")),
                          "name": t.get("name", ""), "task": t.get("task_name", ""),
                          "flow": f.get("name", ""), "error": t.get("error"),
                          "is_flow": False, "depth": depth})
            for key in ("start", "end"):
                if t.get(key) is not None:
                    (starts if key == "start" else ends).append(t[key])
    t0 = min(starts) if starts else 0.0
    t1 = max([*ends, *starts, t0])
    for item in items:
        # a run still going (or never timed) is drawn up to the end of the report
        item["start"] = t0 if item["start"] is None else item["start"]
        item["end"] = max(item["start"], t1 if item["end"] is None else item["end"])

    places = sorted({i["lane"] for i in items} - {FLOW_LANE, NOT_STARTED_LANE}, key=_natural)
    lane_names = [FLOW_LANE, *places]
    if any(i["lane"] == NOT_STARTED_LANE for i in items):
        lane_names.append(NOT_STARTED_LANE)
    lane_index = {name: i for i, name in enumerate(lane_names)}
    by_lane: dict[int, list[tuple[float, float, int]]] = {}
    for n, item in enumerate(items):
        by_lane.setdefault(lane_index[item["lane"]], []).append(
            (item["start"], item["end"], n))
    row_of: dict[int, int] = {}
    lanes = []
    for i, name in enumerate(lane_names):
        packed = _pack(by_lane.get(i, []))
        row_of.update(packed)
        lanes.append({"name": name, "rows": max(packed.values(), default=0) + 1})

    task_times = [t for i in items if not i["is_flow"] for t in (i["start"], i["end"])]
    # the view opens on the task runs: a cluster's start-up would squeeze them to a line
    focus = [min(task_times, default=t0) - t0, max(task_times, default=t1) - t0]
    pad = max((focus[1] - focus[0]) * 0.02, 1e-6)
    keys = list(STATE_COLORS)
    return {
        "focus": [round(max(0.0, focus[0] - pad), 6), round(min(t1 - t0, focus[1] + pad), 6)],
        "title": f"{top.get('name', '')} ({top.get('flow_name', '')})",
        "runner": top.get("runner", ""),
        "t0": t0,
        "duration": t1 - t0,
        "lanes": lanes,
        "states": [{"key": k, "label": _LABELS.get(k, k.lower()), "color": STATE_COLORS[k]}
                   for k in keys],
        "bars": {
            "lane": [lane_index[i["lane"]] for i in items],
            "row": [row_of[n] for n in range(len(items))],
            "start": [round(i["start"] - t0, 6) for i in items],
            "end": [round(i["end"] - t0, 6) for i in items],
            "state": [keys.index(i["key"]) if i["key"] in keys else keys.index("PENDING")
                      for i in items],
            "name": [i["name"] for i in items],
            "task": [i["task"] for i in items],
            "flow": [i["flow"] for i in items],
            "error": [i["error"] for i in items],
            "is_flow": [1 if i["is_flow"] else 0 for i in items],
        },
    }


def _totals(top: Mapping[str, Any]) -> tuple[dict[str, int], int, int, list[str]]:
    """Task runs by legend key, task run count, flow run count, distinct first errors."""
    counts: dict[str, int] = {}
    tasks = 0
    flows = _walk_flows(top)
    errors: list[str] = []
    for f, _ in flows:
        for t in f.get("task_runs", ()):
            tasks += 1
            key = state_key(t.get("state_type"), t.get("state_name"))
            counts[key] = counts.get(key, 0) + 1
            err = t.get("error")
            if err and key != "UpstreamFailed" and err not in errors:
                errors.append(err)
    return counts, tasks, len(flows), errors


def format_duration(seconds: float) -> str:
    """A duration for people: ``12 µs``, ``3.4 ms``, ``2.50 s``, ``3 min 5 s``."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _json_for_script(data: Any) -> str:
    # "<" escaped so no task name can close the <script> element it is embedded in
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def render_report(run: Any) -> str:
    """The HTML page for ``run`` (a FlowRunRecord or its ``to_dict()``), as a string.

    The page loads nothing from anywhere: styles, data and script are inline.
    """
    top = _as_dict(run)
    data = timeline_data(top)
    counts, n_tasks, n_flows, errors = _totals(top)
    e = html.escape
    legend = "".join(
        f'<span class="key"><i style="background:{s["color"]}"></i>{e(s["label"])}'
        f' <b data-state="{e(s["key"])}">{counts.get(s["key"], 0)}</b></span>'
        for s in data["states"] if counts.get(s["key"]) or s["key"] in ("COMPLETED", "FAILED")
    )
    state = e(f"{top.get('state_type') or 'RUNNING'}"
              + (f" ({top['state_name']})" if top.get("state_name") and
                 top.get("state_name", "").upper() != top.get("state_type") else ""))
    failures = "".join(f"<li>{e(msg)}</li>" for msg in errors[:20])
    if len(errors) > 20:
        failures += f"<li>… and {len(errors) - 20} more</li>"
    places = len(data["lanes"]) - 1 - (data["lanes"][-1]["name"] == NOT_STARTED_LANE)
    totals = (f'<span id="totals">flow run <b>{state}</b> · <b id="task-count">{n_tasks}'
              f'</b> task runs · {n_flows} flow run{"s" if n_flows != 1 else ""} · '
              f'{places} place{"s" if places != 1 else ""} · '
              f'{e(format_duration(data["duration"]))} · runner {e(data["runner"])}</span>')
    parts = {"title": e(data["title"]), "totals": totals, "legend": legend,
             "failures": f"<ul id='failures'>{failures}</ul>" if failures else "",
             "data": _json_for_script(data)}
    # one pass, so text from the run can never be taken for a placeholder
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _PAGE)


def write_report(run: Any, path: str | Path) -> Path:
    """Write the report of ``run`` to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    out.write_text(render_report(run), encoding="utf-8")
    return out


_PAGE = """<!DOCTYPE html>
<html lang="en" data-bars-drawn="0">
<head>
<meta charset="utf-8">
<title>braid run: {{title}}</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #1f2328; }
  header { padding: 10px 14px; border-bottom: 1px solid #d0d7de; }
  h1 { font-size: 16px; margin: 0 0 4px; }
  .key { margin-right: 14px; white-space: nowrap; }
  .key i { display: inline-block; width: 11px; height: 11px; margin-right: 4px;
           vertical-align: -1px; border-radius: 2px; }
  #failures { margin: 6px 0 0; padding-left: 18px; color: #b42318; max-height: 6em;
              overflow: auto; }
  #controls { padding: 6px 14px; color: #57606a; }
  #controls button { margin-right: 4px; }
  #scroller { position: relative; overflow-y: auto; height: calc(100vh - 150px);
              min-height: 200px; }
  #timeline { position: sticky; top: 0; display: block; width: 100%; cursor: grab; }
  #tip { position: fixed; display: none; pointer-events: none; background: #fff;
         border: 1px solid #8c959f; border-radius: 4px; padding: 6px 8px;
         box-shadow: 0 2px 8px rgba(0,0,0,.15); max-width: 520px; white-space: pre-wrap; }
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
  ctrl + wheel zooms, drag pans, double-click shows the whole run, hover a bar for details
</div>
<div id="scroller"><canvas id="timeline"></canvas><div id="spacer"></div></div>
<div id="tip"></div>
<script type="application/json" id="run-data">{{data}}</script>
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("run-data").textContent);
  var B = D.bars, N = B.start.length;
  var ROW = 14, BAR = 10, GAP = 8, AXIS = 26, GUTTER = 190;
  var canvas = document.getElementById("timeline");
  var scroller = document.getElementById("scroller");
  var spacer = document.getElementById("spacer");
  var tip = document.getElementById("tip");
  var ctx = canvas.getContext("2d");
  var colors = D.states.map(function (s) { return s.color; });
  var labels = D.states.map(function (s) { return s.label; });
  // lane geometry (content coordinates, below the axis) and each lane's bars
  var laneTop = [], laneBars = [], y = 0;
  D.lanes.forEach(function (lane, i) { laneTop.push(y); y += lane.rows * ROW + GAP;
                                        laneBars.push([]); });
  var contentH = y;
  for (var n = 0; n < N; n++) laneBars[B.lane[n]].push(n);
  var span = Math.max(D.duration, 1e-6), W = 0, H = 0;
  var v0 = D.focus[0], v1 = Math.max(D.focus[1], D.focus[0] + 1e-6);

  function fmt(s) {
    if (s === 0) return "0 s";
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    if (s < 120) return s.toFixed(2) + " s";
    return Math.floor(s / 60) + " min " + (s % 60).toFixed(0) + " s";
  }
  function xOf(t) { return GUTTER + (t - v0) / (v1 - v0) * (W - GUTTER - 8); }
  function tOf(x) { return v0 + (x - GUTTER) / (W - GUTTER - 8) * (v1 - v0); }

  function resize() {
    var dpr = window.devicePixelRatio || 1;
    W = scroller.clientWidth;
    H = Math.min(scroller.clientHeight, AXIS + contentH);
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    canvas.style.height = H + "px";
    spacer.style.height = Math.max(0, AXIS + contentH - H) + "px";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }

  function draw() {
    var top = scroller.scrollTop, drawn = 0;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
    for (var l = 0; l < D.lanes.length; l++) {
      var ly = AXIS + laneTop[l] - top, lh = D.lanes[l].rows * ROW;
      if (ly + lh < AXIS || ly > H) continue;
      ctx.fillStyle = l % 2 ? "#f6f8fa" : "#ffffff";
      ctx.fillRect(0, ly, W, lh + GAP);
      var bars = laneBars[l], last = -1;
      for (var k = 0; k < bars.length; k++) {
        var i = bars[k], y0 = ly + B.row[i] * ROW + 2;
        if (y0 + BAR < AXIS || y0 > H) continue;
        var x0 = Math.floor(xOf(B.start[i])), x1 = Math.floor(xOf(B.end[i]));
        if (x1 < GUTTER || x0 > W) continue;
        x0 = Math.max(x0, GUTTER);
        if (B.state[i] !== last) { last = B.state[i]; ctx.fillStyle = colors[last]; }
        ctx.fillRect(x0, y0, Math.max(2, x1 - x0), B.is_flow[i] ? BAR - 4 : BAR);
        drawn++;
      }
      ctx.fillStyle = "#ffffff"; ctx.fillRect(0, ly, GUTTER - 4, lh + GAP);
      ctx.fillStyle = "#1f2328";
      var name = D.lanes[l].name;
      if (name.length > 30) name = "…" + name.slice(-29);
      ctx.fillText(name, 6, ly + Math.min(lh, ROW) / 2 + 1);
    }
    drawAxis();
    document.documentElement.setAttribute("data-bars-drawn", String(drawn));
  }

  function drawAxis() {
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, W, AXIS);
    ctx.strokeStyle = "#d0d7de"; ctx.beginPath();
    ctx.moveTo(0, AXIS - 0.5); ctx.lineTo(W, AXIS - 0.5); ctx.stroke();
    var step = Math.pow(10, Math.floor(Math.log10((v1 - v0) / 6)));
    [1, 2, 5, 10].some(function (m) {
      if ((v1 - v0) / (step * m) <= 10) { step *= m; return true; } return false; });
    ctx.fillStyle = "#57606a";
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var x = Math.floor(xOf(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, AXIS - 6); ctx.lineTo(x, AXIS); ctx.stroke();
      ctx.fillText(fmt(t), x + 3, AXIS / 2);
    }
    ctx.fillText("+ time since start", 6, AXIS / 2);
  }

  function hit(ev) {
    var r = canvas.getBoundingClientRect(), x = ev.clientX - r.left;
    var cy = ev.clientY - r.top - AXIS + scroller.scrollTop;
    if (x < GUTTER || ev.clientY - r.top < AXIS) return -1;
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

  function showTip(ev) {
    var i = hit(ev);
    if (i < 0) { tip.style.display = "none"; return; }
    tipFor(i, ev.clientX, ev.clientY);
  }

  function tipFor(i, cx, cy) {
    var lines = [(B.is_flow[i] ? "flow run " : "") + B.name[i],
                 (B.is_flow[i] ? "flow: " : "task: ") + B.task[i],
                 "state: " + labels[B.state[i]],
                 "duration: " + fmt(B.end[i] - B.start[i]) + "  (from +" + fmt(B.start[i]) + ")",
                 "where: " + D.lanes[B.lane[i]].name];
    if (!B.is_flow[i]) lines.push("flow run: " + B.flow[i]);
    if (B.error[i]) lines.push("error: " + B.error[i]);
    tip.textContent = lines.join("\\n");
    tip.style.display = "block";
    var left = Math.min(cx + 14, window.innerWidth - tip.offsetWidth - 4);
    var top = Math.min(cy + 14, window.innerHeight - tip.offsetHeight - 4);
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, top) + "px";
  }

  // a link to one run: FILE.html#run=NAME scrolls to its bar and shows its details
  function showLinkedRun() {
    var m = /^#run=(.+)$/.exec(window.location.hash);
    if (!m) return;
    var i = B.name.indexOf(decodeURIComponent(m[1]));
    if (i < 0) return;
    scroller.scrollTop = Math.max(0, laneTop[B.lane[i]] - ROW);
    draw();
    var r = canvas.getBoundingClientRect();
    tipFor(i, r.left + xOf(B.start[i]),
           r.top + AXIS + laneTop[B.lane[i]] + B.row[i] * ROW - scroller.scrollTop);
    tip.setAttribute("data-run", B.name[i]);
  }

  function zoom(factor, at) {
    var t = at === undefined ? (v0 + v1) / 2 : at, w = (v1 - v0) * factor;
    w = Math.min(Math.max(w, span / 1e6), span * 1.05);
    var f = (t - v0) / (v1 - v0);
    v0 = t - f * w; v1 = v0 + w; draw();
  }

  var drag = null;
  canvas.addEventListener("mousedown", function (ev) { drag = {x: ev.clientX, v0: v0, v1: v1}; });
  window.addEventListener("mouseup", function () { drag = null; });
  canvas.addEventListener("mousemove", function (ev) {
    if (drag) {
      var dt = (ev.clientX - drag.x) / (W - GUTTER - 8) * (drag.v1 - drag.v0);
      v0 = drag.v0 - dt; v1 = drag.v1 - dt; draw(); tip.style.display = "none"; return;
    }
    showTip(ev);
  });
  canvas.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  canvas.addEventListener("wheel", function (ev) {
    if (!ev.ctrlKey && !ev.metaKey) return;
    ev.preventDefault();
    var r = canvas.getBoundingClientRect();
    zoom(ev.deltaY > 0 ? 1.25 : 0.8, tOf(ev.clientX - r.left));
  }, {passive: false});
  canvas.addEventListener("dblclick", function () { v0 = 0; v1 = span; draw(); });
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
