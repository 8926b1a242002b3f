"""The one mechanism every file read back goes through: size, UTF-8, depth, then a schema; each rule names file and
field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field
from typing_extensions import TypedDict

from empdg.data.errors import DataError, InvalidFileError
from empdg.data.file_schema import (
    check_json_depth,
    fixed_array,
    load_json_bounded,
    read_bytes_bounded,
    read_text_bounded,
    validate,
)


def test_a_file_over_the_size_limit_is_refused_naming_file_and_setting(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * 101)
    assert read_bytes_bounded(path, max_bytes=101) == b"x" * 101
    with pytest.raises(InvalidFileError) as info:
        read_bytes_bounded(path, max_bytes=100, what="prediction file", setting="evaluate.max_file_mb")
    message = str(info.value)
    assert message.startswith(f"{path}: prediction file is ") and "over the limit of 100 bytes" in message
    assert "raise evaluate.max_file_mb" in message
    assert isinstance(info.value, DataError)  # commands print it as one `error:` line, exit 2


def test_no_limit_reads_everything(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert read_bytes_bounded(path, max_bytes=None) == b"abc"


def test_non_utf8_text_names_file_byte_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok\nd\xe9j\xe0\n")
    with pytest.raises(InvalidFileError, match=r"latin1.txt: file is not UTF-8 text \(byte 4, line 2"):
        read_text_bounded(path, max_bytes=None)
    with pytest.raises(InvalidFileError, match=r"not UTF-8 text \(byte 2, line 1"):
        load_json_bounded(b'["\xff"]', path=path)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "]]]]]"]', 1),  # brackets inside strings do not nest
        ('["\\"[[", [[]]]', 3),  # an escaped quote does not end the string
        ('["\\\\", [[]]]', 3),  # an escaped backslash does not escape the closing quote
    ],
)
def test_depth_is_counted_outside_strings(text: str, depth: int) -> None:
    check_json_depth(text, max_depth=depth, path="f.json")
    if depth:
        with pytest.raises(InvalidFileError, match=rf"f.json: nested more than {depth - 1} levels deep"):
            check_json_depth(text, max_depth=depth - 1, path="f.json")


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "[" * 100_000, '{"a":' * 100_000])
def test_deep_nesting_is_an_invalid_file_not_a_recursion_error(text: str) -> None:
    with pytest.raises(InvalidFileError, match="f.json: nested"):
        load_json_bounded(text, path="f.json")


def test_syntax_errors_name_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"a": [1,\n 2', encoding="utf-8")
    with pytest.raises(InvalidFileError, match=r"cut.json: not valid JSON \(.* at line 2 column 3\)"):
        load_json_bounded(path)
    with pytest.raises(InvalidFileError, match=r"p.jsonl:7: not valid JSON \(.* at column 2\)"):
        load_json_bounded("{x", path="p.jsonl", line=7)


def test_text_over_the_limit_names_the_line() -> None:
    with pytest.raises(InvalidFileError, match="p.jsonl:2: file is 5 bytes, over the limit of 3 bytes"):
        load_json_bounded('"abc"', path="p.jsonl", line=2, max_bytes=3)


def test_a_file_reads_back_as_json(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"a": ["é", 1]}), encoding="utf-8")
    assert load_json_bounded(path, max_bytes=100) == {"a": ["é", 1]}


class _Split(TypedDict):
    tokens: list[list[str]]
    emotion: Annotated[int, Field(ge=0, le=31)]


class _File(TypedDict):
    name: str
    splits: dict[str, _Split]


GOOD = {"name": "x", "splits": {"train": {"tokens": [["a", "b"], []], "emotion": 3}}}


def _with(**split):
    return {"name": "x", "splits": {"train": {**GOOD["splits"]["train"], **split}}}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (_with(tokens=[1, 2]), "splits.train.tokens[0]: Input should be a valid list (found 1)"),
        (_with(tokens="ab"), "splits.train.tokens: Input should be a valid list (found 'ab')"),
        (_with(tokens=[["a", 5]]), "splits.train.tokens[0][1]: Input should be a valid string (found 5)"),
        (_with(emotion=999), "splits.train.emotion: Input should be less than or equal to 31 (found 999)"),
        (_with(emotion=-1), "splits.train.emotion: Input should be greater than or equal to 0 (found -1)"),
        (_with(emotion="3"), "splits.train.emotion: Input should be a valid integer (found '3')"),  # strict
        (_with(emotion=3.0), "splits.train.emotion: Input should be a valid integer (found 3.0)"),
        (_with(emotion=True), "splits.train.emotion: Input should be a valid integer (found True)"),
        ({"name": "x"}, "splits: Field required"),
        ([GOOD], "Input should be a valid dictionary"),
        (_with(tokens=[1], emotion=99), "splits.train.tokens[0]: Input should be a valid list (found 1); 1 more"),
    ],
)
def test_each_wrong_type_or_range_names_the_field(value, problem: str) -> None:
    with pytest.raises(InvalidFileError) as info:
        validate(value, _File, path="cache.json")
    assert str(info.value).startswith(f"cache.json: {problem}"), str(info.value)


def test_a_valid_value_passes_and_line_and_where_prefix_the_field() -> None:
    assert validate(GOOD, _File, path="f") == GOOD
    with pytest.raises(InvalidFileError, match=r"^p.jsonl:3: splits.train.emotion: "):
        validate(_with(emotion=32), _File, path="p.jsonl", line=3)
    with pytest.raises(InvalidFileError, match=r"^f.json: files\[2\]: splits.train.emotion: "):
        validate(_with(emotion=32), _File, path="f.json", where="files[2]")


def test_fixed_arrays_are_json_lists_checked_per_position() -> None:
    row = fixed_array(str, Annotated[int, Field(ge=0)], list[int])
    assert validate([["a", 1, [2]]], list[row], path="f") == [("a", 1, [2])]
    for bad, problem in [
        ([["a", -1, []]], "[0][1]: Input should be greater than or equal to 0"),
        ([["a", 1, [2], "extra"]], "[0]: Tuple should have at most 3 items"),
        ([["a", 1]], "[0][2]: Field required"),
        ([5], "[0]: Input should be a valid tuple"),
    ]:
        with pytest.raises(InvalidFileError, match=r"^f: " + problem.replace("[", r"\[").replace("]", r"\]")):
            validate(bad, list[row], path="f")
