"""A flow run as Chrome trace-event JSON (``braid run --trace FILE.json``).

Perfetto (ui.perfetto.dev) and ``chrome://tracing`` open the file: one "process" per
place that is a process or a worker (the part of a lane's name before its last
``" / "``), one "thread" per lane, one complete event (``"ph": "X"``) per attempt of a
task run and per flow run, with ``ts`` and ``dur`` in microseconds from the run's
start and ``args`` holding the run's name, task, state and error (and, for an attempt
that was retried, its number and the retry delay).  Each dependency edge is a flow
event pair (``"ph": "s"`` at the end of the upstream's final attempt, ``"ph": "f"``
at the start of the downstream's), which Perfetto draws as an arrow.  The bars are
the same as the HTML report's (:func:`braid.report.timeline_items`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from braid.report import FLOW_LANE, NOT_STARTED_LANE, final_bars_and_edges, timeline_items

__all__ = ["trace_events", "write_trace"]


def _split_lane(lane: str) -> tuple[str, str]:
    """(process, thread) of a lane: ``pid 12 / braid-worker-0`` gives those two parts."""
    if lane in (FLOW_LANE, NOT_STARTED_LANE):
        return lane, lane
    process, sep, thread = lane.rpartition(" / ")
    return (process, thread) if sep else (lane, lane)


def trace_events(run: Any) -> dict[str, Any]:
    """The trace of ``run`` (a FlowRunRecord or its ``to_dict()``) as a trace-event document.

    Returns ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``:
    metadata events naming each process and thread, one ``"X"`` event per bar, then
    the flow events of the dependency edges.
    """
    top = run if isinstance(run, Mapping) else run.to_dict()
    items, t0, _ = timeline_items(top)
    pids: dict[str, int] = {}
    tids: dict[str, tuple[int, int]] = {}
    events: list[dict[str, Any]] = []
    for item in items:
        lane = item["lane"]
        if lane not in tids:
            process, thread = _split_lane(lane)
            if process not in pids:
                pids[process] = len(pids) + 1
                events.append(
                    {
                        "ph": "M",
                        "name": "process_name",
                        "pid": pids[process],
                        "tid": 0,
                        "args": {"name": process},
                    }
                )
                events.append(
                    {
                        "ph": "M",
                        "name": "process_sort_index",
                        "pid": pids[process],
                        "tid": 0,
                        "args": {"sort_index": pids[process]},
                    }
                )
            tids[lane] = (pids[process], len(tids) + 1)
            events.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": pids[process],
                    "tid": tids[lane][1],
                    "args": {"name": thread},
                }
            )
    for item in items:
        pid, tid = tids[item["lane"]]
        args = {
            "run": item["name"],
            "state": item["key"],
            "state_name": item["run"].get("state_name"),
            "flow_run": item["flow"],
            "where": item["lane"],
        }
        if item["error"]:
            args["error"] = item["error"]
        if item["attempts"] > 1:
            args["attempt"] = f"{item['attempt']} of {item['attempts']}"
        if item["delay"] is not None:
            args["retry_delay_s"] = item["delay"]
        events.append(
            {
                "name": item["name"],
                "cat": "flow" if item["is_flow"] else item["task"],
                "ph": "X",
                "ts": round((item["start"] - t0) * 1e6, 3),
                "dur": round((item["end"] - item["start"]) * 1e6, 3),
                "pid": pid,
                "tid": tid,
                "args": args,
            }
        )
    _, edges = final_bars_and_edges(items)
    for n, (up, down) in enumerate(edges, 1):
        a, b = items[up], items[down]
        # "s" binds to the slice around its ts: a hair before the upstream's end
        end = round((a["end"] - t0) * 1e6, 3)
        inside = max(round((a["start"] - t0) * 1e6, 3), end - 0.5)
        for phase, item, ts in (("s", a, inside), ("f", b, round((b["start"] - t0) * 1e6, 3))):
            pid, tid = tids[item["lane"]]
            event = {"name": "waited for", "cat": "dependency", "ph": phase, "id": n}
            event.update(ts=ts, pid=pid, tid=tid)
            if phase == "f":
                event["bp"] = "e"
            events.append(event)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "flow_run": top.get("name"),
            "flow": top.get("flow_name"),
            "runner": top.get("runner"),
            "start_epoch_seconds": t0,
        },
    }


def write_trace(run: Any, path: str | Path) -> Path:
    """Write the trace of ``run`` to ``path`` as JSON and return the path."""
    out = Path(path)
    out.write_text(json.dumps(trace_events(run), separators=(",", ":")), encoding="utf-8")
    return out
