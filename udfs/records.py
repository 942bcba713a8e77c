"""A record of a CSV or JSON Lines file: where it starts, its fields, and what went wrong reading it.

Python's `csv` and `json` parse these files (udfs.csv_records, udfs.json_records), not Spark's readers:
those turn undecodable bytes into U+FFFD without a word and let an unclosed quote swallow every following
line into one field. Here every record is a row; one that cannot be read as it is says so (`malformed`),
and a field holding bytes that are not in the declared encoding is listed in `undecodable`, so the
caller can make the row a `decode_error` when the field is one it uses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from udfs.decoding import undecodable, unmark


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


def checked_value(record: Record, name: str, value: str | None, fmt: TextFormat) -> str | None:
    """`value` made valid Unicode; its undecodable bytes, if any, noted on the record."""
    if value is None:
        return None
    problem = undecodable(value, fmt.encoding)
    if problem is None:
        return value
    record.undecodable[name] = problem
    return unmark(value)
