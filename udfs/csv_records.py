"""CSV records: Python's csv module, strict, with a header line; a broken quote is a `malformed` record
and reading resumes at the next line, so the rows it ran over stay rows."""
from __future__ import annotations

import csv
from collections import deque
from typing import Iterable, Iterator

from udfs.decoding import has_marks, unmark
from udfs.records import Record, TextFormat, checked_value
from udfs.status import MALFORMED

# A field longer than this is an unclosed quote running on, not a text (the csv module's default limit
# is 131,072 characters; a long article fits in 16 M).
MAX_FIELD_CHARS = 16 * 2**20
csv.field_size_limit(MAX_FIELD_CHARS)


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
    values = row if len(row) == len(header) else (row + [None] * len(header))[:len(header)]
    record = Record(start, f"line {start}", dict(zip(header, values)))
    if has_marks(raw):  # rare: only then is each field looked at
        for name, value in record.fields.items():
            record.fields[name] = checked_value(record, name, value, fmt)
    if len(row) != len(header):
        record.status = MALFORMED
        record.error = (f"{len(row)} fields, the header has {len(header)}: "
                        f"{unmark(raw.rstrip(chr(13) + chr(10)))[:200]!r}")
    return record
