"""The configuration reference in README.md, generated from the job config dataclasses."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from jobs import JOBS
from jobs.core import config

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def reference_markdown() -> str:
    parts = [START, "", "Generated from the config dataclasses by `make docs`; a test fails when it is stale.", ""]
    for name, module_name in JOBS.items():
        module = importlib.import_module(module_name)
        parts += [f"### `sparkamp {name}`", "", "```", config.reference(module.Config), "```", ""]
    return "\n".join(parts + [END])


def update(readme: Path = README) -> bool:
    """Rewrites the reference section in place; True when it changed."""
    text = readme.read_text()
    start, end = text.index(START), text.index(END) + len(END)
    new = text[:start] + reference_markdown() + text[end:]
    readme.write_text(new)
    return new != text


if __name__ == "__main__":
    print("README.md config reference " + ("updated" if update() else "already current"))
    sys.exit(0)
