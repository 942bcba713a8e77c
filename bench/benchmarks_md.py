"""BENCHMARKS.md holds one section per benchmark script; each script rewrites only its own."""
from __future__ import annotations

from pathlib import Path


def update_section(path: Path, heading: str, body: str) -> None:
    """Replaces `heading`'s section (up to the next `## `) in place, or appends it; others stay."""
    lines = path.read_text().splitlines() if path.exists() else [
        "# Benchmarks", "", "One section per benchmark script; each script rewrites only its own.", ""]
    new = [heading, "", *body.splitlines(), ""]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new
    else:
        lines += ([""] if lines and lines[-1] else []) + new
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    tmp.replace(path)
