"""The mapInPandas shells without Spark: one model load per worker, one row out per row in."""
from __future__ import annotations

import pandas as pd

from tests.conftest import jpeg_bytes
from udfs import cache, cnn, embed_udfs, texts


def test_model_loads_once_per_worker_across_partitions(monkeypatch, tmp_path):
    loads = []
    real = cnn.load_image_model
    monkeypatch.setattr(cnn, "load_image_model", lambda spec: loads.append(spec) or real(spec))
    spec = cnn.ImageModelSpec(image_size=64)  # a cache key of its own for this test
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    # blocks of 3 rows, as Spark hands them here: one output frame per block
    embed = embed_udfs.image_embedder(spec, embed_udfs.ImageJobOptions(batch_size=2, block_rows=3), counters={})
    block = pd.DataFrame({"id": ["a", "missing", "c"], "source": ["s"] * 3,
                          "path": [str(tmp_path / "a.jpg"), str(tmp_path / "nope.jpg"), str(tmp_path / "a.jpg")]})
    outputs = [frame for _ in range(3) for frame in embed(iter([block, block]))]
    assert len(loads) == 1 and ("image", spec) in cache.loaded_keys()
    assert all(list(o.columns) == embed_udfs.COLUMNS and len(o) == 3 for o in outputs)
    assert outputs[0].status.tolist() == ["ok", "read_error", "ok"]
    assert outputs[0].model.iloc[0] == "efficientnet-lite0"


def test_text_block_keeps_row_order_and_counts(monkeypatch):
    class Acc:
        def __init__(self):
            self.value = 0

        def add(self, v):
            self.value += v

    counters = {name: Acc() for name in ("truncated", "tokens", "known_tokens", "model_seconds")}
    model = cache.get_model(("text", "glove-test"),
                            lambda: texts.load_text_model(texts.TextModelSpec(texts.WORD_VECTORS)))
    block = pd.DataFrame({"id": list("abcd"), "source": list("abcd"),
                          "text": ["the cat", None, "zzqx", "a dog"]})
    out = embed_udfs.embed_text_block(block, model, embed_udfs.TextJobOptions(max_bytes=10), counters)
    assert out.id.tolist() == list("abcd")
    assert out.status.tolist() == ["ok", "empty", "no_known_words", "ok"]
    assert counters["tokens"].value == 5 and counters["known_tokens"].value == 4
    assert out.content_hash.iloc[1] is None and len(out.content_hash.iloc[0]) == 64


def test_decoding_ahead_on_threads_gives_the_inline_rows(tmp_path):
    import numpy as np

    spec = cnn.ImageModelSpec(image_size=64)
    for i, size in enumerate([(80, 60), (60, 90), (64, 64), (120, 40), (50, 50)]):
        (tmp_path / f"{i}.jpg").write_bytes(jpeg_bytes(size))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    names = ["0.jpg", "bad.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    block = pd.DataFrame({"id": names, "source": ["s"] * 6, "path": [str(tmp_path / n) for n in names]})
    frames = {threads: next(embed_udfs.image_embedder(spec, embed_udfs.ImageJobOptions(
        batch_size=2, decode_threads=threads), counters={})(iter([block]))) for threads in (0, 2)}
    inline, ahead = frames[0], frames[2]
    assert inline.id.tolist() == ahead.id.tolist() == names
    assert inline.status.tolist() == ahead.status.tolist() == ["ok", "decode_error", "ok", "ok", "ok", "ok"]
    assert inline.content_hash.tolist() == ahead.content_hash.tolist()
    ok = inline.status == "ok"
    assert np.allclose(np.stack(inline.embedding[ok]), np.stack(ahead.embedding[ok]), atol=1e-6)
