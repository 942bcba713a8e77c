"""Text items: the (id, source, text | path, status, error) rows that embed-texts and setfit scoring embed,
cut from a tabular input or listed from a folder of .txt files."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from jobs.tables import inputs
from jobs.tables import listing
from jobs.tables import publish as tables
from jobs.core.config import ConfigError
from udfs import decoding
from udfs.status import DECODE_ERROR


@dataclass(frozen=True)
class TextColumns:
    """Which columns hold the id and the text, and how the input's files are encoded."""

    id_column: str = "id"
    text_column: str = "text"
    template: list[tuple[str, str]] = field(default_factory=list)  # (literal, column) pieces; [] = text_column
    encoding: str = "utf-8"
    delimiter: str = ","
    key: str = "input"  # the config key naming the input, for messages

    @property
    def text_columns(self) -> list[str]:
        return [name for _, name in self.template if name] or [self.text_column]


def read_items(spark, location: str, fmt: str, cols: TextColumns):
    """DataFrame(id, source, text | path, status, error, _order, _where) of the texts at `location`.

    A folder of .txt files: one item per file, its bytes decoded by the worker. A table or file of rows:
    `text` is the text column (kept as bytes when it is binary: the worker decodes it with `encoding`)
    or the template filled in; `status`/`error` hold what kept a row from being read (malformed,
    decode_error in the id or a text column); `_order`/`_where` place the row for `ids.mark`.
    """
    from pyspark.sql import functions as F

    if fmt == "text-dir":
        return listing.list_files(spark, location).items
    df = tables.read_input(spark, location, fmt, inputs.ReadOptions(
        cols.encoding, inputs.csv_delimiter(cols.delimiter), (cols.id_column, *cols.text_columns), cols.key))
    needed = {"id_column": cols.id_column}
    if cols.template:
        needed.update({f"text_template ({{{name}}})": name for name in cols.text_columns})
    else:
        needed["text_column"] = cols.text_column
    tables.require_columns(df, needed, location)
    origin = F.col(inputs.INPUT)
    item_id = F.make_valid_utf8(df[cols.id_column].cast("string"))
    base = F.lit(location) if fmt == "table" else origin["file"]  # `table:db.name#id`, `file#id`
    return df.select(item_id.alias("id"), F.concat_ws("#", base, item_id).alias("source"),
                     text_expression(df, cols).alias("text"), origin["status"].alias("status"),
                     origin["error"].alias("error"), F.struct(origin["file"], origin["line"]).alias("_order"),
                     origin["where"].alias("_where"))


def text_expression(df, cols: TextColumns):
    """The text column (binary stays binary), or the template filled from columns: null if all of them
    are, empty if all are null or empty (a CSV's empty field), so the row is `empty`, not the literals."""
    from pyspark.sql import functions as F

    kinds = {f.name: f.dataType.typeName() for f in df.schema.fields}
    if not cols.template:
        column = F.col(cols.text_column)
        return column if kinds[cols.text_column] == "binary" else column.cast("string")
    parts, columns = [], []
    for literal, name in cols.template:
        if literal:
            parts.append(F.lit(literal))
        if name:
            if kinds[name] == "binary" and decoding.check_encoding(cols.encoding) != "utf-8":
                raise ConfigError(f"key 'text_template': column {name!r} is binary; a template reads binary "
                                  f"columns as UTF-8 only, and encoding is {cols.encoding!r}")
            columns.append(F.make_valid_utf8(F.col(name).cast("string")))
            parts.append(F.coalesce(columns[-1], F.lit("")))
    all_null, all_empty = columns[0].isNull(), F.coalesce(columns[0], F.lit("")) == ""
    for column in columns[1:]:
        all_null, all_empty = all_null & column.isNull(), all_empty & (F.coalesce(column, F.lit("")) == "")
    return F.when(all_null, F.lit(None).cast("string")).when(all_empty, F.lit("")).otherwise(F.concat(*parts))


QUERY_LINES_SCHEMA = ("id string, source string, text string, status string, error string, _order long, "
                      "_where string")


def query_lines(path: str, encoding: str) -> list[tuple]:
    """Rows (QUERY_LINES_SCHEMA) of a local file of one query per line, read on the driver: the id and
    the text are the line (without its line break; blank lines are not queries). A line with bytes not
    valid in `encoding` is a `decode_error` row, its id the line with U+FFFD for them. ConfigError when
    the file starts with a UTF-16 BOM read as something else, or holds no query."""
    with open(path, "rb") as fh:
        data = fh.read()  # a query file is small: the driver holds it
    hint = decoding.utf16_hint(data, encoding)
    if hint:
        raise ConfigError(f"key 'query_texts': {path!r} is not {decoding.display(encoding)}{hint}")
    rows = []
    for n, line in enumerate(decoding.marked_lines(io.BytesIO(data), encoding), start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        where = f"line {n} of {path}"
        problem = decoding.undecodable(text, encoding)
        if problem is None:
            rows.append((text, path, text, None, None, n, where))
        else:
            rows.append((decoding.unmark(text), path, None, DECODE_ERROR, f"{where}: {problem}", n, where))
    if not rows:
        raise ConfigError(f"key 'query_texts': {path!r} has no non-empty line")
    return rows
