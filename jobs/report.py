"""Write one self-contained HTML page of results: neighbours, unique items, duplicates, a map, metrics, runs."""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/report.py` without the zip on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.tables import inputs  # noqa: E402
from jobs.reporting import gathering as report_data  # noqa: E402
from jobs.tables import publish as tables  # noqa: E402
from jobs.core.config import TABLE_PREFIX, ConfigError, JobConfig, key, require_positive  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input, is_remote, local_path  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from udfs import report_html, report_plots, report_sections as sec, report_tables  # noqa: E402

NAME = "report"
PLAN = ("seeded samples of each input in Spark → thumbnails of the shown images made on the workers → "
        "PCA of the map's sample on the driver → one index.html (inline CSS, JS and images)")
INPUTS = ("embeddings", "neighbours", "unique", "dedup", "labels", "metrics", "gold", "texts")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "report"
    output: str = key("", "the report folder: index.html is written there; empty = warehouse/report",
                      flag="--output")
    embeddings: str = key("", "an embeddings table: the map, and the image files behind thumbnails",
                          flag="--embeddings")
    neighbours: str = key("", "a neighbours table (search): query → neighbours grids", flag="--neighbours")
    unique: str = key("", "a uniqueness table (unique): the most unique items", flag="--unique")
    dedup: str = key("", "a duplicate-groups table (dedup): the largest groups", flag="--dedup")
    labels: str = key("", "a labels table (assign-labels): predictions, the map's predicted colours",
                      flag="--labels")
    metrics: str = key("", "a metrics table (evaluate): classification and/or retrieval", flag="--metrics")
    runs: str = key("", "run summaries: a runs folder or table; empty = runs_table when it exists; "
                    "`none` = no section", flag="--runs")
    gold: str = key("", "true labels (as evaluate reads them): hits and misses, the map's colours",
                    flag="--gold")
    texts: str = key("", "texts behind a text embeddings table (id and text_column): snippets",
                     flag="--texts")
    label_column: str = key("label", "label column of a tabular `gold`")
    text_column: str = key("text", "text column of `texts`")
    encoding: str = inputs.encoding_key("`gold` and `texts` files")
    delimiter: str = inputs.delimiter_key()
    sample: int = key(2000, "points on the map (a seeded sample of the ok embeddings)")
    max_queries: int = key(24, "queries in the neighbours grids, and items in the predictions")
    max_neighbours: int = key(8, "neighbours shown per query")
    max_unique: int = key(24, "unique items shown")
    max_groups: int = key(12, "duplicate groups shown (the largest)")
    group_size: int = key(8, "members shown per duplicate group")
    max_classes: int = key(30, "classes in the confusion matrix (the largest)")
    max_runs: int = key(30, "run summaries shown (the newest)")
    thumb_size: int = key(64, "thumbnail side in pixels")
    snippet_chars: int = key(160, "characters of each text shown")
    seed: int = key(0, "seed of the samples")
    title: str = key("sparkamp report", "the page's title")

    def validate(self) -> None:
        if self.output.startswith(TABLE_PREFIX):
            raise ConfigError(f"key 'output': the report is a folder (index.html), not a table: {self.output!r}")
        super().validate()
        if self.mode == "append":
            raise ConfigError("key 'mode': a report is one page; use overwrite or error-if-exists")
        for name in INPUTS + (("runs",) if self.runs not in ("", "none") else ()):
            if getattr(self, name):
                check_input_exists(name, getattr(self, name), globs=not getattr(self, name).endswith(".json"))
                check_output_not_input(getattr(self, name), self.output)
        require_positive(self, "sample", "max_queries", "max_neighbours", "max_unique", "max_groups",
                         "group_size", "max_classes", "max_runs", "thumb_size", "snippet_chars")
        inputs.check_text_keys(self)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    filesystem, folder = _target(cfg)
    cfg = dataclasses.replace(cfg, runs=_runs(spark, cfg))
    with summary.timed("read + sample"):
        found = report_data.gather(spark, cfg)
    with summary.timed("thumbnails + details"):
        items = report_data.describe(spark, cfg, found.ids())
    with summary.timed("map + render + write"):
        sections = render(found, items, cfg.seed)
        given = {n: getattr(cfg, n) for n in INPUTS + ("runs",) if getattr(cfg, n)}
        subtitle = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · run {summary.run_id}"
        page = report_html.page(cfg.title, subtitle, sections, given)
        path = _write(filesystem, folder, page, summary.run_id)
    unreadable = sum(1 for it in items.values() if it.image and not it.thumb)
    summary.rows_in = len(items)
    summary.statuses = {"ok": len(items) - unreadable, **({"unreadable_image": unreadable} if unreadable else {})}
    summary.stats.update({"sections": len(sections), "page_kib": round(len(page.encode()) / 1024, 1)})
    summary.outputs.append(path)


def render(found: report_data.Gathered, items: dict[str, sec.Item], seed: int = 0) -> list[sec.Section]:
    """The sections whose inputs were given, in reading order."""
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


def _runs(spark, cfg: Config) -> str:
    """The runs input: as given, `runs_table` when it exists and holds runs, or none."""
    if cfg.runs == "none" or not (cfg.runs or cfg.runs_table):
        return ""
    if cfg.runs:
        return cfg.runs
    from pyspark.errors import AnalysisException

    if tables.exists(spark, cfg.runs_table):
        try:
            report_data.read(spark, cfg.runs_table).schema  # an empty folder has none
            return cfg.runs_table
        except AnalysisException as exc:  # no runs yet
            log.info("no run summaries in %s: %s", cfg.runs_table, str(exc).splitlines()[0])
    return ""


def _target(cfg: Config):
    """(pyarrow filesystem, folder) of the output; refuses an existing page under error-if-exists."""
    from pyarrow import fs as pafs

    if is_remote(cfg.output):
        filesystem, folder = pafs.FileSystem.from_uri(cfg.output)
    else:
        filesystem, folder = pafs.LocalFileSystem(), local_path(cfg.output)
    exists = filesystem.get_file_info(f"{folder}/index.html").type != pafs.FileType.NotFound
    if cfg.mode == "error-if-exists" and exists:
        raise ConfigError(f"key 'output': {cfg.output}/index.html exists and mode is error-if-exists; "
                          "use mode overwrite")
    return filesystem, folder


def _write(filesystem, folder: str, page: str, run_id: str) -> str:
    """Writes index.html hidden, then renames it into place: a reader never sees half a page."""
    filesystem.create_dir(folder, recursive=True)
    tmp = f"{folder}/.index.html.{run_id}.tmp"
    with filesystem.open_output_stream(tmp) as fh:
        fh.write(page.encode("utf-8"))
    filesystem.move(tmp, f"{folder}/index.html")
    return f"{folder}/index.html"


if __name__ == "__main__":
    from jobs import cli, report

    sys.exit(cli.run_job(report, sys.argv[1:]))
