"""``braid cache``: list records with key, task, size, age and expiry; clear all, by task,
or by age; bad usage exits 2."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from braid.cachecmd import main, parse_age
from braid.results import MAGIC, ResultStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store_dir(tmp_path):
    store = ResultStore(result_storage=tmp_path)
    store.write("k-load", list(range(1000)), task_name="load")
    store.write(
        "k-fit",
        1,
        task_name="fit",
        expiration=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=3),
    )
    record, blob = store.create_result_record(2, "k-old", task_name="fit")
    record.metadata.created -= dt.timedelta(hours=3)  # a record made 3 h ago
    payload = blob.split(b"\n", 2)[2]
    (tmp_path / "k-old").write_bytes(MAGIC + record.metadata.to_json() + b"\n" + payload)
    return tmp_path


def run(*argv):
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_list_shows_key_task_size_age_expiry(store_dir):
    code, out = run("list", "--storage", str(store_dir))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "TASK", "SIZE", "AGE", "EXPIRES"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == {"k-load", "k-fit", "k-old"}
    assert "load" in rows["k-load"] and "never" in rows["k-load"]
    assert "in 2h" in rows["k-fit"] or "in 3h" in rows["k-fit"]
    assert " 3h " in rows["k-old"]
    assert lines[-1].startswith("3 record(s)")


def test_clear_by_task_by_age_and_all(store_dir):
    assert run("clear", "--storage", str(store_dir), "--older-than", "2h")[1].startswith(
        "removed 1"
    )
    assert run("clear", "--storage", str(store_dir), "--task", "fit")[1].startswith("removed 1")
    assert sorted(p.name for p in store_dir.iterdir()) == ["k-load"]
    assert run("clear", "--storage", str(store_dir), "--all")[1].startswith("removed 1")
    assert list(store_dir.iterdir()) == []


def test_default_storage_and_bad_usage(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAID_HOME", str(tmp_path))
    assert run("list")[1].strip().endswith(f"0 record(s) in {tmp_path / 'storage'}")
    assert run("clear")[0] == 2
    assert run("clear", "--older-than", "soon")[0] == 2
    assert run("frobnicate")[0] == 2


def test_parse_age():
    assert parse_age("1h30m") == dt.timedelta(minutes=90)
    assert parse_age("2d") == dt.timedelta(days=2)
    with pytest.raises(ValueError):
        parse_age("2 hours")
