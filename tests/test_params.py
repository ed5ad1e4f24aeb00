"""``braid.params.coerce_parameter``: command-line text to the type a flow's hint asks for."""

from __future__ import annotations

import datetime
import enum
import importlib.util
import sys
import typing
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, NewType, Optional, Union

import pytest

from braid.errors import BraidError, InvalidParameterValue
from braid.params import coerce_parameter, describe_type


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


UserId = NewType("UserId", int)
# the spellings older code uses, which must work like `int | None` and `int | str`
OPTIONAL_INT = Optional[int]  # noqa: UP045
OPTIONAL_DATE = Optional[datetime.date]  # noqa: UP045
INT_OR_STR = Union[int, str]  # noqa: UP007


def ok(raw: Any, annotation: Any) -> Any:
    return coerce_parameter("p", raw, annotation)


def bad(raw: Any, annotation: Any) -> str:
    with pytest.raises(InvalidParameterValue) as info:
        coerce_parameter("p", raw, annotation, owner="flow 'etl'")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("parameter 'p' of flow 'etl' expects "), message
    return message


@pytest.mark.parametrize(
    ("raw", "annotation", "expected"),
    [
        ("42", str, "42"),
        ("", str, ""),
        ("7", int, 7),
        (" -3 ", int, -3),
        ("2", float, 2.0),
        ("2.5e3", float, 2500.0),
        ("true", bool, True),
        ("No", bool, False),
        ("1", bool, True),
        ("off", bool, False),
        ("2024-05-01", datetime.date, datetime.date(2024, 5, 1)),
        ("2024-05-01T12:30:00", datetime.datetime, datetime.datetime(2024, 5, 1, 12, 30)),
        (
            "2024-05-01T12:30:00Z",
            datetime.datetime,
            datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
        ),
        ("12:30", datetime.time, datetime.time(12, 30)),
        ("data/in.csv", Path, Path("data/in.csv")),
        ("/a/b", PurePosixPath, PurePosixPath("/a/b")),
        ("RED", Colour, Colour.RED),
        ("green", Colour, Colour.GREEN),  # by value
        ("HIGH", Level, Level.HIGH),
        ("1", Level, Level.LOW),  # an int value given as text
        ("fast", Literal["fast", "slow"], "fast"),
        ("3", Literal[1, 3], 3),
        ("[1, 2, 3]", list[int], [1, 2, 3]),
        ("1, 2,3", list[int], [1, 2, 3]),  # comma-separated
        ("", list[int], []),
        ("a,b", list[str], ["a", "b"]),
        ('["2024-01-01"]', list[datetime.date], [datetime.date(2024, 1, 1)]),
        ("RED,GREEN", set[Colour], {Colour.RED, Colour.GREEN}),
        ("[1, 2]", tuple[int, ...], (1, 2)),
        ('[1, "x"]', tuple[int, str], (1, "x")),
        ('{"a": 1, "b": 2}', dict[str, int], {"a": 1, "b": 2}),
        ('{"1": "RED"}', dict[int, Colour], {1: Colour.RED}),
        ('{"k": [1]}', dict, {"k": [1]}),
        ('[1, "a"]', list, [1, "a"]),
        ("null", OPTIONAL_INT, None),
        ("None", int | None, None),
        ("5", OPTIONAL_INT, 5),
        ("2024-05-01", datetime.date | None, datetime.date(2024, 5, 1)),
        ("null", str | None, None),
        ("null", str, "null"),  # a str parameter takes the text as it is
        ("42", INT_OR_STR, 42),
        ("forty", INT_OR_STR, "forty"),
        ("7", Annotated[int, "a count"], 7),
        ("7", UserId, 7),
        ('{"k": 1}', None, {"k": 1}),  # no hint: JSON when it parses
        ("plain", None, "plain"),
        ("[1]", Any, [1]),
    ],
)
def test_text_converts_to_the_hinted_type(raw, annotation, expected):
    value = ok(raw, annotation)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "annotation", "expected"),
    [
        ("ten", int, "expects int, got 'ten'"),
        ("true", int, "expects int, got 'true'"),
        ("1.5", int, "expects int, got '1.5'"),
        ("maybe", bool, "expects bool, got 'maybe'"),
        ("x", float, "expects float, got 'x'"),
        ("2024-13-01", datetime.date, "expects date, got '2024-13-01' (ISO 8601, e.g. 2024-05-01)"),
        ("yesterday", datetime.datetime, "expects datetime, got 'yesterday' (ISO 8601"),
        ("", Path, "expects Path, got ''"),
        ("blue", Colour, "expects Colour, got 'blue' (valid: RED ('red'), GREEN ('green'))"),
        ("3", Level, "expects Level, got '3' (valid: LOW (1), HIGH (2))"),
        ("medium", Literal["fast", "slow"], "expects one of 'fast', 'slow', got 'medium'"),
        ('[1, "x"]', list[int], "expects list[int], got '[1, \"x\"]' (item 1: 'x' is not int)"),
        ("1,x", list[int], "(item 1: 'x' is not int)"),
        ("[1,", list[int], "(not a JSON array)"),
        ("{}", list[int], "expects list[int], got '{}'"),
        ("[1]", tuple[int, int], "(2 items expected, got 1)"),
        ('{"a": "x"}', dict[str, int], "(value of 'a': 'x' is not int)"),
        ('{"a": 1}', dict[int, int], "(key 'a' is not int)"),
        ("[1]", dict[str, int], "expects dict[str, int], got '[1]'"),
        ("nope", dict, "(not a JSON object)"),
        ("blue", Colour | None, "expects Colour | None, got 'blue' (valid: RED"),
        ("x", OPTIONAL_INT, "expects int | None, got 'x'"),
    ],
)
def test_a_bad_value_is_one_line_naming_parameter_value_and_type(raw, annotation, expected):
    assert expected in bad(raw, annotation)


def test_the_error_is_a_braid_value_error_and_long_values_are_shortened():
    assert issubclass(InvalidParameterValue, BraidError)
    assert issubclass(InvalidParameterValue, ValueError)
    message = bad("x" * 500, int)
    assert len(message) < 200 and message.endswith("…'")


def test_decoded_values_are_checked_the_same_way():
    # the flow engine passes Python values, not text
    assert ok("2024-05-01", datetime.date) == datetime.date(2024, 5, 1)
    assert ok(Colour.RED, Colour) is Colour.RED
    assert ok([1, 2], list[int]) == [1, 2]
    assert ok(3, float) == 3.0 and type(ok(3, float)) is float
    assert ok(None, OPTIONAL_INT) is None
    with pytest.raises(InvalidParameterValue, match=r"expects int, got True"):
        coerce_parameter("p", True, int)
    with pytest.raises(InvalidParameterValue, match=r"item 0: 'a' is not int"):
        coerce_parameter("p", ["a"], list[int])
    assert ok(datetime.datetime(2024, 1, 1), datetime.datetime) == datetime.datetime(2024, 1, 1)
    bad(datetime.datetime(2024, 1, 1), datetime.date)  # a datetime is not a date parameter


def test_describe_type_reads_as_written():
    assert describe_type(list[int]) == "list[int]"
    assert describe_type(OPTIONAL_DATE) == "date | None"
    assert describe_type(dict[str, list[Colour]]) == "dict[str, list[Colour]]"
    assert describe_type(tuple[int, ...]) == "tuple[int, ...]"
    assert describe_type(Literal["a", 1]) == "one of 'a', 1"
    assert describe_type(typing.List[int]) == "list[int]"  # noqa: UP006 - the old spelling


def test_pydantic_is_not_imported_by_braid():
    code = (
        "import sys, braid.params, braid.cli; "
        "from braid.params import coerce_parameter; coerce_parameter('p', '1', int); "
        "sys.exit('pydantic' in sys.modules)"
    )
    import subprocess

    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.skipif(
    importlib.util.find_spec("pydantic") is None, reason="pydantic is not installed"
)
def test_pydantic_models_are_validated_from_json():
    import pydantic

    class Window(pydantic.BaseModel):
        start: datetime.date
        days: int = 7

    value = ok('{"start": "2024-05-01"}', Window)
    assert value == Window(start=datetime.date(2024, 5, 1), days=7)
    assert ok('[{"start": "2024-05-01", "days": 2}]', list[Window])[0].days == 2
    message = bad('{"start": "2024-05-01", "days": "many"}', Window)
    assert "expects Window, got" in message and "days" in message
    assert "(not a JSON object)" in bad("start=today", Window)
