"""Label sets read from YAML files, and what each labelling method needs of the label set and examples."""
from __future__ import annotations

import yaml

from index import store
from jobs.core import yaml_loader
from jobs.core.config import ConfigError
from udfs.label_sets import LabelSet, parse_label_set

METHODS = ("zero-shot", "zmap", "wmap", "logreg", "centroid", "setfit")
NEEDS_LABEL_TEXT = ("zero-shot", "zmap", "wmap")
NEEDS_EXAMPLES = ("wmap", "logreg", "centroid", "setfit")


def read_label_set(path: str, key: str = "labels") -> LabelSet | None:
    """The label set in the YAML file at `path` (any filesystem; None when not given); ConfigError naming
    `key` and the problem. Every plain scalar in it is text: label names like `yes`, `off`, `null` or
    `2019` stay names."""
    if not path:
        return None
    try:
        data = yaml_loader.load_text(store.read_bytes(path).decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"key '{key}': cannot read {path!r}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"key '{key}': {path!r} is not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"key '{key}': {path!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "save it as UTF-8") from None
    try:
        return parse_label_set(data, path)
    except ValueError as exc:
        raise ConfigError(f"key '{key}': {exc}") from None


def check_label_inputs(method: str, label_set: LabelSet | None, has_examples: bool) -> None:
    """What `method` needs (label names; labelled examples: given, or inline in the label set), checked
    before any work; ConfigError naming the key."""
    if method not in METHODS:
        raise ConfigError(f"key 'method' expects one of {', '.join(METHODS)}, got {method!r}")
    inline = label_set is not None and any(label.examples for label in label_set.labels)
    if method in NEEDS_LABEL_TEXT and label_set is None:
        raise ConfigError(f"key 'labels': method {method} needs a label set (YAML with label names)")
    if method in NEEDS_EXAMPLES and not (has_examples or inline):
        raise ConfigError(f"key 'examples': method {method} needs labelled examples: --examples "
                          "(a table with label and id or text, or a folder per label) or `examples` "
                          "in the label set")
