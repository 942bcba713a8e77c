"""Job configuration: frozen dataclasses loaded from YAML, `--set` overrides and flags, validated once."""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from jobs.core import yaml_loader

TABLE_PREFIX = "table:"


class ConfigError(ValueError):
    """A bad config or argument: raised before any Spark work, names the key and what is accepted."""


def key(default: Any, help: str, flag: str = "") -> Any:
    """A config field with its help text; `flag` (e.g. `--input`) also makes it a CLI flag."""
    meta = {"help": help, "flag": flag}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class JobConfig:
    """Keys every job shares."""

    output: str = key("", "a Parquet path or `table:db.name`; empty = a folder under `warehouse`",
                      flag="--output")
    mode: Literal["overwrite", "append", "error-if-exists"] = key(
        "overwrite", "what to do when the output exists")
    master: str = key("", "Spark master; empty = the launcher's (spark-submit) or local[*]")
    spark: dict = key({}, "extra `spark.*` settings passed to the session as they are")
    warehouse: str = key("warehouse", "local warehouse dir: default outputs, Derby metastore, runs")
    runs_table: str = key("warehouse/_runs", "where each run appends its summary row; empty = off")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = key("INFO", "sparkamp log level")

    default_output: ClassVar[str] = ""  # the output's folder name under `warehouse` when not given

    def __post_init__(self) -> None:
        if not self.output and self.default_output:
            object.__setattr__(self, "output", os.path.join(self.warehouse, self.default_output))

    def validate(self) -> None:
        """Checks that need more than one key; subclasses extend it."""
        if not self.output:
            raise ConfigError("key 'output' is required: a Parquet path or `table:db.name`")
        if self.output.startswith(TABLE_PREFIX):
            check_table_name("output", self.output)


def check_table_name(name: str, value: str) -> None:
    """`table:name` or `table:db.name` with plain identifiers."""
    table = value[len(TABLE_PREFIX):]
    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(p.replace("_", "").isalnum() for p in parts):
        raise ConfigError(f"key '{name}': {value!r} is not a table name; expected `table:db.name`")


# ---- loading -------------------------------------------------------------------------------

def fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (list, typing.List):
        return "list of " + describe_type(typing.get_args(tp)[0]) if typing.get_args(tp) else "list"
    return {str: "string", int: "integer", float: "number", bool: "boolean", dict: "mapping",
            list: "list"}.get(tp, str(tp))


def _coerce(name: str, tp: Any, value: Any, from_text: bool) -> Any:
    """Value of the field's type, or a ConfigError naming the key and what is accepted."""
    def bad() -> ConfigError:
        return ConfigError(f"key '{name}' expects {describe_type(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise bad()
        return value
    if origin in (list, typing.List):
        if from_text:
            value = yaml.safe_load(value) if value.strip().startswith("[") else \
                [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise bad()
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
        return [_coerce(name, inner, v, from_text) for v in value]
    if tp is bool:
        if from_text and isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp in (int, float):
        if from_text and isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float) if tp is float else int):
            raise bad()
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise bad()
        return {str(k): str(v) if not isinstance(v, bool) else str(v).lower() for k, v in value.items()}
    raise bad()


def _unknown(name: str, cls: type) -> ConfigError:
    accepted = sorted(fields(cls))
    close = difflib.get_close_matches(name, accepted, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown key '{name}'{hint}; accepted keys: {', '.join(accepted)}")


def load(cls: type, conf_file: str | None = None, sets: list[str] | None = None,
         flags: dict[str, Any] | None = None) -> Any:
    """YAML file < `--set key=value` < flags; every value type-checked, then `validate()`."""
    hints = typing.get_type_hints(cls)
    known = fields(cls)
    values: dict[str, Any] = {}
    if conf_file:
        path = Path(conf_file)
        if not path.is_file():
            raise ConfigError(f"--conf: {conf_file!r} is not a file")
        try:
            data = yaml_loader.load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"--conf: {conf_file!r} is not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--conf: {conf_file!r} is not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start}); save it as UTF-8") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--conf: {conf_file!r} must hold a mapping of key: value")
        for name, value in data.items():
            if name not in known:
                raise _unknown(str(name), cls)
            values[name] = _coerce(name, hints[name], value, from_text=False)
    for item in sets or []:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if name.startswith("spark.") and "spark" in known:
            values["spark"] = {**values.get("spark", {}), name: text}
            continue
        if name not in known:
            raise _unknown(name, cls)
        values[name] = _coerce(name, hints[name], text, from_text=True)
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = _coerce(name, hints[name], value, from_text=isinstance(value, str))
    cfg = cls(**values)
    cfg.validate()
    return cfg


def as_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def reference(cls: type) -> str:
    """Every key with its type, default and meaning: for `--help` and the README."""
    hints = typing.get_type_hints(cls)
    rows = []
    for name, f in fields(cls).items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append(f"  {name:<22} {describe_type(hints[name])}; default {default!r}\n"
                    f"  {'':<22} {f.metadata.get('help', '')}")
    return "\n".join(rows)


def require_positive(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"key '{name}' must be > 0, got {getattr(cfg, name)!r}")


def require_non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"key '{name}' must be >= 0, got {getattr(cfg, name)!r}")

