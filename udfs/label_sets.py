"""Label sets: the labels to assign, their descriptions and inline examples, and the texts that stand for them."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TEMPLATES = ("This text is about {name}.",)
_LABEL_KEYS = {"name", "description", "keywords", "examples"}
_SET_KEYS = {"labels", "templates"}


@dataclass(frozen=True)
class Label:
    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[Label, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def texts(self, with_descriptions: bool = True) -> list[list[str]]:
        """For each label, one text per template: the template filled with the name, then the
        description and keywords (these are what the zero-shot methods embed and average)."""
        out = []
        for label in self.labels:
            extra = " ".join(part for part in (
                label.description, ", ".join(label.keywords) + "." if label.keywords else "") if part)
            out.append([(t.format(name=label.name) + (" " + extra if extra and with_descriptions else ""))
                        .strip() for t in self.templates])
        return out

    def inline_examples(self) -> tuple[list[str], list[str]]:
        """(texts, label names) of the examples written in the label set itself."""
        pairs = [(text, label.name) for label in self.labels for text in label.examples]
        return [p[0] for p in pairs], [p[1] for p in pairs]


def parse_label_set(data: object, where: str) -> LabelSet:
    """A LabelSet from parsed YAML; ValueError naming the entry and what is accepted.

    Accepted: `{labels: [name, ...]}` or `{labels: [{name, description, keywords, examples}, ...],
    templates: ["... {name} ..."]}`; a bare list of labels works too.
    """
    if isinstance(data, list):
        data = {"labels": data}
    if not isinstance(data, dict) or "labels" not in data:
        raise ValueError(f"{where}: expected a mapping with a `labels` list")
    unknown = set(data) - _SET_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {sorted(_SET_KEYS)}")
    entries = data["labels"]
    if not isinstance(entries, list):
        raise ValueError(f"{where}: `labels` must be a list of names or mappings")
    labels = tuple(_label(entry, f"{where}: labels[{i}]") for i, entry in enumerate(entries))
    names = [label.name for label in labels]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{where}: label names must be unique; repeated: {repeated}")
    if len(labels) < 2:
        raise ValueError(f"{where}: a label set needs at least 2 labels, it has {len(labels)}")
    return LabelSet(labels, _templates(data.get("templates", list(DEFAULT_TEMPLATES)), where))


def _label(entry: object, where: str) -> Label:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a name or a mapping with `name`")
    unknown = set(entry) - _LABEL_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {sorted(_LABEL_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: `name` must be a non-empty string")
    keywords = entry.get("keywords", [])
    examples = entry.get("examples", None)
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise ValueError(f"{where} ({name}): `keywords` must be a list of strings")
    if examples is not None and (not isinstance(examples, list) or not examples
                                 or not all(isinstance(e, str) and e.strip() for e in examples)):
        raise ValueError(f"{where} ({name}): `examples` must be a non-empty list of non-empty strings "
                         "(leave the key out when a label has none)")
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"{where} ({name}): `description` must be a string")
    return Label(name.strip(), description.strip(), tuple(keywords), tuple(examples or ()))


def _templates(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise ValueError(f"{where}: `templates` must be a non-empty list of strings")
    for template in value:
        if "{name}" not in template:
            raise ValueError(f"{where}: template {template!r} has no {{name}} placeholder")
        try:
            template.format(name="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{where}: template {template!r} may only use {{name}} ({exc})") from None
    return tuple(value)
