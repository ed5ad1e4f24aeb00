"""The HTML timeline: its data, its page, and what real headless Chromium draws from it."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import braid.testing.cli_flows
from braid.report import (
    NOT_STARTED_LANE,
    STATE_COLORS,
    TASK_COLORS,
    lane_label,
    render_report,
    timeline_data,
    write_report,
)
from braid.testing import cli_flows, report_flows
from braid.testing.chromium import run_chromium

T0 = 1_700_000_000.0


def task_run(
    name: str,
    start: float | None,
    end: float | None,
    where: str | None,
    state: str = "COMPLETED",
    state_name: str | None = None,
    error: str | None = None,
) -> dict:
    return {
        "id": name,
        "name": name,
        "task_name": name.split("-")[0],
        "state_type": state,
        "state_name": state_name or state.title(),
        "start": start,
        "end": end,
        "where": where,
        "error": error,
    }


def flow_run(
    name: str,
    start: float,
    end: float,
    task_runs: list[dict],
    flow_runs: list[dict] | None = None,
    state: str = "COMPLETED",
) -> dict:
    return {
        "id": name,
        "name": name,
        "flow_name": name.split("-")[0],
        "runner": "Fake()",
        "start": start,
        "end": end,
        "state_type": state,
        "state_name": state.title(),
        "error": None,
        "task_runs": task_runs,
        "flow_runs": flow_runs or [],
    }


def big_run(n: int, lanes: int) -> dict:
    """n task runs spread over `lanes` places, every 97th one failed; no randomness."""
    runs = []
    for i in range(n):
        start = T0 + (i // lanes) * 0.01 + (i % 7) * 0.001
        failed = i % 97 == 0
        runs.append(
            task_run(
                f"work-{i}",
                start,
                start + 0.004 + (i % 5) * 0.002,
                f"node-{i % lanes}",
                "FAILED" if failed else "COMPLETED",
                error="ValueError: bad input" if failed else None,
            )
        )
    return flow_run("big-1", T0, T0 + n / lanes * 0.01 + 0.02, runs)


def embedded_data(html: str) -> dict:
    raw = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', html, re.S)
    assert raw is not None
    return json.loads(raw.group(1))


# -- the data -------------------------------------------------------------------------------
def test_lanes_rows_and_legend_keys():
    runs = [
        task_run("a-1", T0 + 0.0, T0 + 1.0, "worker-10"),
        task_run("a-2", T0 + 0.5, T0 + 1.5, "worker-10"),  # overlaps a-1: second row
        task_run("a-3", T0 + 1.0, T0 + 2.0, "worker-10"),  # starts as a-1 ends: row 0
        task_run("b-1", T0 + 0.2, T0 + 0.3, "worker-2", "FAILED", error="KeyError: 'x'"),
        task_run("c-1", None, T0 + 0.4, None, "FAILED", "UpstreamFailed", "did not run"),
    ]
    child = flow_run(
        "child-1", T0 + 0.1, T0 + 0.9, [task_run("d-1", T0 + 0.2, T0 + 0.25, "worker-2")]
    )
    data = timeline_data(flow_run("top-1", T0, T0 + 2.5, runs, [child]))
    assert [lane["name"] for lane in data["lanes"]] == [
        "flow runs",
        "worker-2",
        "worker-10",
        NOT_STARTED_LANE,
    ]
    bars = data["bars"]
    index = {name: i for i, name in enumerate(bars["name"])}
    keys = [s["key"] for s in data["states"]]
    assert bars["row"][index["a-1"]] == 0 and bars["row"][index["a-2"]] == 1
    assert bars["row"][index["a-3"]] == 0
    assert data["lanes"][2]["rows"] == 2
    assert data["lanes"][0]["rows"] == 2  # the nested flow run sits under its parent
    assert keys[bars["state"][index["b-1"]]] == "FAILED"
    assert keys[bars["state"][index["c-1"]]] == "UpstreamFailed"
    assert bars["start"][index["c-1"]] == bars["end"][index["c-1"]] == 0.4
    assert bars["start"][index["a-2"]] == 0.5 and bars["end"][index["a-2"]] == 1.5
    assert bars["flow"][index["d-1"]] == "child-1"
    assert bars["is_flow"][index["child-1"]] == 1 and bars["is_flow"][index["a-1"]] == 0
    assert data["duration"] == pytest.approx(2.5)


def test_page_is_self_contained_and_escapes_what_runs_are_called():
    hostile = '</script><script>alert("x")</script>'
    html = render_report(
        flow_run(
            "top-1",
            T0,
            T0 + 1,
            [
                task_run(
                    hostile, T0, T0 + 0.5, "<b>here</b>", "FAILED", error=f"ValueError: {hostile}"
                ),
            ],
        )
    )
    assert html.count("<script") == 2  # the data and the drawing code, both inline
    assert "<script>alert" not in html and "<b>here</b>" not in html
    assert not re.search(r"""(src|href)\s*=|https?://|@import|url\(""", html)
    data = embedded_data(html)
    assert data["bars"]["name"][1] == hostile and data["lanes"][1]["name"] == "<b>here</b>"
    assert 'data-state="FAILED">1<' in html


def test_record_of_a_real_run_gives_totals_and_failures(tmp_path):
    state = cli_flows.fails(return_state=True)
    assert state.is_failed()
    path = write_report(state.record, tmp_path / "fails.html")
    html = path.read_text(encoding="utf-8")
    assert '<b id="task-count">4</b> task runs' in html
    assert 'data-state="COMPLETED">2<' in html and 'data-state="UpstreamFailed">1<' in html
    assert "<li>InventoryError: negative stock for plums: -2</li>" in html
    assert len(embedded_data(html)["bars"]["name"]) == 5


def test_ten_thousand_runs_stay_compact():
    html = render_report(big_run(10_000, 40))
    data = embedded_data(html)
    assert len(data["bars"]["name"]) == 10_001
    assert len(data["lanes"]) == 41
    assert len(html) < 2_000_000  # a few hundred bytes per run at most


# -- real Chromium ----------------------------------------------------------------------------
def chromium(tmp_path: Path, url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with ``args``; returns its stdout."""
    done = run_chromium(tmp_path, url, "--hide-scrollbars", *args, test="the report test")
    return done.stdout


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a screenshot goes: ``$BRAID_SCREENSHOTS/NAME`` when set (to keep them), else tmp."""
    folder = os.environ.get("BRAID_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder) / name
    return tmp_path / name


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG: (width, height, rows of RGB bytes)."""
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        kind, body = blob[pos + 4 : pos + 8], blob[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(
            bytes(line) if bpp == 3 else b"".join(line[i : i + 3] for i in range(0, stride, 4))
        )
        prev = line
    return width, height, rows


def count_color(rows: list[bytes], hex_color: str) -> int:
    rgb = bytes.fromhex(hex_color.lstrip("#"))
    return sum(row[i : i + 3] == rgb for row in rows for i in range(0, len(row), 3))


def test_chromium_draws_the_bars_of_a_report_made_by_braid_run(tmp_path):
    report = tmp_path / "fails.html"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "braid",
            "run",
            f"{braid.testing.cli_flows.__file__}:fails",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 1 and report.is_file(), run.stderr
    data = embedded_data(report.read_text(encoding="utf-8"))
    [failed] = [
        name
        for name, is_flow, state in zip(
            data["bars"]["name"], data["bars"]["is_flow"], data["bars"]["state"], strict=True
        )
        if not is_flow and state == list(STATE_COLORS).index("FAILED")
    ]

    dom = chromium(tmp_path, f"{report.as_uri()}#run={failed}", "--dump-dom")
    # the drawing code ran to the end and drew every bar (one flow run, four task runs)
    # the failed run is selected: its edge to the run that never ran is drawn
    assert re.search(
        r'<html lang="en" data-bars-drawn="5" data-edges-drawn="1" data-delays-drawn="0" '
        rf'data-selected="{failed}">',
        dom,
    ), dom[:300]
    panel = re.search(r'<aside id="detail" style="display: block;">(.*?)</aside>', dom, re.S)
    assert panel is not None
    assert "InventoryError: negative stock for plums: -2" in panel.group(1)
    assert "item = 'plums'\ncount = -2" in panel.group(1)
    assert "<dt>traceback</dt>" in panel.group(1)
    assert "<dt>not recorded</dt><dd>logs</dd>" in panel.group(1)
    tip = re.search(
        r'<div id="tip" data-run="([^"]+)" style="display: block;[^>]*>(.*?)</div>', dom, re.S
    )
    assert tip is not None, dom[-3000:]
    assert tip.group(1) == failed
    assert "task: check_stock" in tip.group(2) and "state: failed" in tip.group(2)
    assert "error: InventoryError: negative stock for plums: -2" in tip.group(2)

    shot = screenshot_path(tmp_path, "fails.png")
    chromium(tmp_path, report.as_uri(), f"--screenshot={shot}")
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1200, 800)
    # below the header and legend: bars filled with the task's colour (check_stock is the
    # first task), the failed one outlined red, the skipped one hatched red on white
    canvas_rows = rows[170:]
    assert count_color(canvas_rows, TASK_COLORS[0]) >= 10
    assert count_color(canvas_rows, STATE_COLORS["FAILED"]) >= 10


def test_chromium_draws_ten_thousand_runs_but_only_the_visible_lanes(tmp_path):
    report = write_report(big_run(10_000, 400), tmp_path / "big.html")
    dom = chromium(tmp_path, report.as_uri(), "--dump-dom")
    drawn = int(re.search(r'data-bars-drawn="(\d+)"', dom).group(1))
    # 400 lanes do not fit in 800 pixels: the lanes out of view are not drawn
    assert 25 < drawn < 10_001
    shot = screenshot_path(tmp_path, "big.png")
    chromium(tmp_path, report.as_uri(), f"--screenshot={shot}")
    _, _, rows = png_pixels(shot)
    assert count_color(rows[170:], TASK_COLORS[0]) > 1000


DASK_LANE = "dask tcp://127.0.0.1:40123 / Dask-Default-Thread-1"
RAY_LANE = "ray node 6b3f0c1d9e2a4b5c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e / pid 4242 / Thread-3"


def test_lane_labels_keep_their_most_telling_part():
    assert lane_label("pid 12 / braid-worker-0") == "pid 12 / braid-worker-0"
    short = lane_label(DASK_LANE)
    assert len(short) <= 36 and "tcp://127.0.0.1:40123" in short and "…" in short
    assert short.startswith("dask tcp://127.0.0.1:40123 / ") and short.endswith("-1")
    ray = lane_label(RAY_LANE)
    assert len(ray) <= 36 and ray.startswith("ray node 6") and "pid 4242" in ray
    assert len(lane_label("x" * 200)) <= 36


def rich_run() -> dict:
    """A run with what records may carry beyond today's: attempts, upstreams, details."""
    load = task_run("load-1", T0 + 0.1, T0 + 0.3, DASK_LANE)
    fetch = task_run("fetch-1", T0 + 0.2, T0 + 1.0, DASK_LANE.replace("40123", "40999"))
    fetch["attempts"] = [
        {
            "start": T0 + 0.2,
            "end": T0 + 0.35,
            "state_name": "Failed",
            "where": fetch["where"],
            "error": "ConnectionError: reset",
        },
        {"start": T0 + 0.6, "end": T0 + 1.0, "state_name": "Completed", "where": fetch["where"]},
    ]
    join = task_run("join-1", T0 + 1.1, T0 + 1.3, DASK_LANE, "FAILED", error="KeyError: 'user_id'")
    join.update(
        upstreams=["load-1", "fetch-1"],
        parameters={"left": "<DataFrame 10x3>", "on": "'user_id'"},
        message="KeyError: 'user_id'\nwhile joining",
        traceback='Traceback (most recent call last):\n  File "etl.py", line 9, '
        "in join\nKeyError: 'user_id'",
        logs="INFO joining 10 rows\nWARNING 3 rows lack user_id",
    )
    return flow_run("etl-1", T0, T0 + 1.4, [load, fetch, join], state="FAILED")


def test_attempts_edges_and_details_where_the_record_has_them():
    data = timeline_data(rich_run())
    bars = data["bars"]
    fetch = [i for i, name in enumerate(bars["name"]) if name == "fetch-1"]
    assert len(fetch) == 2 and [bars["attempt"][i] for i in fetch] == [1, 2]
    assert bars["final"][fetch[0]] == fetch[1]
    keys = [s["key"] for s in data["states"]]
    assert keys[bars["state"][fetch[0]]] == "RETRIED"
    join = bars["name"].index("join-1")
    assert sorted(data["edges"]) == sorted([[bars["name"].index("load-1"), join], [fetch[1], join]])
    assert data["details"][str(join)]["logs"].startswith("INFO joining")
    assert bars["color"][join] == 2 and bars["color"][fetch[0]] == 1


def test_chromium_shows_edges_detail_panel_and_lane_tooltips(tmp_path):
    report = write_report(rich_run(), tmp_path / "rich.html")
    dom = chromium(tmp_path, f"{report.as_uri()}#run=join-1", "--dump-dom")
    assert 'data-edges-drawn="2"' in dom and 'data-selected="join-1"' in dom
    panel = re.search(r'<aside id="detail" style="display: block;">(.*?)</aside>', dom, re.S)
    assert panel is not None
    text = panel.group(1)
    for expected in (
        "<dt>arguments</dt>",
        "left = &lt;DataFrame 10x3&gt;",
        "<dt>waited for</dt>",
        "load-1\nfetch-1",
        "<dt>logs</dt>",
        "WARNING 3 rows lack user_id",
        "<dt>traceback</dt>",
        'File "etl.py", line 9',
        "while joining",
    ):
        assert expected in text, expected
    assert "not recorded" not in text
    lanes = re.findall(r'<div class="lane[^"]*" title="([^"]*)" style="[^"]*">([^<]*)</div>', dom)
    assert (DASK_LANE, lane_label(DASK_LANE)) in lanes

    dom = chromium(tmp_path, f"{report.as_uri()}#run=fetch-1", "--dump-dom")
    panel = re.search(r'<aside id="detail" style="display: block;">(.*?)</aside>', dom, re.S)
    assert "attempt 1: +200.0 ms for 150.0 ms" in panel.group(1)
    assert "(ConnectionError: reset)" in panel.group(1)

    shot = screenshot_path(tmp_path, "rich.png")
    chromium(tmp_path, f"{report.as_uri()}#run=join-1", f"--screenshot={shot}")
    _, _, rows = png_pixels(shot)
    assert count_color(rows[170:], "#0969da") > 20  # the two dependency edges
    assert count_color(rows[170:], TASK_COLORS[2]) > 20  # join's colour, under its outline


def test_trace_json_opens_in_perfetto_shape(tmp_path):
    trace = tmp_path / "run.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "braid",
            "run",
            f"{braid.testing.cli_flows.__file__}:messy",
            "--trace",
            str(trace),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 1 and f"trace: {trace}" in run.stderr
    doc = json.loads(trace.read_text(encoding="utf-8"))
    events = doc["traceEvents"]
    assert isinstance(events, list) and doc["displayTimeUnit"] == "ms"
    complete = [e for e in events if e["ph"] == "X"]
    meta = [e for e in events if e["ph"] == "M"]
    flows = [e for e in events if e["ph"] in ("s", "f")]
    # the flow, 30 parse_row runs, 2 flaky runs of 2 attempts each, and total
    assert len(complete) == 1 + 30 + 2 * 2 + 1
    assert len(meta) + len(complete) + len(flows) == len(events)
    retried = [e for e in complete if e["args"].get("attempt") == "1 of 2"]
    assert len(retried) == 2 and all(e["args"]["retry_delay_s"] == 0.05 for e in retried)
    assert all(e["args"]["error"].startswith("ConnectionError: row ") for e in retried)
    # total waited for all 32 runs: an arrow ("s" then "f", one id) from each
    assert len(flows) == 2 * 32 and {e["name"] for e in flows} == {"waited for"}
    assert sorted(e["ph"] for e in flows) == ["f"] * 32 + ["s"] * 32
    for e in complete:
        assert set(e) == {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert e["ts"] >= 0 and e["dur"] >= 0
        assert e["args"]["run"] == e["name"] and e["args"]["state"]
    named = {(e["pid"], e["tid"]) for e in meta if e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in complete} <= named
    processes = {e["args"]["name"] for e in meta if e["name"] == "process_name"}
    assert "flow runs" in processes and any(p.startswith("pid ") for p in processes)
    states = {e["args"]["state"] for e in complete}
    assert {"COMPLETED", "FAILED", "UpstreamFailed"} <= states
    failed = next(e for e in complete if e["args"]["state"] == "FAILED" and e["cat"] != "flow")
    assert failed["args"]["error"].startswith(("ValueError: ", "KeyError: "))


def test_cached_runs_have_their_own_legend_key():
    from braid.report import STATE_COLORS, state_key

    assert state_key("COMPLETED", "Cached") == "Cached"
    assert state_key("COMPLETED", "Completed") == "COMPLETED"
    assert "Cached" in STATE_COLORS


# -- a real flow with retries and failures, drawn from each runner's record ----------------
#: the run table reschedules retries on these runners; on Dask and Ray the engine retries
#: in place and its state reports the last attempt only (see test_every_runner_...)
RESCHEDULING = ("threads", "processes")


def braid_run_report(tmp_path: Path, runner: str) -> tuple[Path, Path]:
    """``braid run`` the flow with retries and failures on ``runner``: report and trace."""
    if runner in ("dask", "ray"):
        pytest.importorskip("distributed" if runner == "dask" else "ray")
    report, trace = tmp_path / f"{runner}.html", tmp_path / f"{runner}.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "braid",
            "run",
            f"{report_flows.__file__}:retries_and_failures",
            "--runner",
            runner,
            "--report",
            str(report),
            "--trace",
            str(trace),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 1 and report.is_file() and trace.is_file(), run.stderr[-3000:]
    return report, trace


@pytest.mark.parametrize("runner", ["threads", "processes", "dask", "ray"])
def test_every_runner_draws_attempts_edges_and_details_of_retries_and_failures(tmp_path, runner):
    report, trace = braid_run_report(tmp_path, runner)
    data = embedded_data(report.read_text(encoding="utf-8"))
    bars = data["bars"]
    names = bars["name"]
    fetch = [i for i, name in enumerate(names) if name == "fetch-api"]
    join, load = names.index("join-user_id"), names.index("load-3")
    # join waited for fetch's final attempt and for load; the skipped report run for join
    skipped = next(i for i, name in enumerate(names) if name.startswith("report"))
    assert sorted(data["edges"]) == sorted([[fetch[-1], join], [load, join], [join, skipped]])
    assert set(data["details"][str(join)]) == {"message", "parameters", "traceback"}
    assert "INFO braid.task_runs: loading 3 rows" in data["details"][str(load)]["logs"]

    dom = chromium(tmp_path, f"{report.as_uri()}#run=join-user_id", "--dump-dom")
    assert re.search(
        r'data-edges-drawn="3" data-delays-drawn="\d+" data-selected="join-user_id"', dom
    )
    panel = re.search(r'<aside id="detail" style="display: block;">(.*?)</aside>', dom, re.S)
    assert panel is not None
    text = panel.group(1)
    for expected in (
        "<dt>arguments</dt>",
        "left = &lt;result of fetch-api&gt;\nright = &lt;result of load-3&gt;\nrows = [0, 1, 2,",
        "on = 'user_id'",
        "<dt>message</dt><dd>KeyError: 'user_id'</dd>",
        "<dt>waited for</dt><dd>fetch-api\nload-3</dd>",
        "<dt>traceback</dt>",
        "in join\n    raise KeyError(on)\nKeyError: 'user_id'",
        "<dt>not recorded</dt><dd>logs</dd>",
    ):
        assert expected in text, (expected, text[:3000])
    shot = screenshot_path(tmp_path, f"retries-{runner}.png")
    chromium(tmp_path, f"{report.as_uri()}#run=join-user_id", f"--screenshot={shot}")
    _, _, rows = png_pixels(shot)
    # join's three dependency edges: short when the bars they join sit close in time
    assert count_color(rows[170:], "#0969da") > 8
    task_colors = {t["name"]: TASK_COLORS[i] for i, t in enumerate(data["tasks"])}
    assert count_color(rows[170:], task_colors["join"]) > 20

    events = json.loads(trace.read_text(encoding="utf-8"))["traceEvents"]
    fetch_events = [e for e in events if e["ph"] == "X" and e["name"] == "fetch-api"]
    assert len(fetch_events) == len(fetch)
    assert sum(e["ph"] in ("s", "f") for e in events) == 2 * 3

    # every attempt is drawn: two retried (faded, with the retry's error) and the last
    assert [bars["attempt"][i] for i in fetch] == [1, 2, 3]
    keys = [s["key"] for s in data["states"]]
    assert [keys[bars["state"][i]] for i in fetch] == ["RETRIED", "RETRIED", "COMPLETED"]
    assert [bars["error"][i] for i in fetch[:2]] == [
        "FetchError: connection reset on attempt 1",
        "FetchError: connection reset on attempt 2",
    ]
    for before, after in zip(fetch, fetch[1:], strict=False):
        assert bars["start"][after] - bars["end"][before] >= report_flows.RETRY_DELAY - 0.01
    assert re.search(r'data-delays-drawn="2"', dom)
    assert [e["args"].get("retry_delay_s") for e in fetch_events] == [0.3, 0.3, None]

    dom = chromium(tmp_path, f"{report.as_uri()}#run=fetch-api", "--dump-dom")
    panel = re.search(r'<aside id="detail" style="display: block;">(.*?)</aside>', dom, re.S)
    assert panel is not None
    assert "(FetchError: connection reset on attempt 2)" in panel.group(1)
    assert panel.group(1).count("attempt ") >= 3
