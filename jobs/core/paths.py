"""Input and output locations: local paths, URIs and tables, when a path is a glob, and the checks before Spark.

The rule for globs: a path that exists is read as that path, whatever characters its name holds; only
a path that does not exist and holds a metacharacter (`* ? [ ] { } \\`) is a Hadoop glob, in which `\\`
escapes a metacharacter. Local globs are expanded here (Python's glob, Hadoop's syntax) and each match
is handed to Spark escaped, so the check before Spark and the read agree.
"""
from __future__ import annotations

import glob
import os

from index import store
from jobs.core.config import TABLE_PREFIX, ConfigError, check_table_name

GLOB_METACHARACTERS = "\\*?[]{}"  # Hadoop's GlobPattern and Spark's isGlobPath; `^ - !` and `,` act only inside


def is_table(location: str) -> bool:
    """A metastore table (`table:db.name`), not a path."""
    return location.startswith(TABLE_PREFIX)


def table_name(location: str) -> str:
    """`db.name` of `table:db.name` (`default.name` of `table:name`)."""
    name = location[len(TABLE_PREFIX):]
    return name if "." in name else f"default.{name}"


def is_remote(path: str) -> bool:
    """On a filesystem other than this machine's (any scheme but `file:`)."""
    return store.local_path(path) is None


def local_path(path: str) -> str:
    """The absolute local path of a local location (`index.store.local_path`: `file:/x`, `file:///x`, `x`)."""
    found = store.local_path(path)
    if found is None:
        raise ValueError(f"{path} is not a local path")
    return found


def has_glob(path: str) -> bool:
    return any(c in GLOB_METACHARACTERS for c in path)


def escape_glob(path: str) -> str:
    """`path` with each glob metacharacter backslash-escaped: Hadoop (and so Spark's readers) then
    match exactly that name. Spark's writers take a path as written: never escape an output."""
    return "".join("\\" + c if c in GLOB_METACHARACTERS else c for c in path)


def is_glob(location: str, spark=None) -> bool:
    """Whether `location` is read as a glob: it holds a metacharacter and no path has exactly its name.
    A remote location is looked up on its filesystem through `spark`; without it, it counts as a glob."""
    if not has_glob(location) or location.startswith(TABLE_PREFIX):
        return False
    if not is_remote(location):
        return not os.path.exists(local_path(location))
    if spark is None:
        return True
    fs, path = hadoop_path(spark, location)
    return not fs.exists(path)


def hadoop_path(spark, location: str) -> tuple:
    """(Hadoop FileSystem, qualified Path) of `location`, taken literally (a Path does not glob)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, fs.makeQualified(path)


def reader_paths(spark, location: str) -> list[str]:
    """The paths to hand Spark's file readers (parquet, csv, json, binaryFile) so they read what
    `location` names: an existing path escaped; a local glob's matches (as `expand_glob` finds them),
    each escaped; a remote glob as written (Hadoop expands it)."""
    if is_remote(location):
        return [location] if is_glob(location, spark) else [escape_glob(location)]
    path = local_path(location)
    return [escape_glob(match) for match in (expand_glob(path) if is_glob(location) else [path])]


# ---- Hadoop glob syntax, matched with Python's glob ------------------------------------------------

def _tokens(pattern: str) -> list[tuple[str, bool]]:
    """(character, is a metacharacter) pairs; `\\x` is the literal x."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append((pattern[i + 1], False))
            i += 2
        else:
            out.append((pattern[i], pattern[i] in "*?[]{},"))
            i += 1
    return out


def _alternatives(tokens: list[tuple[str, bool]]) -> list[list[tuple[str, bool]]]:
    """Hadoop's `{a,b}` groups (nestable) expanded: Python's glob has none."""
    depth, start = 0, 0
    for i, (char, meta) in enumerate(tokens):
        if meta and char == "{":
            start, depth = (i, 1) if depth == 0 else (start, depth + 1)
        elif meta and char == "}" and depth:
            depth -= 1
            if depth == 0:
                options, current, level = [], [], 0
                for token in tokens[start + 1:i]:
                    level += (token == ("{", True)) - (token == ("}", True))
                    if token == (",", True) and level == 0:
                        options.append(current)
                        current = []
                    else:
                        current.append(token)
                options.append(current)
                return [expanded for option in options
                        for expanded in _alternatives(tokens[:start] + option + tokens[i + 1:])]
    return [tokens]


def _python_pattern(tokens: list[tuple[str, bool]]) -> str:
    out, in_class = [], False
    for char, meta in tokens:
        if in_class:
            in_class = not (meta and char == "]")
            out.append("!" if char == "^" and out[-1] == "[" else char)  # Hadoop's [^a] is Python's [!a]
        elif meta and char in "*?[":
            in_class = char == "["
            out.append(char)
        else:
            out.append(glob.escape(char))
    return "".join(out)


def expand_glob(pattern: str) -> list[str]:
    """The local paths (sorted) a Hadoop glob matches: `* ? [abc] [^a] [a-z] {a,b}` and `\\` escapes.
    As with any shell glob, a wildcard does not match a hidden name (starting with `.`)."""
    return sorted({match for option in _alternatives(_tokens(pattern))
                   for match in glob.glob(_python_pattern(option))})


def glob_root(pattern: str) -> str:
    """The folder a glob's matches are under: its leading parts without a metacharacter, unescaped
    (`/a/b c` of `/a/b c/*.jpg`)."""
    root, part, wild = "", "", False
    for char, meta in _tokens(pattern):
        if char == "/" and not wild:
            root, part = root + part + "/", ""
        elif char == "/":
            break
        else:
            part, wild = part + char, wild or (meta and char in "*?[{")
    return root.rstrip("/") or "/"


def _existing_part(pattern: str) -> tuple[str, str]:
    """(the first leading part of a glob, ending in a part with a metacharacter, that names an existing
    path as written, the rest of the pattern): (`shoot [2024]`, `/*.jpg`); ('', '') if none does."""
    literal, wild, i = "", False, 0
    while i <= len(pattern):
        if i == len(pattern) or pattern[i] == "/":
            if wild and os.path.exists(literal):
                return literal, pattern[i:]
            literal, wild, i = literal + "/", False, i + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            literal, i = literal + pattern[i + 1], i + 2
        else:
            literal, wild, i = literal + pattern[i], wild or pattern[i] in "*?[{", i + 1
    return "", ""


# ---- checks before Spark ---------------------------------------------------------------------------

def check_input_exists(name: str, value: str, globs: bool = True) -> None:
    """A missing local input, a glob that matches nothing or could mean an existing folder, or a glob
    where `globs` is False (a key read by Python, not Spark), fails here, before Spark. Remote URIs and
    tables are checked by Spark. Raises ConfigError naming the key."""
    if not value:
        raise ConfigError(f"key '{name}' is required: a path, a glob or `table:db.name`")
    if value.startswith(TABLE_PREFIX):
        check_table_name(name, value)
        return
    if is_remote(value) or os.path.exists(local_path(value)):
        return
    if not has_glob(value) or not globs:
        raise ConfigError(f"key '{name}': {value!r} does not exist"
                          + (" (a glob is not accepted here: name one file or folder)" if has_glob(value) else ""))
    pattern = local_path(value)
    existing, rest = _existing_part(pattern)
    if existing:
        raise ConfigError(f"key '{name}': {value!r} is no existing path, so it would be read as a glob, but "
                          f"{existing!r} exists: to read under it, escape its metacharacters: "
                          f"'{escape_glob(existing) + rest}'")
    if not expand_glob(pattern):
        raise ConfigError(f"key '{name}': no path is named {value!r}, and as a glob it matches no file")


def check_output_not_input(input_value: str, output_value: str) -> None:
    if not input_value or input_value.startswith(TABLE_PREFIX) != output_value.startswith(TABLE_PREFIX):
        return
    if input_value.startswith(TABLE_PREFIX):
        same, inside = input_value.lower() == output_value.lower(), False
    elif is_remote(input_value) or is_remote(output_value):
        a, b = input_value.rstrip("/"), output_value.rstrip("/")
        same, inside = a == b, b.startswith(a + "/")
    else:
        a, b = local_path(input_value).rstrip("/"), local_path(output_value).rstrip("/")
        same, inside = a == b, b.startswith(a + "/") and not is_glob(input_value)
    if same:
        raise ConfigError(f"key 'output': {output_value!r} is the input; write somewhere else")
    if inside:
        raise ConfigError(f"key 'output': {output_value!r} is inside the input {input_value!r}; "
                          "a re-run would read its own output")
