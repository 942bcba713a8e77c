"""Embed texts (Parquet, CSV, JSON Lines, a dir of .txt files, or a table) into an embeddings table."""
from __future__ import annotations

import os
import string
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `spark-submit jobs/embed_texts.py` without the zip: the checkout on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs import cli  # noqa: E402
from jobs.core.config import ConfigError, key, require_positive  # noqa: E402
from jobs.core.summary import RunSummary  # noqa: E402
from jobs.embedding import incremental, items, publishing, steps  # noqa: E402
from jobs.embedding.keys import EmbedConfig  # noqa: E402
from jobs.tables import inputs, publish  # noqa: E402
from udfs import texts  # noqa: E402
from udfs.embed_udfs import TextJobOptions  # noqa: E402

NAME = "embed-texts"
PLAN = "read texts → repartition → clean + encode per worker (length-sorted) → stage, count, publish"


@dataclass(frozen=True)
class Config(EmbedConfig):
    default_output: ClassVar[str] = "text_embeddings"
    model: str = key(texts.DEFAULT_TEXT_MODEL, f"{texts.DEFAULT_TEXT_MODEL}, {texts.WORD_VECTORS}, "
                     "or a name for the encoder at model_path", flag="--model")
    model_path: str = key("", "a local Sentence-Transformers directory")
    vectors_path: str = key("", "word-vectors: a word2vec/GloVe file; empty = packaged GloVe 6B 50d")
    text_column: str = key("text", "column holding the text", flag="--text-column")
    text_template: str = key("", "build the text from columns, e.g. '{title}. {body}'")
    max_chars: int = key(100_000, "longer texts are cut (and counted as truncated)")
    batch_size: int = key(8, "texts per model call (length-sorted; small batches are fastest on CPU)")
    arrow_batch_size: int = key(1024, "rows per Arrow block: the unit that is length-sorted")
    encoding: str = inputs.encoding_key("CSV, JSON Lines and .txt inputs, and binary text columns")
    delimiter: str = inputs.delimiter_key()

    def validate(self) -> None:
        super().validate()
        steps.check_spec(self.options.spec)
        try:
            self.template_fields
        except ValueError as exc:
            raise ConfigError(f"key 'text_template': {exc}") from None
        require_positive(self, "max_chars")
        inputs.check_text_keys(self.encoding, self.delimiter)

    @property
    def options(self) -> steps.TextOptions:
        spec = texts.TextModelSpec(self.model, self.model_path, self.vectors_path, self.max_chars, self.precision,
                                   self.engine, self.engine_cache)
        worker = TextJobOptions(self.batch_size, self.torch_threads, encoding=self.encoding,
                                block_rows=self.arrow_batch_size)
        return steps.TextOptions(spec, worker, self.num_partitions)

    @property
    def template_fields(self) -> list[tuple[str, str]]:
        """(literal, column) pieces of `text_template`; column is '' after the last literal."""
        pieces = [(lit, name or "") for lit, name, _, _ in string.Formatter().parse(self.text_template)]
        if self.text_template and not any(name for _, name in pieces):
            raise ValueError(f"{self.text_template!r} names no column; write e.g. '{{title}}. {{body}}'")
        return pieces


def read_items(spark, cfg: Config, stats: dict[str, float]):
    """DataFrame(id, source, text | path, status, error, _order, _where) of the texts to embed."""
    fmt = inputs.detect_format(cfg.input, cfg.input_format)
    if fmt == "images":
        raise ConfigError(f"key 'input': {cfg.input!r} holds images; use `sparkamp embed-images`")
    if fmt == "text-dir":
        return items.listed_files(spark, stats, cfg.input)  # every file: a non-UTF-8 one is a row
    columns = items.TextColumns(cfg.id_column, cfg.text_column, cfg.template_fields if cfg.text_template
                                else [], cfg.encoding, cfg.delimiter)
    return items.read_items(spark, cfg.input, fmt, columns)


def run(spark, cfg: Config, summary: RunSummary) -> None:
    publish.prepare_output(spark, cfg.output, cfg.mode)
    with summary.timed("read inputs"):
        found = read_items(spark, cfg, summary.stats)
    publishing.prepare_engine(summary, cfg.options.spec)
    counters = publishing.counters(spark, ("model_seconds", "truncated", "tokens", "known_tokens"))
    kinds = {kind: kind for kind in ("path", "text") if kind in found.columns}
    columns = steps.ItemColumns(source="source", id_name=cfg.id_column, **kinds)

    def embed(todo, partitions: int):
        options = steps.TextOptions(cfg.options.spec, cfg.options.worker, partitions)
        return steps.embed_texts(todo, columns=columns, options=options, counters=counters)
    reuse = incremental.Reuse(lambda: texts.load_text_model(cfg.options.spec).label, cfg.options.worker.max_bytes)
    publishing.embed_and_publish(spark, cfg, summary, found, embed, reuse)
    publishing.add_counter_stats(summary, counters)
    summary.stats["texts_per_second"] = round(summary.items_per_second("embed + write"), 2)
    tokens = summary.stats.get("tokens", 0)
    if cfg.model == texts.WORD_VECTORS and tokens:
        summary.stats["oov_rate"] = round(1 - summary.stats["known_tokens"] / tokens, 4)


if __name__ == "__main__":
    sys.exit(cli.main([NAME, *sys.argv[1:]]))
