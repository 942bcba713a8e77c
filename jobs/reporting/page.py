"""A report's page: the sections whose inputs were given, in reading order, written as one index.html."""
from __future__ import annotations

from index import store
from jobs.core.config import ConfigError
from jobs.reporting.gathering import Gathered
from udfs import report_plots, report_sections as sec, report_tables


def render(found: Gathered, items: dict[str, sec.Item], seed: int = 0) -> list[sec.Section]:
    """The sections whose inputs were given, in reading order (the map: a seeded 2-D projection)."""
    out = []
    if found.grids is not None:
        out.append(sec.neighbours_section(found.grids, items, found.queries))
    if found.unique is not None:
        out.append(sec.unique_section(found.unique, items, found.unique_total))
    if found.groups is not None:
        out.append(sec.duplicates_section(found.groups, items, found.groups_total))
    if found.map_ids is not None:
        coords, method = report_plots.project_2d(found.map_vectors, seed)
        out.append(sec.map_section(coords, found.map_ids, items, method, found.embedding_statuses))
    if found.predictions is not None:
        out.append(sec.predictions_section(found.predictions, items, found.label_statuses))
    if found.classification:
        out.append(report_tables.classification_section(found.classification, found.confusion,
                                                        found.classes_total))
    if found.retrieval:
        out.append(report_tables.retrieval_section(found.retrieval))
    if found.runs is not None:
        out.append(report_tables.runs_section(found.runs))
    return out


def check_target(folder: str, mode: str) -> None:
    """Refuses an existing page under mode error-if-exists (ConfigError), before any work."""
    if mode == "error-if-exists" and store.exists(store.join(folder, "index.html")):
        raise ConfigError(f"key 'output': {folder}/index.html exists and mode is error-if-exists; "
                          "use mode overwrite")


def write(folder: str, page: str) -> str:
    """Writes `folder`/index.html (any filesystem) hidden, then renames it into place: a reader never sees
    half a page. Returns where it went."""
    target = store.join(folder, "index.html")
    store.write_bytes(target, page.encode("utf-8"))
    return store.resolve(target)[1]
