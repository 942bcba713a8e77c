"""Records of CSV and JSON Lines files: each with where it starts, its fields, and what went wrong reading it.

Python's `csv` and `json` parse here, not Spark's readers: those turn undecodable bytes into U+FFFD
without a word and let an unclosed quote swallow every following line into one field. Here every record
is a row; one that cannot be read as it is says so (`malformed`), and a field holding bytes that are not
in the declared encoding is listed in `undecodable` so the caller can make the row a `decode_error`.
"""
from __future__ import annotations

import codecs
import csv
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import pandas as pd

from udfs import files
from udfs.decoding import display, marked_lines, undecodable, unmark, utf16_hint
from udfs.status import DECODE_ERROR, MALFORMED, READ_ERROR, RowError

# A field longer than this is an unclosed quote running on, not a text (the csv module's default limit
# is 131,072 characters; a long article fits in 16 M).
MAX_FIELD_CHARS = 16 * 2**20
csv.field_size_limit(MAX_FIELD_CHARS)
_UTF16_BOMS_MARKED = ("\udcff\udcfe", "\udcfe\udcff")  # FF FE / FE FF read as UTF-8: marked bytes


@dataclass(frozen=True)
class TextFormat:
    """How a text file's records are laid out and encoded."""

    kind: str               # "csv" or "jsonl"
    encoding: str = "utf-8"
    delimiter: str = ","    # csv only


@dataclass
class Record:
    line: int                           # where it starts: 1-based line (JSON documents: element number)
    where: str | None                   # the same in words: "line 4", "element 2"; None: the whole file
    fields: dict[str, str | None]       # column → value (JSON values that are not strings as JSON text)
    undecodable: dict[str, str] = field(default_factory=dict)  # column → what could not be decoded
    status: str | None = None           # `malformed` when the record could not be read as it is
    error: str | None = None


def records(lines: Iterable[str], fmt: TextFormat) -> Iterator[Record]:
    """The records of a file's decoded lines (`decoding.marked_lines`). A file that starts with a UTF-16
    byte order mark but is read as another encoding is one `decode_error` record saying so."""
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return
    if first.startswith(_UTF16_BOMS_MARKED) and utf16_hint(codecs.BOM_UTF16_LE, fmt.encoding):
        yield Record(1, None, {}, {}, DECODE_ERROR, f"not valid {display(fmt.encoding)}"
                     f"{utf16_hint(codecs.BOM_UTF16_LE, fmt.encoding)}; nothing in the file was read")
        return
    parse = csv_records if fmt.kind == "csv" else jsonl_records
    yield from parse(itertools.chain([first], lines), fmt)


class _Lines:
    """An iterator of lines that remembers the ones the current record took, and takes some back."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.source, self.pending, self.taken, self.number = iter(lines), deque(), [], 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self.pending.popleft() if self.pending else next(self.source)
        self.number += 1
        self.taken.append(line)
        return line

    def start(self) -> int:
        """Begins a record: the 1-based number of its first line."""
        self.taken = []
        return self.number + 1

    def give_back(self, lines: list[str]) -> None:
        self.pending.extendleft(reversed(lines))
        self.number -= len(lines)


def csv_records(lines: Iterable[str], fmt: TextFormat) -> Iterator[Record]:
    """Records of CSV text with a header line; blank lines are skipped.

    A record that breaks the CSV rules (an unclosed quote at the end of the file, text after a closing
    quote) is `malformed` with its first line as the raw text, and parsing resumes at its second line, so
    the rows an unclosed quote ran over are rows again. So is a quoted field that ran over two or more
    lines which each read alone as a whole record (an unclosed quote closed by a stray `"` further on);
    a quoted field over lines that do not look like records (prose) stays one field.
    """
    source = _Lines(lines)
    header: list[str] | None = None
    reader = csv.reader(source, delimiter=fmt.delimiter, strict=True)
    while True:
        start = source.start()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            taken = source.taken
            yield _broken(start, taken[0], _reason(exc, start, len(taken)), header, fmt)
            if header is None:
                return  # without a header no record can be read
            source.give_back(taken[1:])
            reader = csv.reader(source, delimiter=fmt.delimiter, strict=True)
            continue
        if not row:
            continue
        if header is None:
            header = _header([unmark(name) for name in row])
            continue
        taken = source.taken
        if len(taken) > 2 and all(_whole_record(line, len(header), fmt) for line in taken[1:]):
            source.give_back(taken[1:])
            reader = csv.reader(source, delimiter=fmt.delimiter, strict=True)
            yield _broken(start, taken[0], f"a quoted field runs over lines {start}-{start + len(taken) - 1}, "
                          "which each read as a record of their own (an unclosed quote?)", header, fmt)
            continue
        yield _csv_record(start, row, header, "".join(taken), fmt)


def _reason(error: csv.Error, start: int, lines: int) -> str:
    if "unexpected end of data" in str(error):
        return "a quote opened on this line is never closed (it runs to the end of the file)"
    if lines > 1:
        return f"a quote opened on this line does not close properly ({error} on line {start + lines - 1})"
    return str(error)


def _header(names: list[str]) -> list[str]:
    """Column names: an empty one is `_c<i>`, a repeated one gets its position appended (as Spark does)."""
    named = [name or f"_c{i}" for i, name in enumerate(names)]
    return [f"{name}{i}" if named.count(name) > 1 else name for i, name in enumerate(named)]


def _whole_record(line: str, width: int, fmt: TextFormat) -> bool:
    """Whether `line` alone reads as a record of `width` fields starting with an id-like first field."""
    try:
        row = next(csv.reader([line], delimiter=fmt.delimiter, strict=True), [])
    except csv.Error:
        return False
    return len(row) == width and bool(row[0]) and not any(ch.isspace() for ch in row[0])


def _broken(start: int, first_line: str, reason: str, header: list[str] | None, fmt: TextFormat) -> Record:
    """A record that could not be read: its first line's fields as far as they go, its raw text."""
    raw = unmark(first_line.rstrip("\r\n"))
    if header is None:
        return Record(start, f"line {start}", {}, {}, MALFORMED, f"the header line cannot be "
                      f"read ({reason}): {raw[:200]!r}")
    try:
        row = next(csv.reader([first_line.rstrip("\r\n")], delimiter=fmt.delimiter), [])
    except csv.Error:  # a field over the size limit
        row = []
    record = _csv_record(start, row, header, first_line, fmt)
    record.status, record.error = MALFORMED, f"{reason}: {raw[:200]!r}"
    return record


def _csv_record(start: int, row: list[str], header: list[str], raw: str, fmt: TextFormat) -> Record:
    record = Record(start, f"line {start}", {})
    for name, value in zip(header, row + [None] * (len(header) - len(row))):
        record.fields[name] = _checked(record, name, value, fmt)
    if len(row) != len(header):
        record.status = MALFORMED
        record.error = (f"{len(row)} fields, the header has {len(header)}: "
                        f"{unmark(raw.rstrip(chr(13) + chr(10)))[:200]!r}")
    return record


def _checked(record: Record, name: str, value: str | None, fmt: TextFormat) -> str | None:
    """`value` made valid Unicode; its undecodable bytes, if any, noted on the record."""
    if value is None:
        return None
    problem = undecodable(value, fmt.encoding)
    if problem is None:
        return value
    record.undecodable[name] = problem
    return unmark(value)


def jsonl_records(lines: Iterable[str], fmt: TextFormat) -> Iterator[Record]:
    """Records of JSON Lines: one object per line; blank lines are skipped.

    A file whose first line is `[` or `{` and does not parse alone is read as one JSON document (a
    pretty-printed array of objects, or one object): each element is a record. A line (or element) that
    is not a JSON object is `malformed`, with what was found.
    """
    numbered: Iterator[tuple[int, str]] = ((n, line) for n, line in enumerate(lines, start=1) if line.strip())
    first = next(numbered, None)
    if first is None:
        return
    if first[1].lstrip()[:1] in ("[", "{") and not _parses(first[1]):
        rest = [first, *numbered]  # a document is read whole, as Spark's multiLine JSON reads it
        try:
            document = json.loads("".join(line for _, line in rest))
        except json.JSONDecodeError:
            document = _NOT_JSON
        if document is not _NOT_JSON:
            yield from _document(document, fmt)
            return
        numbered = iter(rest[1:])  # not one document either: line by line, each saying what is wrong
    yield _json_record(first[0], f"line {first[0]}", first[1], fmt)
    for n, line in numbered:
        yield _json_record(n, f"line {n}", line, fmt)


_NOT_JSON = object()


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


def _document(value: object, fmt: TextFormat) -> Iterator[Record]:
    elements = value if isinstance(value, list) else [value]
    for i, element in enumerate(elements, start=1):
        yield _json_value_record(i, f"element {i}", element, fmt)


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
                      f"not a JSON object (one object per line is expected): {text[:200]!r}")
    record = Record(n, where, {})
    for name, item in value.items():
        text = item if isinstance(item, str) or item is None else json.dumps(item, ensure_ascii=False)
        record.fields[unmark(name)] = _checked(record, unmark(name), text, fmt)
    return record


# ---- the mapInPandas shell ---------------------------------------------------------------------

RECORDS_SCHEMA = ("file string, line long, where string, fields map<string,string>, "
                  "undecodable map<string,string>, status string, error string")
_FRAME_ROWS = 4096


def file_reader(fmt: TextFormat) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A mapInPandas function: blocks of (path) → the records of each file (RECORDS_SCHEMA), streamed.
    A file that cannot be opened, or stops being readable, adds a `read_error` record."""
    def read_partition(blocks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for block in blocks:
            for path in block["path"].tolist():
                for chunk in _chunks(_file_records(path, fmt), _FRAME_ROWS):
                    yield _frame(path, chunk)
    return read_partition


def _file_records(path: str, fmt: TextFormat) -> Iterator[Record]:
    last = 0
    try:
        with files.open_stream(path) as stream:
            for record in records(marked_lines(stream, fmt.encoding), fmt):
                last = record.line
                yield record
    except RowError as err:
        yield Record(0, None, {}, {}, err.status, err.message)
    except (OSError, ValueError) as exc:  # e.g. a truncated .gz: the records read so far stay
        yield Record(last + 1, None, {}, {}, READ_ERROR, f"cannot read {path} past line {last}: {exc}")


def _chunks(items: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _frame(path: str, chunk: list[Record]) -> pd.DataFrame:
    return pd.DataFrame({"file": path, "line": [r.line for r in chunk], "where": [r.where for r in chunk],
                         "fields": [r.fields for r in chunk], "undecodable": [r.undecodable for r in chunk],
                         "status": [r.status for r in chunk], "error": [r.error for r in chunk]})
