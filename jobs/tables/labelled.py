"""Labelled entries (gold labels, labelled examples): refused with the rows named when unreadable, empty
or contradictory; counted once, and said so, when repeated — never a traceback, never a skewed metric."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from index import store
from jobs.core.config import ConfigError
from jobs.core.paths import is_table
from jobs.tables import contracts, inputs
from udfs import decoding
from udfs.status import MALFORMED, RowError

log = logging.getLogger(__name__)
PAIRS_SCHEMA = ("key string, label string, _input struct<file: string, line: bigint, where: string, "
                "status: string, error: string>")
_SHOWN = 5


@dataclass(frozen=True)
class GoldOptions:
    """How a gold labels file is read."""

    label_column: str = "label"   # of a tabular file (JSON files name labels by their shape)
    encoding: str = "utf-8"
    delimiter: str = ","          # CSV
    key: str = "gold"             # the config key naming the file, for messages


def read_gold(spark, location: str, opts: GoldOptions):
    """(DataFrame(id, label) of the true labels, rows dropped as repeats) from a JSON file ({id: label},
    [{id: label}, ...] or [{"id": ..., label_column: ...}, ...]) or a table / Parquet / CSV / JSON Lines
    with `id` and `label_column`. ConfigError as in `checked_pairs`: rows that cannot be read, empty ids
    or labels, an id with two labels; a repeated (id, label) counts once."""
    if location.endswith(".json") and not is_table(location):
        rows = json_pairs(location, opts.encoding, opts.label_column, opts.key)
        df = spark.createDataFrame(rows, PAIRS_SCHEMA).withColumnRenamed("key", "id").withColumnRenamed(
            "label", opts.label_column)
    else:
        read = inputs.ReadOptions(opts.encoding, inputs.csv_delimiter(opts.delimiter), ("id", opts.label_column),
                                  opts.key)
        df = inputs.read(spark, location, inputs.detect_format(location, "auto"), read)
    return gold_pairs(df, opts, location)


def gold_pairs(df, opts: GoldOptions, location: str):
    """(DataFrame(id, label), rows dropped as repeats) of a DataFrame with `id` and `opts.label_column`
    columns, checked as `read_gold` says."""
    from pyspark.sql import functions as F

    contracts.require_columns(df, {f"{opts.key} (id)": "id", "label_column": opts.label_column}, location)
    origin = [inputs.INPUT] if inputs.INPUT in df.columns else []
    df = df.select("id", F.col(opts.label_column).alias("label"), *origin)
    return checked_pairs(df, "id", "gold label", opts.key, location)


def checked_pairs(df, key: str, what: str, key_name: str, location: str, repeats: bool = True):
    """(DataFrame(key, label) of distinct pairs, rows dropped as repeats) of `df` (`key`, `label`
    [, INPUT] columns). ConfigError naming up to 5 rows when a row could not be read, its key or label is
    null, empty or blank, or one key has different labels; also, when `repeats` is False, when a key is
    listed twice. A pair listed more than once is kept once, with a warning naming the keys."""
    from pyspark.sql import functions as F

    origin = F.col(inputs.INPUT) if inputs.INPUT in df.columns else F.struct(
        F.lit(location).alias("where"), F.lit(None).cast("string").alias("status"),
        F.lit(None).cast("string").alias("error"))
    rows = df.select(F.col(key).cast("string").alias("key"), F.col("label").cast("string").alias("label"),
                     origin["where"].alias("where"), origin["status"].alias("status"),
                     origin["error"].alias("error"))
    shown = F.concat(F.lit(f"{key} '"), F.col("key"), F.lit("'"))
    problem = (F.when(F.col("status").isNotNull(), F.col("error"))
               .when(_blank("key"), F.concat(F.lit(f"no {key} at "), F.col("where")))
               .when(_blank("label"), F.concat(shown, F.lit(" has no label at "), F.col("where"))))
    bad = rows.select(problem.alias("problem")).filter(F.col("problem").isNotNull())
    found = bad.agg(F.count("*").alias("n"),
                    F.slice(F.sort_array(F.collect_list("problem")), 1, _SHOWN).alias("first")).first()
    if found["n"]:
        raise ConfigError(f"key '{key_name}': {found['n']} {what} row(s) of {location!r} cannot be used: "
                          + "; ".join(found["first"]) + ("; ..." if found["n"] > _SHOWN else ""))
    groups = rows.groupBy("key").agg(F.count("*").alias("n"), F.sort_array(F.collect_set("label")).alias("labels"))
    many = groups.filter("n > 1").agg(
        F.count(F.when(F.size("labels") > 1, 1)).alias("conflicts"), F.sum(F.col("n") - 1).alias("repeats"),
        F.slice(F.sort_array(F.collect_list(F.when(F.size("labels") > 1, F.struct("key", "labels")))), 1,
                _SHOWN).alias("conflicting"),
        F.slice(F.sort_array(F.collect_list("key")), 1, _SHOWN).alias("repeated")).first()
    if many["conflicts"]:
        listed = "; ".join(f"{key} {r['key']!r} has labels {', '.join(map(repr, r['labels']))}"
                           for r in many["conflicting"])
        raise ConfigError(f"key '{key_name}': {many['conflicts']} {key}(s) of {location!r} have more than "
                          f"one {what}: {listed}; keep one label per {key}")
    dropped = int(many["repeats"] or 0)
    if dropped and not repeats:
        raise ConfigError(f"key '{key_name}': {key}s listed more than once in {location!r}: "
                          f"{', '.join(map(repr, many['repeated']))}; list each once")
    if dropped:
        log.warning("%s: %d %s row(s) repeat an earlier (%s, label) pair and are counted once; the first "
                    "%s: %s", location, dropped, what, key, key, ", ".join(map(repr, many["repeated"])))
    return rows.select("key", "label").distinct().withColumnRenamed("key", key), dropped


def _blank(name: str):
    from pyspark.sql import functions as F

    return F.col(name).isNull() | F.col(name).rlike(r"(?U)^\s*$")


class _Pairs(list):
    """A JSON object as its (key, value) pairs, repeated keys kept (json.loads would keep the last)."""


def json_pairs(path: str, encoding: str, label_column: str, key_name: str) -> list[tuple]:
    """Rows (PAIRS_SCHEMA) of a JSON labels file: `{id: label, ...}`, `[{id: label}, ...]` or
    `[{"id": ..., label_column: ...}, ...]`. ConfigError when it cannot be decoded or is not JSON of
    one of those shapes; a label that is an object or an array is a `malformed` row."""
    try:
        text = decoding.decode(store.read_bytes(path), encoding)
        document = json.loads(text, object_pairs_hook=_Pairs)
    except RowError as err:
        raise ConfigError(f"key '{key_name}': {path!r} is {err.message}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"key '{key_name}': {path!r} is not JSON: {exc}") from None
    if isinstance(document, _Pairs):
        return [_pair(k, v, f"key {n} of {path}", n) for n, (k, v) in enumerate(document, start=1)]
    if isinstance(document, list) and all(isinstance(entry, _Pairs) for entry in document):
        rows = []
        for n, entry in enumerate(document, start=1):
            fields = dict(entry)
            if len(entry) == 2 and {"id", label_column} == set(fields):
                entry = _Pairs([(fields["id"], fields[label_column])])
            rows += [_pair(k, v, f"entry {n} of {path}", n) for k, v in entry]
        return rows
    found = "an array of other values" if isinstance(document, list) else f"a JSON {type(document).__name__}"
    raise ConfigError(f"key '{key_name}': {path!r} must hold {{id: label, ...}} or [{{id: label}}, ...]; "
                      f"it holds {found}")


def _pair(key: object, value: object, where: str, n: int) -> tuple:
    problem = None
    if isinstance(value, (list, dict)):
        problem = f"{where}: the label of {key!r} is {'an array' if type(value) is list else 'an object'}"
    label = value if isinstance(value, str) or value is None or problem else json.dumps(value)
    ident = key if isinstance(key, str) or key is None else json.dumps(key)
    return (ident, None if problem else label,
            (None, n, where, MALFORMED if problem else None, problem))
