"""The public surface: the exported names, and what `import braid` pulls in."""

from __future__ import annotations

import subprocess
import sys

import pytest

import braid


def test_exported_names():
    assert set(braid.__all__) == {
        "Capabilities",
        "Flow",
        "FutureList",
        "ProcessPoolTaskRunner",
        "Run",
        "State",
        "StateType",
        "Task",
        "TaskFuture",
        "TaskRunner",
        "ThreadPoolTaskRunner",
        "allow_failure",
        "as_completed",
        "errors",
        "flow",
        "get_run_context",
        "get_run_logger",
        "quote",
        "tags",
        "task",
        "unmapped",
        "wait",
    }
    for name in braid.__all__:
        assert getattr(braid, name) is not None


def test_import_braid_imports_no_backend_and_nothing_heavy():
    code = (
        "import sys, braid\n"
        "bad = [m for m in ('dask', 'distributed', 'ray', 'asyncio', 'multiprocessing',\n"
        "                   'cloudpickle', 'inspect', 'dataclasses') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchRunner"):
        braid.NoSuchRunner  # noqa: B018


def test_every_error_is_documented_and_rooted():
    from braid import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, (errors.BraidError, errors.BraidWarning)), name
        assert cls.__doc__ and len(cls.__doc__.strip()) > 20, name
    assert issubclass(errors.TaskTimeout, TimeoutError)
