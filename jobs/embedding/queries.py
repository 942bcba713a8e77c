"""Queries given as files or lines of text, embedded with an index's model: the rows search looks up."""
from __future__ import annotations

import io
from typing import Callable

from index import store
from jobs.core.config import ConfigError
from jobs.embedding import steps
from jobs.embedding.steps import ItemColumns
from jobs.tables import listing
from udfs import cnn, decoding, texts
from udfs.status import DECODE_ERROR


def raw_queries(spark, images: str, texts_file: str, model: str, encoding: str = "utf-8"):
    """Query files or lines of text embedded with `model` (an index's): rows of the embeddings table.
    Text lines are decoded with `encoding`; a line that cannot be is a `decode_error` row, a repeated
    line a `duplicate_id` row (the id of a text query is its text)."""
    if images:
        spec = cnn.spec_from_label(model)
        _check_model(lambda: cnn.check_spec(spec), model, "embed-images")
        items = listing.list_files(spark, images).items
        return steps.embed_images(items, columns=ItemColumns(source="source", path="path"),
                                  options=steps.ImageOptions(spec))
    spec = texts.spec_from_label(model)
    _check_model(lambda: texts.check_spec(spec), model, "embed-texts")
    items = spark.createDataFrame(query_lines(texts_file, encoding), QUERY_LINES_SCHEMA)
    return steps.embed_texts(items, columns=ItemColumns(source="source", text="text"),
                             options=steps.TextOptions(spec))


def _check_model(check: Callable, model: str, job: str) -> None:
    try:
        check()
    except ValueError:
        raise ConfigError(f"the index's model {model!r} cannot be rebuilt from its name; embed the "
                          f"queries with `sparkamp {job}` and pass them with --queries") from None


QUERY_LINES_SCHEMA = ("id string, source string, text string, status string, error string, _order long, "
                      "_where string")


def query_lines(path: str, encoding: str) -> list[tuple]:
    """Rows (QUERY_LINES_SCHEMA) of a file of one query per line (any filesystem), read on the driver: the id and
    the text are the line (without its line break; blank lines are not queries). A line with bytes not
    valid in `encoding` is a `decode_error` row, its id the line with U+FFFD for them. ConfigError when
    the file starts with a UTF-16 BOM read as something else, or holds no query."""
    data = store.read_bytes(path)  # a query file is small: the driver holds it
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
