"""Live queries: the index model loaded once, an upload or a text embedded, and the index searched."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np

from index import searcher
from jobs.app.parquet import key_hashes
from jobs.core.config import ConfigError
from udfs import cnn, images, texts
from udfs.status import NO_KNOWN_WORDS, RowError


class IndexView:
    """A published index loaded once (searcher.load checks it against its manifest), with its string
    ids looked up by hash. faiss searches run concurrently (faiss CPU indexes are safe for concurrent
    searches); giving vectors back may build IVF's direct map, so that is done under a lock."""

    def __init__(self, folder: str, key: str):
        from index.manifest import IndexIntegrityError

        try:
            self.loaded = searcher.load(folder)
        except IndexIntegrityError as exc:
            raise ConfigError(f"key '{key}': {exc}") from None
        self.folder = folder
        hashes = key_hashes(self.loaded.names)
        self._order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[self._order]
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.loaded.manifest.model

    def faiss_ids(self, ids: list[str]) -> np.ndarray:
        """int64 faiss ids of string ids; -1 for an id the index does not hold."""
        wanted = key_hashes(ids)
        at = np.clip(np.searchsorted(self._hashes, wanted), 0, max(len(self._hashes) - 1, 0))
        out = np.full(len(ids), -1, np.int64)
        for row, (pos, item_id) in enumerate(zip(at, ids)):
            while pos < len(self._hashes) and self._hashes[pos] == wanted[row]:
                if self.loaded.names[self._order[pos]] == item_id:
                    out[row] = self.loaded.sorted_ids[self._order[pos]]
                    break
                pos += 1
        return out

    def vectors_of(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """([n, dim] stored vectors, bool[n] found) of string ids (PQ indexes give approximations)."""
        faiss_ids = self.faiss_ids(ids)
        with self._lock:
            vectors = searcher.vectors_by_id(self.loaded, faiss_ids)
        return vectors, faiss_ids >= 0

    def search(self, vectors: np.ndarray, k: int, exclude: list[str | None] | None = None) -> list[list[dict]]:
        """Per query [n, dim]: its k best as {rank (1-based), id, score}, the query's own id left out."""
        exclude = exclude or [None] * len(vectors)
        extra = 1 if any(exclude) else 0
        scores, names = searcher.search(self.loaded, vectors, min(k + extra, self.loaded.manifest.ntotal))
        out = []
        for row, own in enumerate(exclude):
            kept = [(n, float(s)) for n, s in zip(names[row], scores[row]) if n is not None and n != own][:k]
            out.append([{"rank": r, "id": n, "score": s} for r, (n, s) in enumerate(kept, 1)])
        return out


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_pixels: int
    max_text_chars: int


class QueryEngine:
    """The index's own model (named by its manifest), loaded once, embedding one query per call.

    Decoding runs in the request's thread. A CNN forward pass in eval mode changes no state, so image
    queries run side by side, at most `slots` at once (cores / torch threads: more would only compete
    for the cores); a text encoder's tokenizer is not thread-safe, so text queries take turns."""

    def __init__(self, view: IndexView, limits: UploadLimits, slots: int = 1):
        self.view, self.limits = view, limits
        self.kind, self.model = load_model(view.model)
        self._lock = threading.Lock()
        layered = self.kind == "image" and bool(self.model.spec.layer)  # its hook keeps one capture at a time
        self._slots = threading.BoundedSemaphore(1 if layered else max(1, slots))

    def embed_image(self, data: bytes) -> tuple[np.ndarray, float]:
        """([1, dim] embedding, milliseconds) of raw image bytes; RowError for a bad or too-large image."""
        start = time.perf_counter()
        if self.kind != "image":
            raise RowError("wrong_kind", f"this index holds {self.view.model} text embeddings; "
                                         "search it with text")
        prep = dataclasses.replace(self.model.prep, max_bytes=self.limits.max_bytes, max_pixels=self.limits.max_pixels)
        pixels = images.load_pixels(data, prep)
        with self._slots:
            vector = cnn.embed_batch(self.model, np.array(pixels[None]))  # writable: torch wants one
        return vector, (time.perf_counter() - start) * 1000

    def embed_text(self, text: str) -> tuple[np.ndarray, float]:
        """([1, dim] embedding, milliseconds) of a query text; RowError for an empty or unknown one."""
        start = time.perf_counter()
        if self.kind != "text":
            raise RowError("wrong_kind", f"this index holds {self.view.model} image embeddings; "
                                         "search it with an image")
        embedded = embed_one(self.model, text, self.limits.max_text_chars, self._lock)
        return embedded, (time.perf_counter() - start) * 1000

    def search(self, vector: np.ndarray, k: int, exclude: str | None = None) -> tuple[list[dict], float]:
        start = time.perf_counter()
        found = self.view.search(vector, k, [exclude])[0]
        return found, (time.perf_counter() - start) * 1000


def embed_one(model: texts.TextModel, text: str, max_chars: int, lock: threading.Lock) -> np.ndarray:
    """[1, dim] embedding of one text; RowError when it is empty, too long or has no known word."""
    if len(text) > max_chars:
        raise RowError("too_long", f"the text has {len(text)} characters; the limit is max_text_chars = "
                                   f"{max_chars} (shorten it, or start the server with a larger limit)")
    cleaned, _ = texts.clean_text(text, max_chars)
    with lock:
        batch = texts.embed_texts(model, [cleaned], 32)
    if batch.known_tokens[0] == 0:
        raise RowError(NO_KNOWN_WORDS, f"no word of the text is known to {model.label}")
    return batch.embeddings


def load_model(label: str) -> tuple[str, object]:
    """("image", ImageModel) or ("text", TextModel) rebuilt from an index's `model` label."""
    spec = cnn.spec_from_label(label)
    try:
        cnn.check_spec(spec)
        return "image", cnn.load_image_model(spec)
    except ValueError:
        pass
    text_spec = texts.spec_from_label(label)
    try:
        texts.check_spec(text_spec)
    except ValueError:
        raise ConfigError(f"key 'index': its model {label!r} cannot be rebuilt from its name (packaged "
                          "models can), so live queries cannot be embedded") from None
    return "text", texts.load_text_model(text_spec)
