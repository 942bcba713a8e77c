"""Text files as records on the workers: a mapInPandas shell that opens each file, decodes it and parses
it as CSV or JSON Lines, streaming frames of records."""
from __future__ import annotations

import codecs
import itertools
from typing import Callable, Iterable, Iterator

import pandas as pd

from udfs import files
from udfs.csv_records import csv_records
from udfs.decoding import display, marked_lines, utf16_hint
from udfs.json_records import jsonl_records
from udfs.records import Record, TextFormat
from udfs.status import DECODE_ERROR, READ_ERROR, RowError

_UTF16_BOMS_MARKED = ("\udcff\udcfe", "\udcfe\udcff")  # FF FE / FE FF read as UTF-8: marked bytes


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


RECORDS_SCHEMA = ("file string, line long, where string, fields map<string,string>, "
                  "undecodable map<string,string>, status string, error string")
_FRAME_ROWS = 4096


def file_reader(fmt: TextFormat) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A mapInPandas function: blocks of (path[, source]) → the records of each file (RECORDS_SCHEMA),
    streamed; `file` is the listed `source` (the name as the user sees it) where given, else `path`.
    A file that cannot be opened, or stops being readable, adds a `read_error` record."""
    def read_partition(blocks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for block in blocks:
            paths = block["path"].tolist()
            names = block["source"].tolist() if "source" in block else paths
            for path, name in zip(paths, names):
                for chunk in _chunks(_file_records(path, name, fmt), _FRAME_ROWS):
                    yield _frame(name, chunk)
    return read_partition


def _file_records(path: str, name: str, fmt: TextFormat) -> Iterator[Record]:
    last = 0
    try:
        with files.open_stream(path) as stream:
            for record in records(marked_lines(stream, fmt.encoding), fmt):
                last = record.line
                yield record
    except RowError as err:
        yield Record(0, None, {}, {}, err.status, err.message)
    except (OSError, ValueError) as exc:  # e.g. a truncated .gz: the records read so far stay
        yield Record(last + 1, None, {}, {}, READ_ERROR, f"cannot read {name} past line {last}: {exc}")


def _chunks(items: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _frame(path: str, chunk: list[Record]) -> pd.DataFrame:
    return pd.DataFrame({"file": path, "line": [r.line for r in chunk], "where": [r.where for r in chunk],
                         "fields": [r.fields for r in chunk], "undecodable": [r.undecodable for r in chunk],
                         "status": [r.status for r in chunk], "error": [r.error for r in chunk]})
