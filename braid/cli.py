"""The ``braid`` command: run a flow from a file on any runner, without changing its code.

::

    braid run path/to/file.py:flow_name [--runner threads|processes|dask|ray|module:Class]
              [--address ADDR] [--max-workers N] [--param name=value ...]
              [--report FILE.html] [--trace FILE.json] [--no-progress]

``--runner`` replaces the task runner of the named flow only; nested flows keep the
runner they declare.  Without it the flow runs on the runner it declares.

Output: the flow's return value goes to stdout (nothing else does); the live
progress line (only when stderr is a terminal), the end summary and errors go to
stderr.  Exit status: 0 the flow completed, 1 it failed (or its file raised on
import, or its runner could not start), 2 bad usage (unknown runner or option,
missing extra, file or flow, a parameter the flow does not take or a value that does
not fit its type hint), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import pprint
import re
import sys
import time
import traceback
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from braid import errors
from braid.core.flows import Flow
from braid.core.records import FlowRunRecord, TaskRunRecord, watch_flow_runs
from braid.core.runner import TaskRunner
from braid.core.states import State
from braid.params import coerce_parameter, describe_type
from braid.progress import ProgressLine
from braid.report import format_duration, write_report
from braid.runners.registry import RUNNERS, load_runner_class
from braid.trace import write_trace

__all__ = [
    "FlowNotFound",
    "InvalidParameter",
    "UsageError",
    "load_flow",
    "main",
    "make_runner",
    "parse_params",
]

RUNNER_NAMES = tuple(RUNNERS)
SLOWEST_SHOWN = 5
#: failure kinds, run names per kind and characters of a message the summary shows
GROUPS_SHOWN, RUNS_SHOWN, MESSAGE_SHOWN = 8, 5, 160
_DID_NOT_RUN = ("UpstreamFailed",)


class UsageError(errors.BraidError):
    """Raised by the ``braid`` command for a command line it cannot act on (exit status 2).

    An unknown runner, options that do not apply to the chosen runner, a missing
    file or a report path in a missing directory; the message is one line.
    """


class FlowNotFound(UsageError):
    """Raised by :func:`load_flow` when the file has no flow of that name.

    The message lists the flows the file does define.
    """


class InvalidParameter(UsageError, ValueError):
    """Raised by :func:`parse_params` for a ``--param`` the flow cannot take.

    A malformed ``name=value``, a name the flow's signature lacks, a name given twice,
    or a required parameter not given.  (A value of the wrong type raises
    :class:`~braid.errors.InvalidParameterValue`.)
    """


# -- the command line ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``braid`` command (argparse exits 2 on bad usage)."""
    parser = argparse.ArgumentParser(
        prog="braid", description="Run braid flows on any task runner."
    )
    from braid import __version__

    parser.add_argument("--version", action="version", version=f"braid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "cache", help="list or clear persisted results: braid cache --help", add_help=False
    )
    run = commands.add_parser(
        "run",
        help="run a flow from a Python file",
        description="Run the flow FLOW defined in FILE.py and print its return value.",
    )
    run.add_argument("target", metavar="FILE.py:FLOW", help="the file and the flow's name")
    run.add_argument(
        "--runner",
        metavar="RUNNER",
        help="threads, processes, dask, ray or module:Class "
        "(default: the runner the flow declares)",
    )
    run.add_argument(
        "--address",
        metavar="ADDR",
        help="cluster to connect to (dask: tcp://host:port; ray: host:port)",
    )
    run.add_argument(
        "--max-workers",
        type=_positive_int,
        metavar="N",
        help="at most N task runs at once (dask: N one-thread workers; ray: num_cpus=N)",
    )
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a flow parameter (repeatable); VALUE is converted to the "
        "parameter's type hint (date, Path, Enum, list[int], ...), or "
        "parsed as JSON when it has none",
    )
    run.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=N[/DECAY]",
        help="declare a concurrency limit (repeatable): at most N slots of "
        "NAME at once; /DECAY frees slots at DECAY per second (a rate "
        "limit); tasks tagged NAME and concurrency('NAME') use it",
    )
    run.add_argument(
        "--report", metavar="FILE.html", type=Path, help="write an HTML timeline of the run"
    )
    run.add_argument(
        "--trace",
        metavar="FILE.json",
        type=Path,
        help="write the run as Chrome trace-event JSON (open it in "
        "ui.perfetto.dev or chrome://tracing)",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no live progress line (it is off anyway when stderr is not a terminal)",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``braid`` and ``python -m braid``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cache"]:  # `braid cache list|clear ...` has a parser of its own
        from braid.cachecmd import main as cache_main

        return cache_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return run_command(args)
    except (
        UsageError,
        errors.InvalidParameterValue,
        errors.MissingExtraError,
        errors.ConfigurationError,
    ) as exc:
        _say(f"braid: error: {_one_line(exc)}")
        return 2
    except KeyboardInterrupt:
        _say("braid: interrupted")
        return 130


def run_command(args: argparse.Namespace) -> int:
    """``braid run``: load, check, run, summarise; returns the exit status."""
    for what, path in (("report", args.report), ("trace", args.trace)):
        if path is not None and not path.parent.is_dir():
            raise UsageError(
                f"cannot write the {what} {str(path)!r}: no directory {str(path.parent)!r}"
            )
    try:
        flow = load_flow(args.target)
    except (UsageError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's module failed to import
        _say("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
        _say(f"braid: error: importing {args.target.rpartition(':')[0]} failed: {_one_line(exc)}")
        return 1
    params = parse_params(flow, args.param)
    runner = make_runner(args.runner, args.address, args.max_workers)
    limits = None
    if args.limit:
        from braid.concurrency.limits import parse_limits

        limits = parse_limits(",".join(args.limit), source="--limit")
    show_progress = not args.no_progress and sys.stderr.isatty()
    state: State | None = None
    with watch_flow_runs() as seen:
        progress = None
        if show_progress:
            chosen = runner if runner is not None else flow.task_runner
            caps = getattr(chosen, "capabilities", None)
            progress = ProgressLine(
                sys.stderr, seen, cluster=bool(caps and caps.native_dependencies)
            )
        if progress is not None:
            progress.start()
        try:
            state = run_flow(flow, params, runner, limits)
        except Exception as exc:  # noqa: BLE001 - e.g. the runner could not start
            not_run = exc
        except KeyboardInterrupt:
            if progress is not None:
                progress.stop()
                progress = None
            return _interrupted(flow, seen[0] if seen else None, args)
        finally:
            if progress is not None:
                progress.stop()
    if state is None:
        _say(f"braid: error: flow {flow.name!r} could not run: {_one_line(not_run)}")
        return 1
    record: FlowRunRecord | None = state.record
    if record is not None:
        _say(summary(record))
    if args.report is not None and record is not None:
        write_report(record, args.report)
        _say(f"report: {args.report}")
    if args.trace is not None and record is not None:
        write_trace(record, args.trace)
        _say(f"trace: {args.trace}")
    if state.is_completed():
        print(format_value(state.result()), flush=True)
        return 0
    _say(failure_text(flow, state, record))
    return 1


def _interrupted(flow: Flow, record: FlowRunRecord | None, args: argparse.Namespace) -> int:
    """Ctrl-C: one line on what was stopped, then the summary, report and trace as far as
    the run got (its queued runs were cancelled, its running ones crashed)."""
    if record is None:
        _say(f"braid: interrupted before flow {flow.name!r} started")
        return 130
    counts: dict[str, int] = {}
    for run in record.all_task_runs():
        counts[run.state_type] = counts.get(run.state_type, 0) + 1
    _say(
        f"braid: interrupted flow run {record.name!r}: "
        f"{counts.get('COMPLETED', 0)} completed, {counts.get('CRASHED', 0)} stopped while "
        f"running, {counts.get('CANCELLED', 0)} cancelled before they started"
    )
    _say(summary(record))
    if args.report is not None:
        write_report(record, args.report)
        _say(f"report: {args.report}")
    if args.trace is not None:
        write_trace(record, args.trace)
        _say(f"trace: {args.trace}")
    return 130


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    """An exception as one line; braid's own messages need no type name in front."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, errors.BraidError) and first:
        return first
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# -- loading the flow ---------------------------------------------------------------------
def load_flow(target: str) -> Flow:
    """Import ``FILE.py`` of ``"FILE.py:FLOW"`` and return its flow ``FLOW``.

    A file inside a package (its directory has ``__init__.py``) is imported under its
    dotted name; any other file is executed like ``python FILE.py`` would (its
    directory first on ``sys.path``, ``__main__`` blocks not run), and its tasks are
    pickled by value like a script's.  Raises :class:`UsageError` for a malformed
    target or a missing file, :class:`FlowNotFound` when there is no such flow;
    whatever the file raises while importing propagates.
    """
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise UsageError(
            f"expected FILE.py:FLOW (a file and the name of a flow in it), got {target!r}"
        )
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"no such file: {path_text}")
    if not path.is_file():
        raise UsageError(f"not a file: {path_text}")
    module = _import_file(path.resolve())
    obj = getattr(module, name, None)
    if isinstance(obj, Flow):
        return obj
    flows = sorted(k for k, v in vars(module).items() if isinstance(v, Flow))
    known = f"flows in it: {', '.join(flows)}" if flows else "it defines no flows"
    if obj is None:
        raise FlowNotFound(f"{path_text} has no flow named {name!r}; {known}")
    raise FlowNotFound(
        f"{path_text}:{name} is a {type(obj).__name__}, not a flow "
        f"(decorate it with @flow); {known}"
    )


def _import_file(path: Path) -> types.ModuleType:
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if len(parts) > 1 and all(p.isidentifier() for p in parts):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        try:
            module = importlib.import_module(".".join(parts))
        except ModuleNotFoundError as exc:
            if exc.name is None or not ".".join(parts).startswith(exc.name):
                raise
        else:
            if Path(getattr(module, "__file__", "") or "").resolve() == path:
                return module
    # a script: like `python FILE.py`, except that it is not registered in sys.modules
    # (workers could not import it by name), so cloudpickle ships its functions by value
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the runner ---------------------------------------------------------------------------
def make_runner(
    spec: str | None, address: str | None = None, max_workers: int | None = None
) -> TaskRunner | None:
    """The runner ``--runner``/``--address``/``--max-workers`` ask for; None keeps the flow's.

    ``spec`` is ``threads``, ``processes``, ``dask``, ``ray`` or ``module:Class`` (a
    :class:`~braid.core.runner.TaskRunner` subclass, given ``address=`` and
    ``max_workers=`` when set).  Raises :class:`UsageError` for an unknown runner or an
    option it does not take, :class:`~braid.errors.MissingExtraError` when the runner's
    extra is not installed.
    """
    if spec is None:
        if address is not None or max_workers is not None:
            raise UsageError(
                "--address and --max-workers need --runner (the flow's own "
                "runner is used without it)"
            )
        return None
    entry = RUNNERS.get(spec)
    if entry is not None and entry.extra is None:
        if address is not None:
            raise UsageError(f"--address applies to dask, ray or a custom runner, not {spec}")
        return load_runner_class(spec)(max_workers=max_workers)  # type: ignore[call-arg]
    if entry is not None:
        try:
            cls: Any = load_runner_class(spec)
        except errors.MissingExtraError:
            raise
        except (ImportError, AttributeError) as exc:
            raise UsageError(
                f"runner {spec!r} is not available in this braid installation ({_one_line(exc)})"
            )
        if address is not None and max_workers is not None:
            raise UsageError(
                f"--max-workers sizes a local {spec} cluster; with --address "
                f"size the cluster itself"
            )
        if address is not None:
            return cls(address=address)
        if max_workers is None:
            return cls()
        if spec == "dask":
            return cls(cluster_kwargs={"n_workers": max_workers, "threads_per_worker": 1})
        return cls(init_kwargs={"num_cpus": max_workers})
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise UsageError(
            f"unknown runner {spec!r}; choose {', '.join(RUNNER_NAMES)} or module:Class"
        )
    return _custom_runner(spec, module_name, class_name, address, max_workers)


def _custom_runner(
    spec: str, module_name: str, class_name: str, address: str | None, max_workers: int | None
) -> TaskRunner:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if isinstance(exc, errors.MissingExtraError):
            raise
        raise UsageError(f"runner {spec!r}: cannot import {module_name!r}: {_one_line(exc)}")
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, TaskRunner)):
        what = "nothing" if cls is None else f"a {type(cls).__name__}"
        raise UsageError(
            f"runner {spec!r}: {module_name}.{class_name} is {what}, not a TaskRunner class"
        )
    kwargs = {
        k: v for k, v in (("address", address), ("max_workers", max_workers)) if v is not None
    }
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError:
        raise UsageError(
            f"runner {spec!r} does not take "
            f"{' or '.join('--' + k.replace('_', '-') for k in kwargs)}"
        )
    return cls(**kwargs)


# -- parameters ---------------------------------------------------------------------------
def parse_params(flow: Flow, pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``name=value`` strings into keyword arguments the flow accepts.

    Names are checked against the flow's signature; each value is converted to its
    parameter's type hint by :func:`braid.params.coerce_parameter` (JSON when it parses,
    else the text, for a parameter without one).  Raises :class:`InvalidParameter` for a
    malformed pair, an unknown, repeated or missing parameter, and
    :class:`~braid.errors.InvalidParameterValue` for a value of the wrong type.
    """
    sig = inspect.signature(flow.fn)
    accepted = {
        n: p
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    open_ended = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(flow.fn, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not checked
        hints = {}
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidParameter(f"--param expects NAME=VALUE, got {pair!r}")
        if name in out:
            raise InvalidParameter(f"parameter {name!r} given twice")
        if name not in accepted and not open_ended:
            raise InvalidParameter(
                f"flow {flow.name!r} has no parameter {name!r}; "
                f"{_describe_signature(flow, accepted)}"
            )
        out[name] = coerce_parameter(name, text, hints.get(name), owner=f"flow {flow.name!r}")
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in out]
    if missing:
        raise InvalidParameter(
            f"flow {flow.name!r} needs {', '.join('--param ' + n + '=VALUE' for n in missing)}"
            f"; {_describe_signature(flow, accepted)}"
        )
    return out


def _describe_signature(flow: Flow, accepted: dict[str, inspect.Parameter]) -> str:
    if not accepted:
        return "it takes no parameters"
    return f"it takes: {', '.join(_describe_parameter(p) for p in accepted.values())}"


def _describe_parameter(p: inspect.Parameter) -> str:
    text = p.name
    if p.annotation is not p.empty:
        ann = p.annotation
        # string annotations (from __future__ import annotations) read as written
        text += f": {ann if isinstance(ann, str) else describe_type(ann)}"
    if p.default is not p.empty:
        text += f" = {p.default!r}"
    return text


# -- running ------------------------------------------------------------------------------
def run_flow(
    flow: Flow, params: dict[str, Any], runner: TaskRunner | None, limits: Any = None
) -> State:
    """Run ``flow`` once with ``params`` (on ``runner`` if given) and return its final State.

    Only the named flow gets the runner; nested flows keep the runner they declare.
    ``limits`` (``--limit``) are declared around the run, for it and its nested flows.
    """
    target = flow if runner is None else flow.with_options(task_runner=runner)
    if limits is not None:
        from braid.concurrency.limits import declare_limits

        with declare_limits(limits):
            return run_flow(target, params, None)
    if target.is_async:
        return asyncio.run(target(**params, return_state=True))
    return target(**params, return_state=True)


# -- the end of a run ---------------------------------------------------------------------
def summary(record: FlowRunRecord) -> str:
    """The end-of-run text: the flow's outcome, task runs by final state, the slowest task
    runs, and the failures grouped by kind (see :func:`failure_groups`)."""
    runs = record.all_task_runs()
    took = (record.end or time.time()) - record.start
    head = f"flow run {record.name!r} {record.state_type or 'RUNNING'} in {format_duration(took)}"
    on = f"on {record.runner}"
    # one line when it fits an 80-column terminal, else the runner on a line of its own
    lines = [f"{head} {on}"] if len(head) + len(on) < 80 else [head, f"  {on}"]
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.state_name] = counts.get(r.state_name, 0) + 1
    by_state = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    nested = _count_nested(record)
    lines.append(
        f"task runs: {len(runs)}"
        + (f" ({by_state})" if runs else "")
        + (f" in {nested + 1} flow runs" if nested else "")
    )
    timed = sorted(
        (r for r in runs if r.duration is not None), key=lambda r: r.duration or 0.0, reverse=True
    )[:SLOWEST_SHOWN]
    if timed:
        lines.append("slowest task runs:")
        width = max(len(r.name) for r in timed)
        lines.extend(
            f"  {r.name:<{width}}  {format_duration(r.duration or 0.0):>9}  {r.where or ''}"
            for r in timed
        )
    groups = failure_groups(runs)
    if groups:
        failed = sum(len(g.runs) for g in groups)
        root = _root_failure(record) if record.state_type != "COMPLETED" else None
        lines.append(
            f"failed task runs: {failed}, {len(groups)} kind{'s' if len(groups) != 1 else ''}"
        )
        for group in groups[:GROUPS_SHOWN]:
            lines.extend(
                group.describe(
                    traceback_below=root is not None and any(r.id == root.id for r in group.runs)
                )
            )
        if len(groups) > GROUPS_SHOWN:
            rest = groups[GROUPS_SHOWN:]
            lines.append(
                f"  … and {len(rest)} more kinds ({sum(len(g.runs) for g in rest)} task runs)"
            )
    return "\n".join(lines)


class FailureGroup:
    """Failed task runs of one kind: the exception type (or the state, for runs that did
    not run), the tasks, the runs, and the first message."""

    def __init__(self, kind: str, ran: bool) -> None:
        self.kind = kind
        self.ran = ran  # False for runs that never ran (upstream failed, cancelled)
        self.runs: list[TaskRunRecord] = []
        self.tasks: list[str] = []
        self.message = ""

    def add(self, run: TaskRunRecord, message: str) -> None:
        if not self.runs:
            self.message = message
        self.runs.append(run)
        if run.task_name not in self.tasks:
            self.tasks.append(run.task_name)

    def describe(self, traceback_below: bool = False) -> list[str]:
        """Two lines: kind, count, tasks and first message; then the runs' names (shortened)."""
        tasks = _shorten_list(self.tasks, 3)
        head = (
            f"  {self.kind} × {len(self.runs)} (task{'s' if len(self.tasks) > 1 else ''} "
            f"{tasks}): {_shorten(self.message, MESSAGE_SHOWN)}"
        )
        names = _shorten_list([r.name for r in self.runs], RUNS_SHOWN)
        tail = "; its traceback is below" if traceback_below else ""
        return [head, f"    runs: {names}{tail}"]


#: the first line of a failed state's message is ``TypeName: text`` (states._describe)
_EXC_PREFIX = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.S)


def failure_groups(runs: Sequence[TaskRunRecord]) -> list[FailureGroup]:
    """The failed task runs grouped by exception type (runs that never ran: by state name).

    A run's record keeps the first line of its state message, ``Type: text`` for an
    exception; groups of runs that ran come first, the largest first.
    """
    groups: dict[str, FailureGroup] = {}
    for run in runs:
        if not run.error or run.state_type == "COMPLETED":
            continue
        ran = run.state_name not in _DID_NOT_RUN and run.state_type != "CANCELLED"
        kind, message = run.state_name, run.error
        match = _EXC_PREFIX.match(run.error) if ran else None
        if match:
            kind, message = match.group(1), match.group(2)
        group = groups.get(kind)
        if group is None:
            group = groups[kind] = FailureGroup(kind, ran)
        group.add(run, message)
    return sorted(groups.values(), key=lambda g: (not g.ran, -len(g.runs)))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten_list(items: Sequence[str], shown: int) -> str:
    text = ", ".join(items[:shown])
    return text + (f" … and {len(items) - shown} more" if len(items) > shown else "")


def _count_nested(record: FlowRunRecord) -> int:
    return sum(1 + _count_nested(child) for child in record.flow_runs)


def failure_text(flow: Flow, state: State, record: FlowRunRecord | None) -> str:
    """What a failed run prints last: the failing task run, its error, the traceback."""
    exc = state.result(raise_on_failure=False)
    lines = []
    root = _root_failure(record) if record is not None else None
    if root is not None:
        lines.append(
            f"failing task run: {root.name} (task {root.task_name!r}, "
            f"{root.state_name}, ran on {root.where or 'no worker'})"
        )
        lines.append(f"error: {root.error}")
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    lines.append("".join(tb).rstrip())
    lines.append(f"braid: flow {flow.name!r} {state.type.value}: {_one_line(exc)}")
    return "\n".join(lines)


def _root_failure(record: FlowRunRecord) -> TaskRunRecord | None:
    """The first failed task run that ran (not one skipped because its upstream failed)."""
    failed = [r for r in record.all_task_runs() if r.error]
    ran = [r for r in failed if r.state_name != "UpstreamFailed"]
    pool = ran or failed
    return min(pool, key=lambda r: r.end or 0.0) if pool else None


def format_value(value: Any) -> str:
    """How ``braid run`` prints a return value: strings as they are, the rest pretty-printed."""
    return value if isinstance(value, str) else pprint.pformat(value, width=100)
