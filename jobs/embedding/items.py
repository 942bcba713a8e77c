"""Items to embed read from a job's input: (id, source, path | content | text[, status, error, _order,
_where]) rows listed from a folder or glob of files, or cut from a tabular input (images and texts)."""
from __future__ import annotations

from dataclasses import dataclass, field

from jobs.core.config import ConfigError
from jobs.tables import contracts, inputs, listing
from udfs import decoding


def listed_files(spark, stats: dict[str, float], location: str, extensions: tuple[str, ...] = ()):
    """DataFrame(id, source, path) of the files `location` names (`listing.list_files`); the entries
    skipped are counted into `stats` (`skipped_hidden`, `skipped_extension`)."""
    listed = listing.list_files(spark, location, extensions)
    stats.update(listed.stats())
    return listed.items


def image_items(spark, location: str, fmt: str, id_column: str, content_column: str):
    """DataFrame(id, source, content | path) of a table or file of images: the bytes in `content_column`,
    else files named in a `path` column. ConfigError naming the key of a missing column."""
    df = inputs.read(spark, location, fmt, inputs.ReadOptions())
    column = content_column if content_column in df.columns else "path"
    contracts.require_columns(df, {"id_column": id_column, "content_column": column}, location)
    return df.select(df[id_column].cast("string").alias("id"),
                     source_column(location, fmt, id_column).alias("source"),
                     df[column].alias("content" if column == content_column else "path"))


def source_column(location: str, fmt: str, id_col: str):
    """Where each tabular row came from: `file#id` or `table:db.name#id`."""
    from pyspark.sql import functions as F

    origin = F.lit(location) if fmt == "table" else F.input_file_name()
    return F.concat(origin, F.lit("#"), F.col(id_col).cast("string"))


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
    df = inputs.read(spark, location, fmt, inputs.ReadOptions(
        cols.encoding, inputs.csv_delimiter(cols.delimiter), (cols.id_column, *cols.text_columns), cols.key))
    needed = {"id_column": cols.id_column}
    if cols.template:
        needed.update({f"text_template ({{{name}}})": name for name in cols.text_columns})
    else:
        needed["text_column"] = cols.text_column
    contracts.require_columns(df, needed, location)
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
