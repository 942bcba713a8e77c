"""Input files: the files a folder or glob names, as rows (id, source, path), what was skipped, and their kind."""
from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from jobs.core.config import ConfigError
from jobs.core.paths import expand_glob, glob_root, hadoop_path, is_glob, is_remote, local_path, reader_paths
from udfs import files

log = logging.getLogger(__name__)

TABULAR_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl",
                    ".json": "jsonl", ".ndjson": "jsonl"}
TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
SKIPPED = {"hidden": "hidden (the name starts with `.`)", "extension": "not one of the key `extensions`"}
_SNIFFED_FILES, _SNIFFED_BYTES = 32, 256 * 1024  # enough for a JPEG's EXIF before its frame header


@dataclass(frozen=True)
class FileListing:
    items: "object"          # DataFrame(id, source, path): one row per file
    skipped: dict[str, int]  # reason (a key of SKIPPED) → entries not read; only reasons that occurred

    def stats(self) -> dict[str, int]:
        """The summary's counts: `skipped_hidden`, `skipped_extension`."""
        return {f"skipped_{reason}": n for reason, n in self.skipped.items()}


def list_files(spark, location: str, extensions: tuple[str, ...] = ()) -> FileListing:
    """Every file under a folder or glob, recursively, as a row, whatever its name or content: workers
    tell images and texts by content, and anything else becomes a row with a status (a broken link, a
    fifo, a README among images). Not read, but counted and logged with examples: hidden names (`.`;
    a hidden folder counts once) and, when `extensions` is given, files whose name ends otherwise.

    Local inputs are walked here (Spark's file index skips `_` names, and Hadoop's glob fails on a
    `:` in a name it meets); remote ones are listed by Spark's binaryFile source, which skips `_` and
    `.` names uncounted. `id` is the path below the input folder (a glob's leading fixed folders; a
    file's own folder) and `source` the full path as Hadoop shows it (`file:/a b.jpg`), both spelled
    by `udfs.files.spelled` (valid UTF-8 whatever the bytes); `path` is a URI the workers open.
    """
    rows, skipped = (_remote_rows(spark, location) if is_remote(location) else _local_rows(location))
    if extensions:
        wanted = tuple("." + ext.lower().lstrip(".") for ext in extensions)
        skipped["extension"] = [row[0] for row in rows if not row[0].lower().endswith(wanted)]
        rows = [row for row in rows if row[0].lower().endswith(wanted)]
    skipped = {reason: names for reason, names in skipped.items() if names}
    for reason, names in skipped.items():
        log.info("%s: %d entries not read, %s: %s%s", location, len(names), SKIPPED[reason],
                 ", ".join(names[:5]), ", ..." if len(names) > 5 else "")
    items = spark.createDataFrame(rows, "id string, source string, path string")
    return FileListing(items, {reason: len(names) for reason, names in skipped.items()})


def _local_rows(location: str) -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    found, hidden = walk(location)
    root = os.fsencode(_root(location)).rstrip(b"/") + b"/"

    def below(path: str) -> str:
        raw = os.fsencode(path)
        return files.spelled(raw[len(root):] if raw.startswith(root) else os.path.basename(raw))

    rows = [(below(p), "file:" + files.spelled(p), files.file_uri(p)) for p in found]
    return rows, {"hidden": [below(p) for p in hidden]}


def _root(location: str) -> str:
    """The folder ids are relative to: the input folder, a file's folder, a glob's fixed prefix."""
    if is_glob(location):
        return glob_root(local_path(location))
    path = local_path(location)
    return path if os.path.isdir(path) else os.path.dirname(path)


def _remote_rows(spark, location: str) -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    uris = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
            .load(reader_paths(spark, location)).inputFiles())
    _, root = hadoop_path(spark, glob_root(location) if is_glob(location, spark) else location)
    prefix = unquote_to_bytes(root.toUri().toString()).rstrip(b"/") + b"/"
    rows = []
    for uri in sorted(uris):
        raw = unquote_to_bytes(uri)  # the URI keeps the percent-encoding: pyarrow decodes it
        rows.append((files.spelled(raw[len(prefix):] if raw.startswith(prefix) else raw), files.spelled(raw), uri))
    return rows, {}


def walk(location: str) -> tuple[list[str], list[str]]:
    """(files, hidden) under a local folder, file or glob, sorted: every entry that is not a folder,
    recursively, through links to folders (each folder once); and the hidden entries met, not entered.
    Names are str as os.walk gives them (bytes that are not UTF-8 as surrogates). A folder that
    cannot be listed raises ConfigError: its files would be lost unseen."""
    tops = _matches(location)
    found, hidden = {top for top in tops if not os.path.isdir(top)}, set()
    seen: set[tuple[int, int]] = set()
    for top in sorted(set(tops) - found):
        for folder, dirs, names in os.walk(top, onerror=_unlistable, followlinks=True):
            inode = os.stat(folder)
            if (inode.st_dev, inode.st_ino) in seen:  # a link back up the tree
                dirs.clear()
                continue
            seen.add((inode.st_dev, inode.st_ino))
            hidden.update(os.path.join(folder, n) for n in dirs + names if n.startswith("."))
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.update(os.path.join(folder, n) for n in names if not n.startswith("."))
    return sorted(found), sorted(hidden)


def _matches(location: str) -> list[str]:
    return expand_glob(local_path(location)) if is_glob(location) else [local_path(location)]


def _unlistable(error: OSError) -> None:
    raise ConfigError(f"key 'input': cannot list {files.spelled(error.filename)}: {error.strerror or error}")


def local_format(location: str) -> str | None:
    """What most files under a local folder, file or glob are: `images`, `text-dir` or a tabular
    format, by name (Pillow's image extensions, TEXT_SUFFIXES, TABULAR_SUFFIXES); when no name tells,
    by the content of the first files (an image Pillow recognises, else UTF-8 text). None: neither."""
    found, _ = walk(location)
    counts = Counter(fmt for fmt in map(_name_format, found) if fmt)
    if not counts:
        counts = Counter(fmt for fmt in map(_content_format, found[:_SNIFFED_FILES]) if fmt)
    return max(counts, key=counts.get) if counts else None


def _name_format(path: str) -> str | None:
    lower = path.lower()
    if files.is_image_name(lower):
        return "images"
    if lower.endswith(TEXT_SUFFIXES):
        return "text-dir"
    return next((fmt for suffix, fmt in TABULAR_SUFFIXES.items() if lower.endswith(suffix)), None)


def _content_format(path: str) -> str | None:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a fifo would wait forever
            return None
        with open(path, "rb") as fh:
            head = fh.read(_SNIFFED_BYTES)
    except OSError:
        return None
    if files.image_format(head):
        return "images"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the read is still text
        return "text-dir" if exc.start >= len(head) - 3 and head and b"\0" not in head else None
    return "text-dir" if head and b"\0" not in head else None
