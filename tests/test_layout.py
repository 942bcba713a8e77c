"""The layout ARCHITECTURE.md describes, held: the import graph has no cycle, each layer imports only what it
may, `ls jobs/` shows the jobs, no two modules' names differ only by word order, and the two URI resolvers
(driver: index/store.py, workers: udfs/files.py) agree."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from index import store
from jobs import JOBS
from udfs import files

ROOT = Path(__file__).resolve().parent.parent
OURS = ("jobs", "udfs", "index", "sparkamp")
JOB_MODULES = {module for module in JOBS.values()}


def modules() -> dict[str, Path]:
    """Every module of ours by dotted name."""
    found = {"sparkamp": ROOT / "sparkamp.py"}
    for package in OURS[:3]:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ours `path` imports anywhere in it (a function's lazy import too), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in OURS:
                found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of two or more modules (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycles(graph):
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check can fail


def test_each_layer_imports_only_what_it_may(graph):
    def wrong(name: str, allowed) -> list[str]:
        return sorted(other for other in graph[name] if not allowed(other))

    for name in graph:
        top = name.split(".")[0]
        if top in ("udfs", "index"):  # nothing of ours but themselves
            assert wrong(name, lambda other: other.split(".")[0] == top) == [], name
        if top == "jobs":  # never the public module
            assert wrong(name, lambda other: other != "sparkamp") == [], name
        if name.count(".") >= 2 and top == "jobs":  # jobs' sub-packages: no job module, no CLI
            assert wrong(name, lambda other: other not in JOB_MODULES | {"jobs.cli"}) == [], name
    for path in (ROOT / "index").rglob("*.py"):
        assert "pyspark" not in path.read_text(), f"{path} imports Spark"


def test_ls_jobs_tells_the_story():
    top = sorted(p.stem for p in (ROOT / "jobs").glob("*.py"))
    assert top == sorted({"__init__", "cli", *(m.split(".")[1] for m in JOB_MODULES)})
    names = [path.stem for package in OURS[:3] for path in (ROOT / package).rglob("*.py") if path.stem != "__init__"]
    by_words: dict[tuple, set[str]] = {}
    for name in names:
        by_words.setdefault(tuple(sorted(name.split("_"))), set()).add(name)
    assert [sorted(group) for group in by_words.values() if len(group) > 1] == []


URIS = ["/data/a b.png", "relative/x.png", "file:/data/x.png", "file:///data/a%20b.png", "file://localhost/d/x",
        "s3a://bucket/key/x.png", "s3n://bucket/x", "s3://bucket/x", "hdfs://nn:8020/data/x", "gs://b/x"]


def test_the_driver_and_worker_resolvers_agree():
    """udfs may not import index, so the workers keep their own copy of the mapping: it must not drift."""
    for uri in URIS:
        local = store.local_path(uri)
        assert (os.fsencode(local) if local is not None else None) == files.local_path(uri), uri
        assert store.pyarrow_uri(uri) == files.pyarrow_uri(uri), uri
    assert store.local_path("file:///data/a%20b.png") == "/data/a b.png"
    assert store.local_path("relative/x.png") == os.path.abspath("relative/x.png")
    assert store.pyarrow_uri("s3a://bucket/key/x.png") == "s3://bucket/key/x.png"
    assert store.pyarrow_uri("hdfs://nn:8020/data/x") == "hdfs://nn:8020/data/x"
    with pytest.raises(ValueError, match="names host 'elsewhere'"):
        store.local_path("file://elsewhere/x")
    with pytest.raises(ValueError, match="names host 'elsewhere'"):
        files.local_path("file://elsewhere/x")
