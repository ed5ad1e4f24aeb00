"""A flow run drawn as a self-contained HTML timeline (``braid run --report FILE.html``).

:func:`write_report` turns a :class:`~braid.core.records.FlowRunRecord` (or its
``to_dict()``) into one HTML file that needs no network: the run's data is embedded
as JSON and drawn by an inline script on a ``<canvas>``.  The page shows one lane per
place a task ran (``where``: a process and thread, a Dask worker, a Ray node), labelled
with the most telling part of the place (a long label loses its middle; the full text
is its tooltip), the flow runs (nested ones included) on a lane of their own, one bar
per attempt of a task run **coloured by its task**, its state drawn as an outline or a
pattern (failed: red outline; crashed: purple outline and cross; cancelled: grey fill,
dashed outline; upstream failed: red hatching; an attempt that was retried: faded,
red dotted outline, joined to the next attempt by a line through the retry delay).
Hovering a bar shows its details and its dependency edges; clicking it (or opening
``FILE.html#run=NAME``) keeps the edges and opens a detail panel: state and message,
place and times, attempts, and the arguments, logs and traceback when known.

Beyond names, states, times and places, a task run's dict (``TaskRunRecord.to_dict()``)
may carry what is drawn where present and left out where not, so every runner is
drawn the same way from the same data: ``attempts`` (a list of ``{start, end,
state_name, where, error}``, one per attempt; an attempt whose ``where`` is unknown
is drawn on the lane of the run's last one), ``upstreams`` (ids of the task runs it
waited for), ``parameters`` (name to shortened repr), ``message`` (the whole state
message), ``traceback`` and ``logs`` (text).

It stays fast with tens of thousands of task runs because only what is visible is
drawn: lanes are virtualised (the canvas is the size of the viewport, scrolling
redraws it) and bars overlapping in time on one lane are packed into rows here, in
Python, once.  After every paint the script writes how many bars it drew into
``data-bars-drawn`` on ``<html>`` (and ``data-edges-drawn``, ``data-delays-drawn``: the
dotted lines through retry delays), which tests read back.
"""

from __future__ import annotations

import heapq
import html
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from braid.report_page import PAGE

__all__ = [
    "STATE_COLORS",
    "TASK_COLORS",
    "format_duration",
    "lane_label",
    "render_report",
    "timeline_data",
    "timeline_items",
    "write_report",
]

#: the outline (or mark) colour of each legend key: a final state type, or a state name
#: drawn apart; bars are filled with their task's colour
STATE_COLORS: dict[str, str] = {
    "COMPLETED": "#1f2328",
    "Cached": "#1a7f37",
    "FAILED": "#d1242f",
    "UpstreamFailed": "#d1242f",
    "CRASHED": "#8250df",
    "CANCELLED": "#6e7781",
    "RUNNING": "#0969da",
    "PENDING": "#8c959f",
}
#: task colours, in the order tasks first appear in the run (then again from the start)
TASK_COLORS: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#edc948",
    "#76b7b2",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#86bcb6",
    "#bab0ac",
    "#a0cbe8",
    "#8cd17d",
)
FLOW_COLOR = "#c9d1d9"
_LABELS = {
    "UpstreamFailed": "upstream failed (did not run)",
    "Cached": "cached (read from the result store; the body did not run)",
    "COMPLETED": "completed",
    "RETRIED": "attempt retried",
}
_STYLES = {  # how the legend draws each key (the canvas draws the same)
    "COMPLETED": "background:#8c959f",
    "Cached": "background:#8c959f;outline:2px dotted #1a7f37",
    "FAILED": "background:#8c959f;box-shadow:0 0 0 2px #d1242f",
    "UpstreamFailed": "background:repeating-linear-gradient(45deg,#d1242f 0 2px,#fff 2px 5px)",
    "CRASHED": "background:#8c959f;box-shadow:0 0 0 2px #8250df",
    "CANCELLED": "background:#e5e7eb;outline:1px dashed #6e7781",
    "RUNNING": "background:#8c959f;box-shadow:0 0 0 2px #0969da",
    "PENDING": "background:#fff;outline:1px solid #8c959f",
    "RETRIED": "background:#c4c9cf;outline:1px dotted #d1242f",
}
FLOW_LANE = "flow runs"
NOT_STARTED_LANE = "did not start"
UNKNOWN_LANE = "unknown place"
#: characters a lane label keeps (about what the 220-pixel gutter shows)
LABEL_CHARS = 36
_DETAIL_KEYS = ("message", "traceback", "logs", "parameters")


def state_key(state_type: str | None, state_name: str | None) -> str:
    """The legend key of a run: its state type, except runs skipped for a failed upstream."""
    if state_name in ("UpstreamFailed", "Cached"):
        return state_name
    return state_type or "PENDING"


def lane_label(name: str, limit: int = LABEL_CHARS) -> str:
    """``name`` shortened to ``limit`` characters, keeping its most telling parts.

    A place reads ``<where> / <thread>`` (``dask tcp://127.0.0.1:40123 /
    Dask-Default-Thread-1``, ``ray node 3f9a… / pid 12 / Thread-1``): the thread's
    name loses its middle first, then the longest other part does; the worker's
    address or the pid stays whole whenever that fits.
    """
    if len(name) <= limit:
        return name
    parts = name.split(" / ")
    total = len(name)
    # the last part first (a thread name tells least), then the longest of the others
    order = [len(parts) - 1] + sorted(range(len(parts) - 1), key=lambda i: -len(parts[i]))
    for i in order:
        excess = total - limit
        if excess <= 0:
            break
        keep = max(5 if i == len(parts) - 1 else 8, len(parts[i]) - excess - 1)
        if keep < len(parts[i]) - 1:
            total -= len(parts[i])
            parts[i] = _middle(parts[i], keep, last=i == len(parts) - 1)
            total += len(parts[i])
    text = " / ".join(parts)
    return text if len(text) <= limit else _middle(text, limit - 1)


def _middle(text: str, keep: int, last: bool = True) -> str:
    """``text`` with its middle replaced by ``…``, ``keep`` characters kept (two thirds of
    them from the head, except in a last part, a thread's name, whose number ends it)."""
    head = (keep + 1) // 2 if last else (2 * keep + 2) // 3
    return text[:head] + "…" + text[len(text) - (keep - head) :]


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
    free: list[tuple[float, int]] = []  # (end of the row's last span, row)
    count = 0
    for start, end, index in sorted(spans):
        if free and free[0][0] <= start:
            _, row = heapq.heappop(free)
        else:
            row, count = count, count + 1
        rows[index] = row
        heapq.heappush(free, (end, row))
    return rows


def timeline_items(run: Any) -> tuple[list[dict[str, Any]], float, float]:
    """One item per drawn bar (a flow run, or one attempt of a task run), and t0 and t1.

    Times are epoch seconds, filled in: a run still going (or never timed) reaches the
    end of the report, a run that never started sits at the time it ended.  Each item
    has ``lane``, ``start``, ``end``, ``key``, ``name``, ``task``, ``flow``, ``error``,
    ``is_flow``, ``depth``, ``id``, ``attempt`` (0 for flow runs), ``attempts``,
    ``last`` (the run's final attempt), ``delay`` (the retry delay after a retried
    attempt, when known) and ``run`` (the source dict).
    """
    top = _as_dict(run)
    flows = _walk_flows(top)
    items: list[dict[str, Any]] = []
    for f, depth in flows:
        items.append(
            {
                "lane": FLOW_LANE,
                "start": f.get("start"),
                "end": f.get("end"),
                "key": state_key(f.get("state_type"), f.get("state_name")),
                "name": f.get("name", ""),
                "task": f.get("flow_name", ""),
                "flow": f.get("name", ""),
                "error": f.get("error"),
                "is_flow": True,
                "depth": depth,
                "id": f.get("id"),
                "attempt": 0,
                "attempts": 0,
                "last": True,
                "delay": None,
                "run": f,
            }
        )
        for t in f.get("task_runs", ()):
            base = {
                "name": t.get("name", ""),
                "task": t.get("task_name", ""),
                "flow": f.get("name", ""),
                "is_flow": False,
                "depth": depth,
                "id": t.get("id"),
                "run": t,
            }
            key = state_key(t.get("state_type"), t.get("state_name"))
            attempts = t.get("attempts") or [t]
            for n, a in enumerate(attempts, 1):
                last = n == len(attempts)
                started = a.get("start") is not None
                items.append(
                    {
                        **base,
                        "attempt": n,
                        "attempts": len(attempts),
                        "last": last,
                        # an attempt whose place is unknown sits on its run's last lane
                        "lane": (a.get("where") or t.get("where") or UNKNOWN_LANE)
                        if started
                        else NOT_STARTED_LANE,
                        "start": a.get("start") if started else a.get("end"),
                        "end": a.get("end"),
                        "key": key if last else "RETRIED",
                        "error": t.get("error") if last else a.get("error"),
                        "delay": None if last else a.get("delay"),
                    }
                )
    starts = [i["start"] for i in items if i["start"] is not None]
    t0 = min(starts) if starts else 0.0
    t1 = max([*(i["end"] for i in items if i["end"] is not None), *starts, t0])
    for item in items:
        item["start"] = t0 if item["start"] is None else item["start"]
        item["end"] = max(item["start"], t1 if item["end"] is None else item["end"])
    return items, t0, t1


def final_bars_and_edges(items: list[dict[str, Any]]) -> tuple[list[int], list[list[int]]]:
    """For :func:`timeline_items`' bars: the index of each bar's run's final bar, and the
    dependency edges as [upstream's final bar, downstream's final bar] (upstreams that
    are not in the run, such as a finished flow's futures, have none)."""
    final_of_id: dict[Any, int] = {}
    for n, item in enumerate(items):
        if item["last"] and item["id"] is not None:
            final_of_id[(item["is_flow"], item["id"])] = n
    final = [
        n if item["last"] else final_of_id.get((item["is_flow"], item["id"]), n)
        for n, item in enumerate(items)
    ]
    edges = []
    for n, item in enumerate(items):
        if item["last"]:
            for up in item["run"].get("upstreams") or ():
                source = final_of_id.get((False, up))
                if source is not None:
                    edges.append([source, n])
    return final, edges


def timeline_data(run: Any) -> dict[str, Any]:
    """The report's data: lanes, tasks, and the bars as columns (seconds from the start).

    ``run`` is a FlowRunRecord or its ``to_dict()``.  Lanes come in this order: the
    flow runs, each place tasks ran (natural order), then task runs that never started.
    Each bar is one attempt of a task run (or a flow run): its lane, row in the lane,
    start, end, legend key index, task colour index (-1 for flow runs), name, task or
    flow name, flow run name, error, attempt number and the index of the run's final
    bar; ``edges`` lists [upstream, downstream] final bars where upstreams are known and
    ``details`` the extra text (message, traceback, logs, parameters) by final bar.
    """
    top = _as_dict(run)
    items, t0, t1 = timeline_items(top)
    places = sorted({i["lane"] for i in items} - {FLOW_LANE, NOT_STARTED_LANE}, key=_natural)
    lane_names = [FLOW_LANE, *places]
    if any(i["lane"] == NOT_STARTED_LANE for i in items):
        lane_names.append(NOT_STARTED_LANE)
    lane_index = {name: i for i, name in enumerate(lane_names)}
    by_lane: dict[int, list[tuple[float, float, int]]] = {}
    for n, item in enumerate(items):
        by_lane.setdefault(lane_index[item["lane"]], []).append((item["start"], item["end"], n))
    row_of: dict[int, int] = {}
    lanes = []
    for i, name in enumerate(lane_names):
        packed = _pack(by_lane.get(i, []))
        row_of.update(packed)
        lanes.append(
            {"name": name, "label": lane_label(name), "rows": max(packed.values(), default=0) + 1}
        )

    tasks: list[str] = []
    for item in items:
        if not item["is_flow"] and item["task"] not in tasks:
            tasks.append(item["task"])
    # every bar points at its run's final bar: hover and selection work on runs
    final, edges = final_bars_and_edges(items)
    details = {}
    for n, item in enumerate(items):
        if item["last"]:
            extra = {k: item["run"][k] for k in _DETAIL_KEYS if item["run"].get(k)}
            if extra:
                details[str(n)] = extra

    task_times = [t for i in items if not i["is_flow"] for t in (i["start"], i["end"])]
    # the view opens on the task runs: a cluster's start-up would squeeze them to a line
    focus = [min(task_times, default=t0) - t0, max(task_times, default=t1) - t0]
    pad = max((focus[1] - focus[0]) * 0.02, 1e-6)
    keys = [*STATE_COLORS, "RETRIED"]
    return {
        "focus": [round(max(0.0, focus[0] - pad), 6), round(min(t1 - t0, focus[1] + pad), 6)],
        "title": f"{top.get('name', '')} ({top.get('flow_name', '')})",
        "runner": top.get("runner", ""),
        "t0": t0,
        "duration": t1 - t0,
        "lanes": lanes,
        "states": [
            {
                "key": k,
                "label": _LABELS.get(k, k.lower()),
                "color": STATE_COLORS.get(k, STATE_COLORS["FAILED"]),
            }
            for k in keys
        ],
        "tasks": [
            {"name": t, "color": TASK_COLORS[i % len(TASK_COLORS)]} for i, t in enumerate(tasks)
        ],
        "flow_color": FLOW_COLOR,
        "bars": {
            "lane": [lane_index[i["lane"]] for i in items],
            "row": [row_of[n] for n in range(len(items))],
            "start": [round(i["start"] - t0, 6) for i in items],
            "end": [round(i["end"] - t0, 6) for i in items],
            "state": [
                keys.index(i["key"]) if i["key"] in keys else keys.index("PENDING") for i in items
            ],
            "color": [-1 if i["is_flow"] else tasks.index(i["task"]) for i in items],
            "name": [i["name"] for i in items],
            "task": [i["task"] for i in items],
            "flow": [i["flow"] for i in items],
            "error": [i["error"] for i in items],
            "is_flow": [1 if i["is_flow"] else 0 for i in items],
            "attempt": [i["attempt"] for i in items],
            "attempts": [i["attempts"] for i in items],
            "final": final,
        },
        "edges": edges,
        "details": details,
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
    retried = any(k == len(STATE_COLORS) for k in data["bars"]["state"])
    legend = "".join(
        f'<span class="key"><i style="{_STYLES[s["key"]]}"></i>{e(s["label"])}'
        f' <b data-state="{e(s["key"])}">{counts.get(s["key"], 0)}</b></span>'
        for s in data["states"]
        if counts.get(s["key"]) or s["key"] in ("COMPLETED", "FAILED")
    )
    if retried:
        legend += (
            f'<span class="key"><i style="{_STYLES["RETRIED"]}"></i>{_LABELS["RETRIED"]}</span>'
        )
    shown = data["tasks"][:24]
    legend += (
        '<br><span class="tasks">tasks: '
        + "".join(
            f'<span class="key"><i style="background:{t["color"]}"></i>{e(t["name"])}</span>'
            for t in shown
        )
        + (f"… and {len(data['tasks']) - 24} more" if len(data["tasks"]) > 24 else "")
        + "</span>"
    )
    state = e(
        f"{top.get('state_type') or 'RUNNING'}"
        + (
            f" ({top['state_name']})"
            if top.get("state_name") and top.get("state_name", "").upper() != top.get("state_type")
            else ""
        )
    )
    failures = "".join(f"<li>{e(msg)}</li>" for msg in errors[:20])
    if len(errors) > 20:
        failures += f"<li>… and {len(errors) - 20} more</li>"
    places = len(data["lanes"]) - 1 - (data["lanes"][-1]["name"] == NOT_STARTED_LANE)
    totals = (
        f'<span id="totals">flow run <b>{state}</b> · <b id="task-count">{n_tasks}'
        f"</b> task runs · {n_flows} flow run{'s' if n_flows != 1 else ''} · "
        f"{places} place{'s' if places != 1 else ''} · "
        f"{e(format_duration(data['duration']))} · runner {e(data['runner'])}</span>"
    )
    parts = {
        "title": e(data["title"]),
        "totals": totals,
        "legend": legend,
        "failures": f"<ul id='failures'>{failures}</ul>" if failures else "",
        "data": _json_for_script(data),
    }
    # one pass, so text from the run can never be taken for a placeholder
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], PAGE)


def write_report(run: Any, path: str | Path) -> Path:
    """Write the report of ``run`` to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    out.write_text(render_report(run), encoding="utf-8")
    return out
