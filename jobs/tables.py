"""Job inputs and outputs: reading files and tables, publishing Parquet paths or metastore tables atomically."""
from __future__ import annotations

import glob
import logging
import os
import re
import uuid
from urllib.parse import unquote, urlsplit
from typing import Callable

from jobs.config import TABLE_PREFIX, ConfigError
from jobs.paths import has_glob, is_remote, local_path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff")
TEXT_FORMATS = ("parquet", "csv", "jsonl", "text-dir", "table")
_SUFFIX_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                   ".json": "jsonl", ".ndjson": "jsonl"}


def is_table(location: str) -> bool:
    return location.startswith(TABLE_PREFIX)


def table_name(location: str) -> str:
    name = location[len(TABLE_PREFIX):]
    return name if "." in name else f"default.{name}"


def detect_format(location: str, declared: str) -> str:
    """The input's format: as declared, or from its suffix or (local dirs) the files inside."""
    if declared != "auto":
        return declared
    if is_table(location):
        return "table"
    lower = location.lower().rstrip("/")
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    if any(lower.endswith("." + ext) for ext in IMAGE_EXTENSIONS) and has_glob(location):
        return "images"
    if lower.endswith(".txt") and has_glob(location):
        return "text-dir"
    if not is_remote(location) and os.path.isdir(local_path(location)):
        counts: dict[str, int] = {}
        for _, _, files in os.walk(local_path(location)):
            for name in files:
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                fmt = ("images" if ext in IMAGE_EXTENSIONS else "text-dir" if ext == "txt"
                       else _SUFFIX_FORMATS.get("." + ext))
                if fmt:
                    counts[fmt] = counts.get(fmt, 0) + 1
        if counts:
            return max(counts, key=counts.get)
    raise ConfigError(f"key 'input_format': cannot tell the format of {location!r}; set it to one of "
                      "images, parquet, csv, jsonl, text-dir, table")


def _hadoop(spark, location: str) -> tuple:
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, fs.makeQualified(path)


def _root_of(location: str) -> str:
    """The directory that relative ids are taken from: the input, or a glob's fixed prefix."""
    if not has_glob(location):
        return location.rstrip("/")
    parts = location.split("/")
    fixed = [p for p in parts[:next(i for i, p in enumerate(parts) if has_glob(p))]]
    return "/".join(fixed) or "/"


def list_files(spark, location: str, extensions: tuple[str, ...]):
    """DataFrame(id, source, path) of the files under a directory or glob, recursively.

    Every entry is a row, even a broken link or a fifo (workers make those `read_error` rows), except
    hidden names (starting with `.`). Local inputs are walked here, not by Spark's file index, which
    also skips names starting with `_` (a camera's `_DSC0001.JPG`) and fails a glob on a `:` in a
    name; remote ones are listed by Spark's binaryFile source (in parallel for big trees), with those
    limits. `id` is the path relative to the input directory (or the glob's fixed prefix); `source`
    and `path` are the full path, as Spark writes it (`file:/a b.jpg`). Workers read the bytes.
    """
    if is_remote(location):
        uris = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                .load(location).inputFiles())
        paths = sorted(_hadoop_form(uri) for uri in uris)
        _, root = _hadoop(spark, _root_of(location))
        prefix = root.toString().rstrip("/") + "/"
    else:
        paths = sorted("file:" + p for p in _local_files(location))
        prefix = "file:" + local_path(_root_of(location)).rstrip("/") + "/"
    if extensions:
        wanted = tuple("." + ext.lower() for ext in extensions)
        paths = [p for p in paths if p.lower().endswith(wanted)]
    rows = [(p[len(prefix):] if p.startswith(prefix) else p, p, p) for p in paths]
    return spark.createDataFrame(rows, "id string, source string, path string")


def _local_files(location: str) -> set[str]:
    """Absolute paths of the entries that are not directories under a local dir or glob, recursively,
    through links to directories (once each); hidden (`.`) names aside."""
    pattern = local_path(location)
    tops = ({m for p in _expand_braces(pattern.replace("[^", "[!")) for m in glob.glob(p)}
            if has_glob(location) else {pattern})
    found = {top for top in tops if not os.path.isdir(top)}
    seen: set[tuple[int, int]] = set()
    for top in tops - found:
        for folder, dirs, names in os.walk(top, onerror=_unlistable, followlinks=True):
            inode = os.stat(folder)
            if (inode.st_dev, inode.st_ino) in seen:  # a link back up the tree
                dirs.clear()
                continue
            seen.add((inode.st_dev, inode.st_ino))
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.update(os.path.join(folder, n) for n in names if not n.startswith("."))
    return found


def _unlistable(error: OSError) -> None:
    """A folder that cannot be listed would drop its files unseen: the run stops instead."""
    raise ConfigError(f"key 'input': cannot list {error.filename}: {error.strerror or error}")


def _expand_braces(pattern: str) -> list[str]:
    """Hadoop's glob alternatives `{a,b}` (nestable) as separate patterns: Python's glob has none."""
    group = re.search(r"\{([^{}]*)\}", pattern)  # an innermost group
    if not group:
        return [pattern]
    return [expanded for alternative in group.group(1).split(",")
            for expanded in _expand_braces(pattern[:group.start()] + alternative + pattern[group.end():])]


def _hadoop_form(uri: str) -> str:
    """`file:///a%20b` (a URI) → `file:/a b` (Hadoop's Path form, as Spark shows paths)."""
    parts = urlsplit(uri)
    authority = f"//{parts.netloc}" if parts.netloc else ""
    return f"{parts.scheme}:{authority}{unquote(parts.path)}"


def read_input(spark, location: str, fmt: str, opts=None):
    """The DataFrame of a tabular input (parquet, csv, jsonl, table): see `jobs.inputs.read`; `opts` is
    an `inputs.ReadOptions` (default: UTF-8, `,`, no checked columns)."""
    from jobs import inputs

    return inputs.read(spark, location, fmt, opts or inputs.ReadOptions())


def require_columns(df, needed: dict[str, str], location: str) -> None:
    """Each `key: column` must exist in `df`; else a ConfigError naming the key and the columns."""
    for key_name, column in needed.items():
        if column not in df.columns:
            raise ConfigError(f"key '{key_name}': column {column!r} is not in {location!r}; its columns "
                              f"are {', '.join(c for c in df.columns if c != '_input')}")


def source_column(location: str, fmt: str, id_col: str):
    """Where each tabular row came from: `file#id` or `table:db.name#id`."""
    from pyspark.sql import functions as F

    origin = F.lit(location) if fmt == "table" else F.input_file_name()
    return F.concat(origin, F.lit("#"), F.col(id_col).cast("string"))


# ---- publishing ---------------------------------------------------------------------------

def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def prepare_output(spark, output: str, mode: str) -> None:
    """Before any work: honour `error-if-exists`, and finish a swap a killed run left half done."""
    if is_table(output):
        if mode == "error-if-exists" and spark.catalog.tableExists(table_name(output)):
            raise ConfigError(f"key 'output': table {output!r} exists and mode is error-if-exists; "
                              "use mode overwrite or append")
        return
    fs, path = _hadoop(spark, output)
    staging_dir, name = _staging_dir(path), path.getName()
    leftovers = fs.listStatus(staging_dir) if fs.exists(staging_dir) else []
    if not fs.exists(path):
        olds = sorted(s.getPath() for s in leftovers if s.getPath().getName().startswith(f"{name}-old-"))
        if olds:  # killed between the two renames of a swap: the previous output comes back
            log.warning("restoring %s from the interrupted publish %s", output, olds[-1])
            _rename(fs, olds[-1], path)
    for status in leftovers:  # staging left by a killed run (one writer per output is assumed)
        if status.getPath().getName().startswith(f"{name}-staging-"):
            fs.delete(status.getPath(), True)
    if mode == "error-if-exists" and fs.exists(path):
        raise ConfigError(f"key 'output': {output!r} exists and mode is error-if-exists; "
                          "use mode overwrite or append")


def _staging_dir(path):
    """Beside the output, hidden from readers (Spark skips `_` names): staged and swapped-out data."""
    return path.getParent().suffix("/_sparkamp_staging")


def publish(spark, df, output: str, mode: str, run_id: str, verify: Callable) -> None:
    """Writes `df` to a hidden staging place, calls `verify(staged_df)`, then publishes atomically.

    Readers see the previous complete output or the new complete one. For a path, overwrite swaps
    directories by rename; append moves the new part files in. For a table, overwrite points the
    table at a new location in one metastore call; append inserts through Spark's commit protocol.
    """
    staging = staging_location(spark, output, f"staging-{run_id}")
    fs, staging_path = _hadoop(spark, staging)
    try:
        df.write.mode("overwrite").parquet(staging)
        staged = spark.read.parquet(staging)
        verify(staged)
    except BaseException:
        fs.delete(staging_path, True)
        raise
    if is_table(output):
        _publish_table(spark, staged, output, mode, staging)
    else:
        _publish_path(spark, staging, output, mode, run_id)


def staging_location(spark, output: str, tag: str) -> str:
    """Where a run writes before publishing: hidden beside a path, a new version dir for a table."""
    if is_table(output):
        db, name = table_name(output).split(".")
        base = spark.conf.get("spark.sql.warehouse.dir")
        return f"{base.rstrip('/')}/sparkamp-tables/{db}.db/{name}/v-{tag}"
    _, path = _hadoop(spark, output)
    return _staging_dir(path).toString() + f"/{path.getName()}-{tag}"


def swap_in(spark, staging: str, output: str, run_id: str) -> None:
    """Publishes a finished staging directory as `output` (replacing it atomically)."""
    _publish_path(spark, staging, output, "overwrite", run_id)


def exists(spark, location: str) -> bool:
    """A metastore table that exists, or a path (any Hadoop filesystem) that exists."""
    if is_table(location):
        return spark.catalog.tableExists(table_name(location))
    fs, path = _hadoop(spark, location)
    return fs.exists(path)


def remove(spark, location: str) -> None:
    fs, path = _hadoop(spark, location)
    if fs.exists(path):
        fs.delete(path, True)


def _publish_path(spark, staging: str, output: str, mode: str, run_id: str) -> None:
    fs, target = _hadoop(spark, output)
    _, source = _hadoop(spark, staging)
    if not fs.exists(target):
        _rename(fs, source, target)
    elif mode == "append":
        existing, staged = spark.read.parquet(output).schema, spark.read.parquet(staging).schema
        if existing.simpleString() != staged.simpleString():
            raise ConfigError(f"key 'mode': cannot append to {output!r}: its schema is "
                              f"{existing.simpleString()}, the new rows' is {staged.simpleString()}")
        for status in fs.listStatus(source):
            if status.getPath().getName().startswith("part-"):
                _rename(fs, status.getPath(), target.suffix("/" + status.getPath().getName()))
        fs.delete(source, True)
    else:
        old = _staging_dir(target).suffix(f"/{target.getName()}-old-{run_id}")
        _rename(fs, target, old)
        _rename(fs, source, target)
        fs.delete(old, True)
    staging_dir = _staging_dir(target)
    if fs.exists(staging_dir) and not fs.listStatus(staging_dir):
        fs.delete(staging_dir, True)


def _rename(fs, source, target) -> None:
    if not fs.rename(source, target):
        raise OSError(f"could not rename {source} to {target}")


def _table_location(spark, name: str) -> str:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect()
    return next((r.data_type for r in rows if r.col_name == "Location"), "")


def _publish_table(spark, staged, output: str, mode: str, staging: str) -> None:
    name = table_name(output)
    db = name.split(".")[0]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    if not spark.catalog.tableExists(name):
        spark.sql(f"CREATE TABLE {name} USING parquet LOCATION '{staging}'")
        return
    if mode == "append":
        columns = spark.table(name).columns
        staged.select(*columns).write.insertInto(name)
        fs, path = _hadoop(spark, staging)
        fs.delete(path, True)
        return
    old = _table_location(spark, name)
    if spark.table(name).schema.simpleString() != staged.schema.simpleString():
        log.warning("schema of %s changes: dropping and re-creating it (not atomic)", name)
        spark.sql(f"DROP TABLE {name}")
        spark.sql(f"CREATE TABLE {name} USING parquet LOCATION '{staging}'")
    else:
        spark.sql(f"ALTER TABLE {name} SET LOCATION '{staging}'")
        spark.sql(f"REFRESH TABLE {name}")
    if old and "/sparkamp-tables/" in old:  # only locations this code made are removed
        fs, path = _hadoop(spark, old)
        fs.delete(path, True)
