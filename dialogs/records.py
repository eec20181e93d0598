"""Read JSON-array and JSONL dataset files record by record, each with its exact ``file:line`` source.

For a JSON array the line is where the element starts; for JSONL it is the line of the record. Broken input is
reported as ``Problem``s (``file:line:field: problem``) instead of raised, so a whole dataset is checked at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


@dataclass(frozen=True)
class Problem:
    """One bad thing about one record. ``str(problem)`` is ``file:line:field: message``."""

    source: str  # "file:line"
    field: str  # "conversations[1].value", "image_name", "json", ...
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.field}: {self.message}"


@dataclass(frozen=True)
class Record:
    data: Any
    source: str  # "file:line"


def read_records(path: str | Path) -> Iterator[Record | Problem]:
    """Yield every record of a ``.json`` (array, or one object) or ``.jsonl`` file, or a Problem for what is broken.

    A broken JSONL line is reported and reading goes on; broken JSON array syntax ends the file (after the
    elements read so far).
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        yield Problem(f"{name}:0", "file", "no such file")
        return
    except (OSError, UnicodeDecodeError) as error:
        yield Problem(f"{name}:0", "file", f"cannot be read as UTF-8 text ({error})")
        return
    start = len(text) - len(text.lstrip())
    if text[start:start + 1] == "[":
        yield from _array(text, start, name)
        return
    if Path(path).suffix == ".json":  # a single pretty-printed object is one record
        try:
            yield Record(json.loads(text), f"{name}:{text.count(chr(10), 0, start) + 1}")
            return
        except json.JSONDecodeError:
            pass  # read it as JSON lines, which reports the broken line
    yield from _lines(text, name)


def _lines(text: str, name: str) -> Iterator[Record | Problem]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield Record(json.loads(line), f"{name}:{number}")
        except json.JSONDecodeError as error:
            yield Problem(f"{name}:{number}", "json", f"not valid JSON ({error.msg} at column {error.colno}); "
                                                      "a .jsonl file holds one JSON object per line")


def _array(text: str, start: int, name: str) -> Iterator[Record | Problem]:
    counted = {"index": 0, "line": 1}  # records come in order: count newlines incrementally

    def line_of(index: int) -> int:
        if index < counted["index"]:
            return text.count("\n", 0, index) + 1
        counted["line"] += text.count("\n", counted["index"], index)
        counted["index"] = index
        return counted["line"]

    decoder = json.JSONDecoder()
    index = _skip(text, start + 1)
    if text[index:index + 1] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            yield Problem(f"{name}:{line_of(error.pos)}", "json", f"not valid JSON ({error.msg}); records after "
                                                                  "this point were not read")
            return
        yield Record(value, f"{name}:{line_of(index)}")
        index = _skip(text, end)
        separator = text[index:index + 1]
        if separator == "]":
            if text[_skip(text, index + 1):].strip():
                yield Problem(f"{name}:{line_of(index)}", "json", "text after the closing ']'")
            return
        if separator != ",":
            yield Problem(f"{name}:{line_of(index)}", "json", "expected ',' or ']' between array elements")
            return
        index = _skip(text, index + 1)


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index
