"""Write one self-contained HTML page of results: neighbours, unique items, duplicates, a map, metrics, runs."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/report.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import ConfigError, JobConfig, key, require_positive  # noqa: E402
from jobs.core.paths import check_input_exists, check_output_not_input, is_table  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from jobs.reporting import gathering, page  # noqa: E402
from jobs.tables import contracts, inputs, publish  # noqa: E402
from udfs import report_html  # noqa: E402

NAME = "report"
PLAN = ("seeded samples of each input in Spark → thumbnails of the shown images made on the workers → "
        "PCA of the map's sample on the driver → one index.html (inline CSS, JS and images)")
INPUTS = ("embeddings", "neighbours", "unique", "dedup", "labels", "metrics", "gold", "texts")
SHOWN = tuple(gathering.Shown.__dataclass_fields__)
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
        if is_table(self.output):
            raise ConfigError(f"key 'output': the report is a folder (index.html), not a table: {self.output!r}")
        super().validate()
        if self.mode == "append":
            raise ConfigError("key 'mode': a report is one page; use overwrite or error-if-exists")
        for name in INPUTS + (("runs",) if self.runs not in ("", "none") else ()):
            if getattr(self, name):
                check_input_exists(name, getattr(self, name), globs=not getattr(self, name).endswith(".json"))
                check_output_not_input(getattr(self, name), self.output)
        require_positive(self, *(name for name in SHOWN if name != "seed"))
        inputs.check_text_keys(self.encoding, self.delimiter)

    def sources(self, runs: str) -> gathering.Sources:
        """The inputs to read, with `runs` as found (`_runs`)."""
        given = {name: getattr(self, name) for name in INPUTS if getattr(self, name)}
        return gathering.Sources({**given, **({"runs": runs} if runs else {})}, self.label_column,
                                 self.text_column, self.encoding, self.delimiter)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    page.check_target(cfg.output, cfg.mode)
    src, shown = cfg.sources(_runs(spark, cfg)), gathering.Shown(**{n: getattr(cfg, n) for n in SHOWN})
    with summary.timed("read + sample"):
        found = gathering.gather(spark, src, shown)
    with summary.timed("thumbnails + details"):
        items = gathering.describe(spark, src, shown, found.ids())
    with summary.timed("map + render + write"):
        sections = page.render(found, items, cfg.seed)
        subtitle = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC · run {summary.run_id}"
        html = report_html.page(cfg.title, subtitle, sections, src.given)
        path = page.write(cfg.output, html)
    unreadable = sum(1 for it in items.values() if it.image and not it.thumb)
    summary.rows_in = len(items)
    summary.statuses = {"ok": len(items) - unreadable, **({"unreadable_image": unreadable} if unreadable else {})}
    summary.stats.update({"sections": len(sections), "page_kib": round(len(html.encode()) / 1024, 1)})
    summary.outputs.append(path)


def _runs(spark, cfg: Config) -> str:
    """The runs input: as given, `runs_table` when it exists and holds runs, or none."""
    if cfg.runs == "none" or not (cfg.runs or cfg.runs_table):
        return ""
    if cfg.runs:
        return cfg.runs
    from pyspark.errors import AnalysisException

    if publish.exists(spark, cfg.runs_table):
        try:
            contracts.read_table(spark, cfg.runs_table).schema  # an empty folder has none
            return cfg.runs_table
        except AnalysisException as exc:  # no runs yet
            log.info("no run summaries in %s: %s", cfg.runs_table, str(exc).splitlines()[0])
    return ""


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
