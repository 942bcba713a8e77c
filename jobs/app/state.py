"""What the app loads once per server process: the index and its model, the tables, the maps, the playground."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

from jobs.app import atlas
from jobs.app.apply import ApplyOptions, ApplyRunner
from jobs.app.compare import Comparison
from jobs.app.corpus import Corpus, CorpusFiles
from jobs.app.engine import IndexView, QueryEngine, UploadLimits
from jobs.app.parquet import ParquetTable
from jobs.app.playground import Playground, PlaygroundOptions
from jobs.core.config import ConfigError
from udfs import heads, texts


@dataclass(frozen=True)
class AppOptions:
    index: str
    compare_index: str = ""
    files: CorpusFiles = CorpusFiles()
    label_embeddings: str = ""   # the text table the playground maps and "apply to the table" labels
    label_set: str = ""
    labels_head: str = ""
    limits: UploadLimits = UploadLimits(20 * 2**20, 64_000_000, 10_000)
    k: int = 20
    thumb_size: int = 128
    map_sample: int = 2000
    compare_queries: int = 200
    seed: int = 0
    zmap_vocab_size: int = 20_000
    torch_threads: int = 1             # per model call; 0 = all cores
    apply: ApplyOptions | None = None  # where "apply to the table" writes (its embeddings are set here)


@dataclass
class AppState:
    options: AppOptions
    view: IndexView
    engine: QueryEngine
    corpus: Corpus
    index_map: atlas.Atlas
    comparison: Comparison | None = None
    playground: Playground | None = None
    label_map: atlas.Atlas | None = None
    runner: ApplyRunner | None = None
    started: float = field(default_factory=time.time)


def load(opts: AppOptions) -> AppState:
    """Everything, once; ConfigError (naming the key) for an input that cannot serve."""
    import faiss
    import torch

    # requests run side by side: OpenMP teams inside each would compete for the cores and spin-wait (a
    # text query took 25 ms with 1 torch thread and 700 ms with 2 while other work shared the 2 cores)
    faiss.omp_set_num_threads(1)
    cores = os.cpu_count() or 1
    threads = opts.torch_threads or cores
    torch.set_num_threads(threads)
    view = IndexView(opts.index, "index")
    engine = QueryEngine(view, opts.limits, slots=cores // threads)
    corpus = Corpus(opts.files, view.loaded.names)
    state = AppState(opts, view, engine, corpus, atlas.from_index(view, opts.map_sample, opts.seed, corpus.gold))
    if opts.compare_index:
        state.comparison = Comparison([view, IndexView(opts.compare_index, "compare_index")], corpus)
    table = opts.label_embeddings or (opts.files.embeddings if engine.kind == "text" else "")
    if engine.kind == "text" or opts.label_set or opts.labels_head or table:
        label_table = ParquetTable(table, "label_embeddings") if table else None
        encoder = _encoder(opts, engine, label_table)
        state.playground = Playground(PlaygroundOptions(encoder, opts.label_set, opts.labels_head,
                                                        opts.zmap_vocab_size, opts.limits.max_text_chars))
        if label_table is not None and _model_of(label_table) == encoder:
            state.label_map = (state.index_map if table == opts.files.embeddings and engine.kind == "text" else
                               atlas.from_table(label_table, opts.map_sample, opts.seed, corpus.gold))
        if label_table is not None and opts.apply is not None:
            state.runner = ApplyRunner(dataclasses.replace(opts.apply, embeddings=table))
    return state


def _encoder(opts: AppOptions, engine: QueryEngine, table: ParquetTable | None) -> str:
    """The playground's text model: the fitted head's, else the label table's, else a text index's,
    else the packaged default; a head and a table of different models is a config error."""
    head_model = ""
    if opts.labels_head:
        try:
            params = heads.read_manifest(opts.labels_head)
        except ValueError as exc:
            raise ConfigError(f"key 'labels_head': {exc}") from None
        head_model = params["params"].get("base_model") or params["embedding_model"]
    table_model = _model_of(table) if table is not None else ""
    if head_model and table_model and head_model != table_model:
        raise ConfigError(f"key 'labels_head': fitted on {head_model!r} embeddings, but label_embeddings "
                          f"holds {table_model!r}")
    index_model = engine.view.model if engine.kind == "text" else ""
    return head_model or table_model or index_model or texts.DEFAULT_TEXT_MODEL


def _model_of(table: ParquetTable) -> str:
    """The `model` of the first ok row (the jobs write one model per table)."""
    import pyarrow.compute as pc

    table.require("id", "embedding", "status", "model")
    for batch in table.scan(["model"], pc.field("status") == "ok"):
        if batch.num_rows:
            return str(batch.column(0)[0].as_py())
    raise ConfigError(f"key '{table.key}': {table.location!r} has no row with status ok")
