"""The table contracts (DESIGN.md): each table's columns and types, and one reader per table with every check.

Every job and public function that reads one of these tables reads it here: `read_table` knows a
metastore table (`table:db.name`) from a Parquet path; the readers check the columns a table needs and
add the contract's other columns as nulls, so a table made elsewhere reads the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.config import ConfigError
from jobs.core.paths import is_table
from jobs.tables import ids, inputs, samples, vectors

OK = "ok"


@dataclass(frozen=True)
class Contract:
    """One table: its Spark schema (DDL, in column order) and the columns a reader cannot do without."""

    name: str
    schema: str
    required: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(part.split()[0] for part in self.schema.split(", "))

    def types(self) -> dict[str, str]:
        return dict(part.split(" ", 1) for part in self.schema.split(", "))


EMBEDDINGS = Contract("embeddings", "id string, source string, content_hash string, model string, "
                      "embedding array<float>, status string, error string", ("id", "embedding", "status", "model"))
# a query without neighbours is one row with rank, neighbor_id and score null, and its status and reason
NEIGHBOURS = Contract("neighbours", "query_id string, rank int, neighbor_id string, score float, status string, "
                      "error string", ("query_id", "rank", "neighbor_id", "score"))
LABELS = Contract("labels", "id string, label string, score double, rank int, method string, status string, "
                  "error string", ("id", "label", "rank"))
METRICS = Contract("metrics", "job string, metric string, k int, class string, predicted string, value double, "
                   "queries long", ("metric", "class", "predicted", "value", "queries"))
DUPLICATE_GROUPS = Contract("duplicate groups", "group_id string, id string, score_to_representative float",
                            ("group_id", "id", "score_to_representative"))
DUPLICATE_PAIRS = Contract("duplicate pairs", "id_a string, id_b string, score float, kind string",
                           ("id_a", "id_b", "score", "kind"))
UNIQUENESS = Contract("uniqueness", "id string, nearest_id string, nearest_score float, rank int, status string, "
                      "error string", ("id", "nearest_id", "nearest_score", "rank"))


def read_table(spark, location: str):
    """The DataFrame at `location`: a metastore table (`table:db.name`) or a Parquet path (read as named:
    an existing path is never a glob), its strings made valid UTF-8 (Arrow fails a task on one that is not)."""
    return inputs.read(spark, location, "table" if is_table(location) else "parquet", inputs.ReadOptions())


def require_columns(df, needed: dict[str, str], location: str) -> None:
    """Each `key: column` must exist in `df`; else a ConfigError naming the key and the columns."""
    for key_name, column in needed.items():
        if column not in df.columns:
            raise ConfigError(f"key '{key_name}': column {column!r} is not in {location!r}; its columns "
                              f"are {', '.join(c for c in df.columns if c != inputs.INPUT)}")


def conform(df, contract: Contract, key: str, location: str):
    """`df` as `contract`'s columns, in order, of its types (an `embedding` of doubles stays doubles): the
    required ones checked (ConfigError naming `key`), the others added as nulls when missing; other
    columns dropped. A table written elsewhere (an all-null column has no type in Parquet) reads the same."""
    from pyspark.sql import functions as F

    require_columns(df, {f"{key} ({c})": c for c in contract.required}, location)
    return df.select(*[(F.col(c) if c == "embedding" else F.col(c).cast(kind)).alias(c) if c in df.columns
                       else F.lit(None).cast(kind).alias(c) for c, kind in contract.types().items()])


def read(spark, location: str, contract: Contract, key: str):
    """The table at `location` conformed to `contract` (neighbours, metrics, duplicate groups, uniqueness)."""
    return conform(read_table(spark, location), contract, key, location)


def read_labels(spark, location: str, key: str = "labels_table"):
    """A labels table whose first-ranked rows have unique, present ids (ConfigError listing them)."""
    from pyspark.sql import functions as F

    labels = read(spark, location, LABELS, key)
    first = labels.filter(F.col("rank") == 1)
    stats = first.agg(F.count("*").alias("n"), *ids.id_stats()).first()
    ids.refuse_repeated(first, stats, stats["n"], location, key)
    return labels


# ---- the embeddings table ------------------------------------------------------------------------

@dataclass(frozen=True)
class EmbeddingsCheck:
    """What a reader of an embeddings table requires of it, beyond the columns and unique ok ids."""

    key: str = "embeddings"  # the config key (or argument) naming the table, for messages
    purpose: str = ""        # e.g. "to index": a table without ok rows is refused ("nothing to index")
    model: str = ""          # an index's model: every ok row must have it; "" = the ok rows share one
    dim: int = 0             # an index's dim: some ok row must have it; 0 = the ok rows share one dim
    hint: str = ""           # what to do about ok rows of several models
    sample: samples.Sampling | None = None  # seeded samples of the usable ok rows to take in the same pass


@dataclass(frozen=True)
class Embeddings:
    """An embeddings table that passed its checks."""

    rows: Any                 # DataFrame: every row, the contract's columns
    statuses: dict[str, int]  # rows by status
    dim: int                  # of the ok rows (the index's, when checked against one); 0 = no ok row
    model: str                # of the ok rows; "" = no ok row
    location: str             # where it came from, for messages
    hashes_apart: bool = False  # the ok rows' id hashes (ids.id_hash, an index's keys) are distinct: counted
    sample: samples.Samples | None = None  # the samples the check asked for, taken in the read pass

    @property
    def n_rows(self) -> int:
        return sum(self.statuses.values())

    @property
    def n_ok(self) -> int:
        return self.statuses.get(OK, 0)

    @property
    def not_ok(self) -> dict[str, int]:
        return {status: n for status, n in self.statuses.items() if status != OK}

    @property
    def ok(self):
        """DataFrame of the `ok` rows."""
        from pyspark.sql import functions as F

        return self.rows.filter(F.col("status") == OK)

    def usable(self, metric: str, where: str) -> tuple[Any, dict[str, int]]:
        """(the ok rows whose vectors can be indexed or searched with `metric`, {status: count} of the ok rows
        left out of `where`): see `vectors.usable_rows`; ConfigError when none can."""
        return vectors.usable_rows(self.ok, self.n_ok, self.dim, metric, where)

    def searchable(self, metric: str):
        """Every row (id, embedding, status, error): an ok row whose vector cannot be searched gets the
        status and reason `vectors.vector_check` gives it; the other rows keep theirs."""
        from pyspark.sql import functions as F

        status, error = vectors.vector_check(self.dim, metric)
        ok = F.col("status") == OK
        return self.rows.select("id", "embedding", F.when(ok, status).otherwise(F.col("status")).alias("status"),
                                F.when(ok, error).otherwise(F.col("error")).alias("error"))


def read_embeddings(spark, location: str, check: EmbeddingsCheck = EmbeddingsCheck()) -> Embeddings:
    """The embeddings table at `location`, checked (`check_embeddings`, its columns read in two passes)."""
    return check_embeddings(read_table(spark, location), check, location, stored=True)


def check_embeddings(df, check: EmbeddingsCheck, location: str, stored: bool = False) -> Embeddings:
    """An embeddings DataFrame checked in one pass over it, or with `stored` (`df` is a read of stored files
    or a table, as read_table gives it: a pass that reads only some columns reads only those) in two: the
    vectors' lengths (and the samples), then the ids and models, each reading only its own columns. That
    is faster than one pass: the ids' distinct count makes Spark expand every row, vectors included, in two
    (1M 384-d rows on local[2]: 9.5-10.8 s in one pass, 4.3 s in two). ConfigError (naming `check.key`)
    when: a required column is missing; `embedding` is not an array of floats; ok rows repeat an id or lack
    one; the ok rows are of several models (or not all of `check.model`); of several dims (or, with
    `check.dim`, none has it); there is no ok row and `check.purpose` says what it was for."""
    from pyspark.sql import functions as F

    rows = conform(df, EMBEDDINGS, check.key, location)
    kind = rows.schema["embedding"].dataType.simpleString()
    if kind not in ("array<float>", "array<double>"):
        raise ConfigError(f"key '{check.key}': column embedding is {kind}, not an array of floats")
    size = F.size("embedding")
    lengths = [F.count("*").alias("n"), F.min(size).alias("lo"), F.max(size).alias("hi"),
               F.count(F.when(size == check.dim, 1)).alias("fit")]
    keys = [] if stored else [F.collect_set("model").alias("models"), *ids.id_stats()]
    groups = rows.groupBy("status").agg(*lengths, *keys, *_sampled(check.sample))
    if check.sample:  # the sampled rows reach the driver as Arrow blocks
        groups, sampled = samples.split(groups, check.sample, OK)
    else:
        groups, sampled = [g.asDict() for g in groups.collect()], None
    if stored:  # the second pass: ids and models, no vector read
        groups = _with_keys(rows, groups)
    statuses = {str(g["status"]) if g["status"] is not None else "null": int(g["n"]) for g in groups}
    ok = next((g for g in groups if g["status"] == OK), None)
    if ok is None:
        if check.purpose:
            raise ConfigError(f"key '{check.key}': no rows with status ok in {location!r}; nothing {check.purpose}")
        return Embeddings(rows, statuses, check.dim, check.model, location)
    ids.refuse_repeated(rows.filter(F.col("status") == OK), ok, ok["n"], location, check.key)
    models = sorted(ok["models"])
    if check.model and set(models) - {check.model}:
        raise ConfigError(f"key '{check.key}': embedded with {sorted(set(models) - {check.model})}, but the "
                          f"index was built from {check.model!r} embeddings; embed them with {check.model!r}")
    if not check.model and len(models) != 1:
        raise ConfigError(f"key '{check.key}': rows of several models {models} in {location!r}; " + check.hint)
    if check.dim and not ok["fit"]:
        raise ConfigError(f"key '{check.key}': no ok row has {check.dim} values; the index is {check.dim}-d")
    if not check.dim and ok["lo"] != ok["hi"]:
        raise ConfigError(f"key '{check.key}': embeddings of {ok['lo']} and {ok['hi']} dims in {location!r}")
    return Embeddings(rows, statuses, check.dim or int(ok["lo"]), check.model or models[0], location,
                      ids.hashes_apart(ok, ok["n"]), sampled)


def _with_keys(rows, groups: list[dict]) -> list[dict]:
    """`groups` (check_embeddings' rows by status) with each group's ids.id_stats() and the ok rows' models,
    from a pass that reads only the id, model and status columns. The models are compared with one ok row's
    and gathered (collect_set) only when some differ: a collect_set beside the ids' distinct count is kept
    for every id hash, which made that pass 2.9 s instead of 1.4 s at 1M rows."""
    from pyspark.sql import functions as F

    ok = rows.filter(F.col("status") == OK)
    first = ok.select("model").first()
    model = first["model"] if first else None
    other = F.count(F.when(~F.col("model").eqNullSafe(F.lit(model)), 1)).alias("_other_models")
    found = {g["status"]: g.asDict() for g in rows.groupBy("status").agg(other, *ids.id_stats()).collect()}
    if OK in found:  # collect_set leaves out nulls, as the one-pass check does
        same = not found[OK]["_other_models"]
        found[OK]["models"] = ([] if model is None else [model]) if same else ok.agg(F.collect_set("model")).first()[0]
    return [{**g, **found[g["status"]]} for g in groups]


def _sampled(sampling: samples.Sampling | None) -> list:
    """The aggregate column of the rows some sample keeps (faiss_id, embedding, key_0, ...: samples.cut's
    table), for check_embeddings' pass; none without `sampling`."""
    from pyspark.sql import functions as F

    if sampling is None:
        return []
    faiss_id = ids.id_hash()
    keys = [samples.key(faiss_id, seed).alias(f"key_{i}") for i, seed in enumerate(sampling.seeds)]
    picked = samples.kept([samples.key(faiss_id, seed) for seed in sampling.seeds], sampling.thresholds())
    row = F.struct(faiss_id.alias("faiss_id"), F.col("embedding"), *keys)
    return [F.collect_list(F.when((F.col("status") == OK) & picked, row)).alias("_sampled")]
