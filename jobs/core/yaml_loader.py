"""Reading the YAML files a user writes: a key given twice is an error, and label sets keep their text."""
from __future__ import annotations

from typing import IO

import yaml

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice; plain YAML would keep the last value and drop the first."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing a key given twice in any mapping at any depth.

    The check walks the composed node tree before anything is constructed, so merge keys (`<<`)
    still work: a key written in a mapping may override one it merges, as YAML says.
    """

    def construct_document(self, node: yaml.Node) -> object:
        self._refuse_duplicate_keys(node)
        return super().construct_document(node)

    def _refuse_duplicate_keys(self, root: yaml.Node) -> None:
        stack, visited = [root], set()
        while stack:
            node = stack.pop()
            if id(node) in visited:  # an alias shares its anchor's node
                continue
            visited.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
            elif isinstance(node, yaml.MappingNode):
                first_line: dict = {}
                for key_node, value_node in node.value:
                    stack.extend((key_node, value_node))
                    if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                        continue
                    key, line = self.construct_object(key_node), key_node.start_mark.line + 1
                    if key in first_line:
                        line_before, text_before = first_line[key]
                        same = "" if text_before == key_node.value else f" (written {text_before!r} there)"
                        raise DuplicateKeyError(f"key {key_node.value!r} is given twice, on line {line_before}"
                                                f"{same} and line {line}; give it once")
                    first_line[key] = line, key_node.value


class TextLoader(UniqueKeyLoader):
    """UniqueKeyLoader where every plain scalar is the string it is written as: `yes`, `off`, `null`,
    `~`, `2019`, `1.0`, `2019-01-01` stay text instead of YAML 1.1's booleans, null, numbers and
    dates (quoted and explicitly tagged scalars are as YAML says). For files that hold only text."""

    yaml_implicit_resolvers = {first: [(tag, regexp) for tag, regexp in resolvers if tag == _MERGE]
                               for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load(stream: str | IO) -> object:
    """One YAML document, as `yaml.safe_load` reads it; DuplicateKeyError (a yaml.YAMLError) naming
    the key and both its lines when a mapping repeats a key."""
    return yaml.load(stream, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_text(stream: str | IO) -> object:
    """One YAML document whose plain scalars are all strings (see TextLoader); duplicate keys refused."""
    return yaml.load(stream, Loader=TextLoader)  # noqa: S506 - a SafeLoader subclass
