"""Text cleaning and embedding with the packaged models, without Spark."""
from __future__ import annotations

import numpy as np
import pytest

from udfs import texts
from udfs.status import DECODE_ERROR, EMPTY, RowError


@pytest.fixture(scope="module")
def minilm():
    return texts.load_text_model(texts.TextModelSpec())


@pytest.fixture(scope="module")
def glove():
    return texts.load_text_model(texts.TextModelSpec(texts.WORD_VECTORS))


@pytest.mark.parametrize("value, status", [(None, EMPTY), ("", EMPTY), ("  \n\t", EMPTY),
                                           (b"caf\xe9 au lait", DECODE_ERROR)])
def test_unusable_texts_get_a_status(value, status):
    with pytest.raises(RowError) as err:
        texts.clean_text(value, 100)
    assert err.value.status == status and err.value.message


def test_clean_text_decodes_and_cuts():
    assert texts.clean_text("café ☕ مرحبا".encode(), 100) == ("café ☕ مرحبا", False)
    assert texts.clean_text("x" * 50, 10) == ("x" * 10, True)


def cosine_ranks(model, query: str, labels: list[str]) -> list[str]:
    batch = texts.embed_texts(model, [query, *labels], batch_size=4)
    scores = batch.embeddings[1:] @ batch.embeddings[0]
    return [labels[i] for i in np.argsort(-scores)]


@pytest.mark.parametrize("model_name", ["minilm", "glove"])
def test_football_is_nearer_sports_than_law(model_name, request):
    model = request.getfixturevalue(model_name)
    ranked = cosine_ranks(model, "The striker scored twice as the home team won the football match",
                          ["law", "sports", "cooking"])
    assert ranked[0] == "sports"
    ranked = cosine_ranks(model, "The judge ruled that the contract violated the statute",
                          ["law", "sports", "cooking"])
    assert ranked[0] == "law"


def test_sentence_embeddings_are_normalised_and_order_independent(minilm):
    docs = ["short", "a somewhat longer sentence about databases and indexes", "mid length text here"]
    forward = texts.embed_texts(minilm, docs, batch_size=2)
    backward = texts.embed_texts(minilm, docs[::-1], batch_size=1)
    assert forward.embeddings.shape == (3, 384)
    assert np.allclose(np.linalg.norm(forward.embeddings, axis=1), 1, atol=1e-5)
    assert np.allclose(forward.embeddings, backward.embeddings[::-1], atol=1e-4)  # padding-free pooling


def test_truncation_is_counted(minilm):
    batch = texts.embed_texts(minilm, ["word " * 400, "short text"], batch_size=2)
    assert batch.truncated.tolist() == [True, False] and batch.tokens[0] > minilm.max_tokens


def test_word_vectors_report_unknown_words(glove):
    batch = texts.embed_texts(glove, ["the cat sat", "qwxzv zzqx", "the qwxzv"], batch_size=8)
    assert batch.tokens.tolist() == [3, 2, 2] and batch.known_tokens.tolist() == [3, 0, 1]
    assert not batch.embeddings[1].any()
    assert glove.dim == 50 and glove.label == "glove-6b-50d"


def test_word2vec_text_file_and_glove_text_file(tmp_path):
    w2v = tmp_path / "tiny.vec"
    w2v.write_text("3 2\nking 1 0\nqueen 0.9 0.1\napple 0 1\n")
    glove_txt = tmp_path / "tiny.txt"
    glove_txt.write_text("king 1 0\nqueen 0.9 0.1\napple 0 1\n")
    for path in (w2v, glove_txt):
        model = texts.load_text_model(texts.TextModelSpec(texts.WORD_VECTORS, vectors_path=str(path)))
        batch = texts.embed_texts(model, ["king", "queen", "apple"], batch_size=8)
        sims = batch.embeddings @ batch.embeddings[0]
        assert sims[1] > 0.9 > sims[2] and model.label == f"word-vectors:{path.name}"


def test_unknown_model_and_bad_dirs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown text model 'gpt-9'"):
        texts.check_spec(texts.TextModelSpec("gpt-9"))
    with pytest.raises(ValueError, match="not a Sentence-Transformers directory"):
        texts.check_spec(texts.TextModelSpec("mine", model_path=str(tmp_path)))
