"""User inputs read as DataFrames: their format told, Parquet and tables by Spark, CSV and JSON Lines by our
own parser on the workers; with each row's origin and the problem, if any, that keeps it from being used as
it is."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from jobs.core.config import TABLE_PREFIX, ConfigError, key
from jobs.core.paths import has_glob, is_remote, is_table, local_path, reader_paths, table_name
from jobs.tables import listing
from udfs import decoding, files, record_files
from udfs.records import TextFormat
from udfs.status import DECODE_ERROR

log = logging.getLogger(__name__)

# struct(file, line, where, status, error): the file (or table) a row came from, its 1-based line (row in
# Parquet) when known, the same in words ("line 4 of file:/x.csv"), and why it cannot be used as it is
# (`malformed`, `decode_error`, `read_error`; null when it can)
INPUT = "_input"
_SUFFIXES = {"csv": ("csv", "tsv"), "jsonl": ("jsonl", "json", "ndjson")}
_COMPRESSED = ("", ".gz", ".bz2", ".zst", ".lz4", ".br")


@dataclass(frozen=True)
class ReadOptions:
    """How to read a tabular input."""

    encoding: str = "utf-8"        # CSV / JSON Lines files (Parquet strings are UTF-8 by definition)
    delimiter: str = ","           # CSV
    checked: tuple[str, ...] = ()  # text columns that must decode, else the row is a `decode_error`
    key: str = "input"             # the config key that named the input, for messages


def encoding_key(what: str) -> object:
    """The `encoding` config key of a job that reads `what`."""
    return key("utf-8", f"encoding of {what}: any Python codec name (utf-8, utf-16, cp1252, latin-1, ...); "
               "a BOM is dropped; a row with bytes that are not valid in it is a decode_error")


def delimiter_key() -> object:
    """The `delimiter` config key of a job that reads CSV."""
    return key(",", "CSV field delimiter: one character; `\\t` or `tab` for a tab")


def csv_delimiter(value: str) -> str:
    """The one-character delimiter `value` names (`\\t` and `tab` name a tab); ValueError otherwise."""
    char = "\t" if value in ("\\t", "tab") else value
    if len(char) != 1 or char in "\"\r\n":
        raise ValueError(f"{value!r} is not a delimiter: give one character other than a quote or a line "
                         "break, or \\t / tab for a tab")
    return char


def check_text_keys(encoding: str, delimiter: str = ",") -> None:
    """ConfigError naming `encoding` or `delimiter` when the value is not usable."""
    try:
        decoding.check_encoding(encoding)
    except ValueError as exc:
        raise ConfigError(f"key 'encoding': {exc}") from None
    try:
        csv_delimiter(delimiter)
    except ValueError as exc:
        raise ConfigError(f"key 'delimiter': {exc}") from None


def detect_format(location: str, declared: str) -> str:
    """The input's format: as declared, or from its suffix, or (local paths) from the files it names:
    their names, else their content (`listing.local_format`)."""
    if declared != "auto":
        return declared
    if is_table(location):
        return "table"
    lower = location.lower().rstrip("/")
    for suffix, fmt in listing.TABULAR_SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    if is_remote(location) and has_glob(location):  # `s3://b/photos/*.jpg`: the pattern's suffix tells
        if files.is_image_name(lower):
            return "images"
        if lower.endswith(listing.TEXT_SUFFIXES):
            return "text-dir"
    found = None if is_remote(location) else listing.local_format(location)
    if found:
        return found
    raise ConfigError(f"key 'input_format': cannot tell the format of {location!r}; set it to one of "
                      "images, parquet, csv, jsonl, text-dir, table")


def read(spark, location: str, fmt: str, opts: ReadOptions):
    """The input's columns (strings valid UTF-8: Arrow fails a task on an invalid one) and, for CSV and
    JSON Lines always and for Parquet and tables when `opts.checked` names columns, the INPUT struct.

    CSV (with a header) and JSON Lines: every record is a row, all columns strings; udfs.csv_records
    and udfs.json_records say what becomes `malformed`. A .json file of pretty-printed JSON (an array of
    objects) is read as its elements. A checked column whose bytes are not valid in `opts.encoding` (Parquet strings: UTF-8)
    makes the row a `decode_error` naming the column and the bytes. ConfigError when there is nothing to
    read. Problems are also counted and the first logged as a warning.
    """
    if fmt in ("parquet", "table"):
        df = spark.table(table_name(location)) if fmt == "table" else \
            spark.read.parquet(*reader_paths(spark, location))  # as named: an existing path is not a glob
        return _checked_columns(df, location, opts)
    if fmt not in _SUFFIXES:
        raise ConfigError(f"key 'input_format': {fmt!r} is not a tabular format")
    return _text_records(spark, location, fmt, opts)


def _checked_columns(df, location: str, opts: ReadOptions):
    from pyspark.sql import functions as F

    strings = [f.name for f in df.schema.fields if f.dataType.typeName() == "string"]
    valid = [F.make_valid_utf8(_column(c)).alias(c) if c in strings else _column(c) for c in df.columns]
    if not opts.checked:
        return df.select(*valid)
    file, line = _origin(df, location)
    where = F.concat(F.lit("row "), line.cast("string"), F.lit(" of "), file) if line is not None else file
    label = decoding.display("utf-8")
    binary = [f.name for f in df.schema.fields if f.dataType.typeName() == "binary"]
    problems = [F.when(~F.is_valid_utf8(_text(c, c in binary)),
                       F.concat(where, F.lit(f": column {c!r} is not valid {label}: "),
                                F.substring(F.make_valid_utf8(_text(c, c in binary)), 1, 80)))
                for c in opts.checked if c in strings or (c in binary and _utf8(opts))]
    error = F.coalesce(*problems) if problems else F.lit(None).cast("string")
    origin = F.struct(file.alias("file"), (line if line is not None else F.lit(None)).cast("long").alias("line"),
                      where.alias("where"), F.when(error.isNotNull(), F.lit(DECODE_ERROR)).alias("status"),
                      error.alias("error"))
    return df.select(*valid, origin.alias(INPUT))


def _text(name: str, binary: bool):
    """A column as a string, a binary one reinterpreted as UTF-8 bytes (unchecked: check it)."""
    return _column(name).cast("string") if binary else _column(name)


def _utf8(opts: ReadOptions) -> bool:
    return decoding.check_encoding(opts.encoding) == "utf-8"


def _origin(df, location: str) -> tuple:
    """(file, 1-based row or None) of each row of a Parquet file or table, from Spark's `_metadata`."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        meta = df.select("_metadata").schema["_metadata"].dataType
    except AnalysisException:  # not a file source: the table's name is all we know
        return F.lit(TABLE_PREFIX + table_name(location) if is_table(location)
                     else location), None
    row = F.col("_metadata.row_index") + 1 if "row_index" in meta.fieldNames() else None
    return F.col("_metadata.file_path"), row


def _text_records(spark, location: str, fmt: str, opts: ReadOptions):
    """CSV / JSON Lines: the files listed, parsed on the workers, columns found in one pass."""
    from pyspark.sql import functions as F

    local_dir = not is_remote(location) and os.path.isdir(local_path(location))
    extensions = tuple(e + c for e in _SUFFIXES[fmt] for c in _COMPRESSED) if local_dir else ()
    listed = listing.list_files(spark, location, extensions).items.select("path", "source")
    n_files = listed.count()
    if n_files == 0:
        raise ConfigError(f"key '{opts.key}': {location!r} holds no {', '.join(_SUFFIXES[fmt])} files")
    parsed = listed.repartition(max(1, min(n_files, spark.sparkContext.defaultParallelism))).mapInPandas(
        record_files.file_reader(TextFormat(fmt, opts.encoding, opts.delimiter)), record_files.RECORDS_SCHEMA)
    order, bad = F.struct("file", "line"), F.col("status").isNotNull()
    found = parsed.agg(
        F.min_by(F.map_keys("fields"), F.when(F.size("fields") > 0, order)).alias("first"),
        F.collect_set(F.map_keys("fields")).alias("all"), F.count("status").alias("bad"),
        F.min_by(F.concat_ws(" of ", "where", "file"), F.when(bad, order)).alias("at"),
        F.min_by("error", F.when(bad, order)).alias("error"),
        F.count(F.when(F.size("undecodable") > 0, 1)).alias("undecodable")).first()
    columns = list(found["first"] or [])
    columns += sorted({c for keys in found["all"] for c in keys} - set(columns))
    if not columns:
        what = f"nothing in it could be read ({found['at']}: {found['error']})" if found["bad"] else \
            "it holds no records"
        raise ConfigError(f"key '{opts.key}': {location!r}: {what}")
    if found["bad"]:
        log.warning("%s: %d records cannot be read as they are (kept as rows with a status), the first, "
                    "%s: %s", location, found["bad"], found["at"], found["error"])
    if found["undecodable"]:
        log.warning("%s: %d records hold bytes that are not valid %s (shown as U+FFFD; a row whose text "
                    "holds them is a decode_error)", location, found["undecodable"],
                    decoding.display(opts.encoding))
    where = F.concat_ws(" of ", "where", "file")
    problems = [F.when(F.col("undecodable")[c].isNotNull(),
                       F.concat(where, F.lit(f": column {c!r} is "), F.col("undecodable")[c]))
                for c in opts.checked if c in columns]
    error = F.coalesce(F.concat(where, F.lit(": "), F.col("error")), *problems)
    status = F.coalesce(F.col("status"), F.when(error.isNotNull(), F.lit(DECODE_ERROR)))
    origin = F.struct("file", "line", where.alias("where"), status.alias("status"), error.alias("error"))
    return parsed.select(*(F.col("fields")[c].alias(c) for c in columns), origin.alias(INPUT))


def _column(name: str):
    """The column called exactly `name` (which may hold a dot)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")
