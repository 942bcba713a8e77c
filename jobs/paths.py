"""Checks on input and output locations that run before Spark: local paths, globs, URIs, tables."""
from __future__ import annotations

import glob
import os

from jobs.config import TABLE_PREFIX, ConfigError, check_table_name


def is_remote(path: str) -> bool:
    scheme = path.split("://", 1)[0] if "://" in path else ""
    return scheme not in ("", "file")


def local_path(path: str) -> str:
    """`file:///x` or `file:/x` → `/x`; other local paths made absolute."""
    if path.startswith("file:"):
        path = "/" + path[len("file:"):].lstrip("/")
    return os.path.abspath(path)


def has_glob(path: str) -> bool:
    return any(c in path for c in "*?[{")


def check_input_exists(name: str, value: str) -> None:
    """A missing local input fails here, before Spark; remote URIs and tables are checked by Spark."""
    if not value:
        raise ConfigError(f"key '{name}' is required: a path, a glob or `table:db.name`")
    if value.startswith(TABLE_PREFIX):
        check_table_name(name, value)
        return
    if is_remote(value):
        return
    path = local_path(value)
    if has_glob(value):
        if not glob.glob(_braces_to_first(path), recursive=True):
            raise ConfigError(f"key '{name}': the glob {value!r} matches no file")
    elif not os.path.exists(path):
        raise ConfigError(f"key '{name}': {value!r} does not exist")


def _braces_to_first(pattern: str) -> str:
    """Python's glob has no `{a,b}`; checking the first alternative is enough to catch typos."""
    while "{" in pattern and "}" in pattern:
        start, end = pattern.index("{"), pattern.index("}")
        pattern = pattern[:start] + pattern[start + 1:end].split(",")[0] + pattern[end + 1:]
    return pattern


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
        same, inside = a == b, b.startswith(a + "/") and not has_glob(input_value)
    if same:
        raise ConfigError(f"key 'output': {output_value!r} is the input; write somewhere else")
    if inside:
        raise ConfigError(f"key 'output': {output_value!r} is inside the input {input_value!r}; "
                          "a re-run would read its own output")
