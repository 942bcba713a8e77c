"""mapInPandas shells around the embedding batch functions: one model per worker, blocks in, rows out."""
from __future__ import annotations

import dataclasses
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from udfs import cache, cnn, files, images, texts
from udfs.batches import rebatch
from udfs.status import NO_KNOWN_WORDS, OK, RowError

# the embeddings table's columns, in order (jobs/tables/contracts.py holds the table's contract)
COLUMNS = ["id", "source", "content_hash", "model", "embedding", "status", "error"]
Frames = Iterator[pd.DataFrame]


@dataclass(frozen=True)
class ImageJobOptions:
    batch_size: int = 4
    max_pixels: int = 64_000_000
    max_bytes: int = 64 * 2**20
    decode_threads: int = 0
    torch_threads: int = 0
    block_rows: int = 256        # rows per block a worker embeds and hands back


@dataclass(frozen=True)
class TextJobOptions:
    batch_size: int = 8
    torch_threads: int = 0
    max_bytes: int = 64 * 2**20  # text files read by path
    encoding: str = "utf-8"      # of text files read by path and of binary text columns
    block_rows: int = 1024       # rows per block: the unit that is length-sorted


def _add(counters: dict[str, Any], name: str, value: float) -> None:
    """Worker-side statistics through Spark accumulators (a retried task may count twice)."""
    if name in counters:
        counters[name].add(value)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _frame(block: pd.DataFrame, label: str, hashes: list, vectors: list, statuses: list,
           errors: list) -> pd.DataFrame:
    return pd.DataFrame({"id": block["id"].to_numpy(), "source": block["source"].to_numpy(),
                         "content_hash": hashes, "model": label, "embedding": vectors,
                         "status": statuses, "error": errors}, columns=COLUMNS)


def with_preset_rows(block: pd.DataFrame, label: str,
                     embed: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """`embed(rows)` for the rows of `block` without a `status`; the rows that came with one (set by the
    reader: malformed, decode_error, missing_id, duplicate_id, ...) become rows with it, not embedded."""
    if "status" not in block or block["status"].isna().all():
        return embed(block)
    preset = block["status"].notna().to_numpy()
    done = block[preset]
    none = [None] * len(done)
    rows = _frame(done, label, none, none, done["status"].tolist(), done["error"].tolist())
    return pd.concat([embed(block[~preset]), rows], ignore_index=True)


def worker_image_model(spec: cnn.ImageModelSpec, opts: ImageJobOptions) -> tuple[cnn.ImageModel, images.Preprocess]:
    """(the model, loaded once per Python worker, its preprocessing with the options' limits), torch set to
    the task's threads: what a partition function calls first."""
    cache.set_torch_threads(opts.torch_threads)
    model = cache.get_model(("image", spec), lambda: cnn.load_image_model(spec))
    return model, dataclasses.replace(model.prep, max_pixels=opts.max_pixels, max_bytes=opts.max_bytes)


def worker_text_model(spec: texts.TextModelSpec, opts: TextJobOptions) -> texts.TextModel:
    """The text model, loaded once per Python worker, torch set to the task's threads."""
    cache.set_torch_threads(opts.torch_threads)
    return cache.get_model(("text", spec), lambda: texts.load_text_model(spec))


def image_embedder(spec: cnn.ImageModelSpec, opts: ImageJobOptions,
                   counters: dict[str, Any]) -> Callable[[Frames], Frames]:
    """A mapInPandas function: blocks of (id, source, path | content) → embeddings rows."""
    def embed_partition(blocks: Frames) -> Frames:
        model, prep = worker_image_model(spec, opts)
        # 0 threads = decode inline (pool None): no thread contending with the model for the core
        with ThreadPoolExecutor(opts.decode_threads) if opts.decode_threads else nullcontext() as pool:
            for block in rebatch(blocks, opts.block_rows):
                yield with_preset_rows(block, model.label, lambda rows: embed_image_block(
                    rows, model, prep, pool, opts.batch_size, counters))
    return embed_partition


def _load_image(path: str | None, content: Any, prep: images.Preprocess) -> tuple:
    """(content_hash, pixels, status, error, seconds) for one row; never raises on bad data."""
    start, digest = time.perf_counter(), None
    try:
        data = files.read_file(path, prep.max_bytes) if path is not None else bytes(content or b"")
        digest = _sha256(data)
        if path is not None:  # a listed file may be anything; a bytes column is images by declaration
            files.require_image(path, data)
        return digest, images.load_pixels(data, prep), OK, None, time.perf_counter() - start
    except RowError as err:
        return digest, None, err.status, err.message, time.perf_counter() - start


class _Done:
    """An already computed result, shaped like a Future's."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


def embed_image_block(block: pd.DataFrame, model: cnn.ImageModel, prep: images.Preprocess,
                      pool: ThreadPoolExecutor | None, batch_size: int, counters: dict[str, Any]) -> pd.DataFrame:
    """One output row per input row. With a `pool`, the next batch decodes there while the model embeds
    this one (hides slow storage reads); with None, decoding is inline, which is faster when the
    task's core is the limit (a decode thread only contends with the model for it).
    """
    paths = block["path"].tolist() if "path" in block else [None] * len(block)
    contents = block["content"].tolist() if "content" in block else [None] * len(block)
    starts = range(0, len(paths), batch_size)

    def submit(start: int) -> list:
        if pool is None:
            return [_Done(_load_image(p, c, prep))
                    for p, c in zip(paths[start:start + batch_size], contents[start:start + batch_size])]
        return [pool.submit(_load_image, p, c, prep)
                for p, c in zip(paths[start:start + batch_size], contents[start:start + batch_size])]

    hashes, vectors, statuses, errors = [], [], [], []
    model_seconds = decode_seconds = 0.0
    ahead = submit(0)
    for start in starts:
        current, ahead = ahead, submit(start + batch_size) if start + batch_size < len(paths) else []
        loaded = [f.result() for f in current]
        ok = [row for row, item in enumerate(loaded) if item[2] == OK]
        batch_vectors: list = [None] * len(loaded)
        if ok:
            tick = time.perf_counter()
            embedded = cnn.embed_batch(model, np.stack([loaded[row][1] for row in ok]))
            model_seconds += time.perf_counter() - tick
            for row, vector in zip(ok, embedded):
                batch_vectors[row] = vector
        for item, vector in zip(loaded, batch_vectors):
            hashes.append(item[0])
            statuses.append(item[2])
            errors.append(item[3])
            decode_seconds += item[4]
            vectors.append(vector)
    _add(counters, "decode_seconds", decode_seconds)
    _add(counters, "model_seconds", model_seconds)
    return _frame(block, model.label, hashes, vectors, statuses, errors)


def text_embedder(spec: texts.TextModelSpec, opts: TextJobOptions,
                  counters: dict[str, Any]) -> Callable[[Frames], Frames]:
    """A mapInPandas function: blocks of (id, source, text | content) → embeddings rows."""
    def embed_partition(blocks: Frames) -> Frames:
        model = worker_text_model(spec, opts)
        for block in rebatch(blocks, opts.block_rows):
            yield with_preset_rows(block, model.label,
                                   lambda rows: embed_text_block(rows, model, opts, counters))
    return embed_partition


def embed_text_block(block: pd.DataFrame, model: texts.TextModel, opts: TextJobOptions,
                     counters: dict[str, Any]) -> pd.DataFrame:
    """One output row per input row: (id, source, text | path) → embeddings, or a status."""
    n = len(block)
    hashes: list = [None] * n
    vectors: list = [None] * n
    statuses, errors = [OK] * n, [None] * n
    values = block["text"].tolist() if "text" in block else [None] * n
    for row, path in enumerate(block["path"].tolist() if "path" in block else []):
        try:
            values[row] = files.read_file(path, opts.max_bytes)
        except RowError as err:
            statuses[row], errors[row] = err.status, err.message
    cleaned, rows, cut = [], [], []
    for row, value in enumerate(values):
        if statuses[row] != OK:
            continue
        if isinstance(value, (bytes, bytearray)):
            hashes[row] = _sha256(bytes(value))
        elif isinstance(value, str):
            hashes[row] = _sha256(value.encode("utf-8", "surrogatepass"))
        try:
            text, was_cut = texts.clean_text(value, model.spec.max_chars, opts.encoding)
        except RowError as err:
            statuses[row], errors[row] = err.status, err.message
            continue
        cleaned.append(text)
        rows.append(row)
        cut.append(was_cut)
    if cleaned:
        tick = time.perf_counter()
        batch = texts.embed_texts(model, cleaned, opts.batch_size)
        _add(counters, "model_seconds", time.perf_counter() - tick)
        for i, row in enumerate(rows):
            if batch.known_tokens[i] == 0:
                statuses[row] = NO_KNOWN_WORDS
                errors[row] = f"none of its {int(batch.tokens[i])} tokens is known to {model.label}"
            else:
                vectors[row] = batch.embeddings[i]
        _add(counters, "truncated", int(np.count_nonzero(batch.truncated | np.array(cut))))
        _add(counters, "tokens", int(batch.tokens.sum()))
        _add(counters, "known_tokens", int(batch.known_tokens.sum()))
    return _frame(block, model.label, hashes, vectors, statuses, errors)
