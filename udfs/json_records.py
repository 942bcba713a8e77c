"""JSON Lines records: one object per line, or the elements of a file of pretty-printed JSON documents."""
from __future__ import annotations

import json
from typing import Iterable, Iterator

from udfs.decoding import unmark
from udfs.records import Record, TextFormat, checked_value
from udfs.status import MALFORMED


def jsonl_records(lines: Iterable[str], fmt: TextFormat) -> Iterator[Record]:
    """Records of JSON Lines: one object per line; blank lines are skipped.

    A file whose first line is `[` or `{` and does not parse alone is read as JSON documents: a
    pretty-printed array of objects (each element a record), one object, or several objects one after
    the other (`jq` output). A line (or element) that is not a JSON object is `malformed`, with what was
    found; a file that is neither is read line by line, each line saying what is wrong with it.
    """
    numbered: Iterator[tuple[int, str]] = ((n, line) for n, line in enumerate(lines, start=1) if line.strip())
    first = next(numbered, None)
    if first is None:
        return
    if first[1].lstrip()[:1] in ("[", "{") and not _parses(first[1]):
        rest = [first, *numbered]  # documents are read whole, as Spark's multiLine JSON reads them
        try:
            values = _documents("".join(line for _, line in rest))
        except json.JSONDecodeError:
            values = None
        if values is not None:
            elements = [e for value in values for e in (value if isinstance(value, list) else [value])]
            for i, element in enumerate(elements, start=1):
                yield _json_value_record(i, f"element {i}", element, fmt)
            return
        numbered = iter(rest[1:])
    yield _json_record(first[0], f"line {first[0]}", first[1], fmt)
    for n, line in numbered:
        yield _json_record(n, f"line {n}", line, fmt)


def _documents(text: str) -> list:
    """The JSON values written one after another in `text`; JSONDecodeError if it holds anything else."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return values
        value, at = decoder.raw_decode(text, at)
        values.append(value)


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


def _json_record(n: int, where: str, line: str, fmt: TextFormat) -> Record:
    try:
        value = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        return Record(n, where, {}, {}, MALFORMED, f"not JSON: {exc.msg.removesuffix(' at')} at column "
                      f"{exc.colno}: {unmark(line.strip())[:200]!r}")
    return _json_value_record(n, where, value, fmt)


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false",
               type(None): "null"}


def _json_value_record(n: int, where: str, value: object, fmt: TextFormat) -> Record:
    if not isinstance(value, dict):
        text = unmark(json.dumps(value, ensure_ascii=False))
        return Record(n, where, {}, {}, MALFORMED, f"{_JSON_KINDS.get(type(value), 'a value')}, "
                      f"not a JSON object: {text[:200]!r}")
    record = Record(n, where, {})
    for name, item in value.items():
        text = item if isinstance(item, str) or item is None else json.dumps(item, ensure_ascii=False)
        record.fields[unmark(name)] = checked_value(record, unmark(name), text, fmt)
    return record
