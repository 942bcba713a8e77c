"""build-index and search through the CLI on a real local Spark session."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from index import factory, searcher, shards, store
from jobs import cli
from tests.conftest import common_args
from tests.test_index import clustered

DIM = 32


def write_embeddings(folder, vectors: np.ndarray, names: list[str], model: str = "synthetic-32",
                     files: tuple[int, ...] = (1,)) -> str:
    """An embeddings table as Parquet files of skewed sizes (`files` gives their shares)."""
    frame = pd.DataFrame({"id": names, "source": names, "content_hash": names, "model": model,
                          "embedding": list(vectors), "status": "ok", "error": None})
    folder.mkdir(parents=True)
    bounds = np.cumsum([0, *files]) * len(frame) // sum(files)
    for n, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        frame.iloc[lo:hi].to_parquet(folder / f"part-{n}.parquet")
    return str(folder)


@pytest.fixture(scope="module")
def corpus():
    vectors = clustered(3000, DIM, 30, seed=7)
    rng = np.random.default_rng(3)
    names = [f"item-{rng.integers(1 << 40):x}/{i}" for i in range(len(vectors))]  # non-numeric ids
    return vectors, names


def build(tmp_path, embeddings: str, out: str, *extra: str) -> int:
    return cli.main(["build-index", "--embeddings", embeddings, "--output", out, *common_args(tmp_path),
                     *extra])


def search_rows(spark, tmp_path, index: str, queries: str, *extra: str) -> pd.DataFrame:
    out = str(tmp_path / f"nb-{abs(hash((index, extra)))}")
    assert cli.main(["search", "--index", index, "--queries", queries, "--output", out,
                     *common_args(tmp_path), *extra]) == 0
    return spark.read.parquet(out).toPandas().sort_values(["query_id", "rank"])


def test_sharded_ivf_equals_one_process_for_any_partitioning(spark, tmp_path, corpus):
    vectors, names = corpus
    order = np.random.default_rng(5).permutation(len(names))  # shuffled rows, skewed files
    skewed = write_embeddings(tmp_path / "skewed", vectors[order], [names[i] for i in order],
                              files=(20, 3, 1, 1))
    plain = write_embeddings(tmp_path / "plain", vectors, names)
    for source, out, shard_count in ((skewed, "idx-a", "5"), (plain, "idx-b", "3")):
        assert build(tmp_path, source, str(tmp_path / out), "--factory", "IVF32,Flat",
                     "--set", f"num_shards={shard_count}", "--set", "nprobe=4") == 0
    a, b = searcher.load(str(tmp_path / "idx-a")), searcher.load(str(tmp_path / "idx-b"))
    assert a.manifest.ntotal == 3000 and len(a.manifest.shards) == 5 and a.manifest.nprobe == 4
    single = shards.fill(store.read_bytes(str(tmp_path / "idx-a" / "trained.faiss")),
                         [(a.sorted_ids, vectors[[names.index(n) for n in a.names]])])
    factory.set_search_params(single, 4, 0)
    queries = vectors[:300]
    d_a, i_a = searcher.search(a, queries, 10)
    d_b, i_b = searcher.search(b, queries, 10)
    d_s, i_s = single.search(queries, 10)
    assert np.allclose(d_a, d_s, atol=1e-6) and np.allclose(d_a, d_b, atol=1e-6)
    assert [set(r) for r in i_a] == [set(r) for r in searcher.names_of(a, i_s)] == [set(r) for r in i_b]
    assert a.manifest.recall_at_10 > 0.8


def test_flat_search_job_is_exact_and_ondisk_equals_memory(spark, tmp_path, corpus):
    vectors, names = corpus
    source = write_embeddings(tmp_path / "emb", vectors[:1000], names[:1000])
    assert build(tmp_path, source, str(tmp_path / "flat")) == 0  # auto: small → exact Flat
    meta = json.loads((tmp_path / "flat" / "manifest.json").read_text())
    assert meta["factory"] == "IDMap2,Flat" and meta["recall_at_10"] == 1.0 and meta["ntotal"] == 1000
    rows = search_rows(spark, tmp_path, str(tmp_path / "flat"), source, "--k", "5", "--exclude-self")
    assert len(rows) == 5000 and rows["rank"].tolist()[:5] == [1, 2, 3, 4, 5]
    sims = vectors[:1000] @ vectors[:1000].T
    np.fill_diagonal(sims, -np.inf)
    expected = {names[q]: [names[j] for j in np.argsort(-sims[q])[:5]] for q in range(1000)}
    got = rows.groupby("query_id").neighbor_id.apply(list).to_dict()
    assert got == expected

    for merge in ("memory", "ondisk", "none"):
        assert build(tmp_path, source, str(tmp_path / merge), "--factory", "IVF16,Flat",
                     "--set", f"merge={merge}", "--set", "nprobe=3") == 0
    results = {m: search_rows(spark, tmp_path, str(tmp_path / m), source, "--k", "5")
               for m in ("memory", "ondisk", "none")}
    assert (tmp_path / "ondisk" / "index.ivfdata").exists()
    for merge in ("ondisk", "none"):
        assert np.allclose(results[merge].score.to_numpy(), results["memory"].score.to_numpy(), atol=1e-6)
        assert (results[merge].groupby("query_id").neighbor_id.apply(set).to_dict()
                == results["memory"].groupby("query_id").neighbor_id.apply(set).to_dict())


def test_refusals_empty_table_min_recall_model_mismatch_tampering(spark, tmp_path, corpus):
    vectors, names = corpus
    import pyarrow as pa
    import pyarrow.parquet as pq

    failed = pa.table({"id": ["a"], "source": ["a"], "content_hash": pa.array([None], pa.string()),
                       "model": ["m"], "embedding": pa.array([None], pa.list_(pa.float32())),
                       "status": ["decode_error"], "error": ["bad"]})
    (tmp_path / "failed").mkdir()
    pq.write_table(failed, tmp_path / "failed" / "part-0.parquet")
    assert build(tmp_path, str(tmp_path / "failed"), str(tmp_path / "never")) == 2
    assert not (tmp_path / "never").exists()

    repeated = write_embeddings(tmp_path / "repeated", vectors[:50], names[:49] + names[:1])
    assert build(tmp_path, repeated, str(tmp_path / "never")) == 2

    source = write_embeddings(tmp_path / "emb", vectors, names)
    assert build(tmp_path, source, str(tmp_path / "poor"), "--factory", "IVF64,Flat",
                 "--set", "nprobe=1", "--set", "min_recall=0.99") == 1
    assert not (tmp_path / "poor").exists()
    assert not list((tmp_path / "_sparkamp_staging").glob("poor-*"))

    assert build(tmp_path, source, str(tmp_path / "idx"), "--set", "merge=none") == 0
    other = write_embeddings(tmp_path / "other", vectors[:10], names[:10], model="another-model")
    code = cli.main(["search", "--index", str(tmp_path / "idx"), "--queries", other, "--output",
                     str(tmp_path / "nb"), *common_args(tmp_path)])
    assert code == 2 and not (tmp_path / "nb").exists()

    shard = next((tmp_path / "idx" / "shards").glob("shard-*.faiss"))
    shard.write_bytes(shard.read_bytes()[:-16] + bytes(16))
    code = cli.main(["search", "--index", str(tmp_path / "idx"), "--queries", source, "--output",
                     str(tmp_path / "nb"), *common_args(tmp_path)])
    assert code == 2 and not (tmp_path / "nb").exists()


def test_resume_reuses_finished_shards(spark, tmp_path, corpus):
    vectors, names = corpus
    source = write_embeddings(tmp_path / "emb", vectors[:2000], names[:2000])
    args = ["--factory", "IVF16,Flat", "--set", "num_shards=4", "--set", "resume=true",
            "--set", "merge=none"]
    # nprobe 1 cannot reach recall 1.0: this build fails after writing its shards
    assert build(tmp_path, source, str(tmp_path / "idx"), *args, "--set", "nprobe=1",
                 "--set", "min_recall=1.0") == 1
    (work,) = (tmp_path / "_sparkamp_staging").glob("idx-build-*")
    markers = {p.name: p.stat().st_mtime_ns for p in (work / "shards").glob("*.sha256")}
    assert len(markers) == 4
    assert build(tmp_path, source, str(tmp_path / "idx"), *args, "--set", "min_recall=0.5") == 0
    published = tmp_path / "idx" / "shards"
    assert {p.name: p.stat().st_mtime_ns for p in published.glob("*.sha256")} == markers  # reused
    assert searcher.load(str(tmp_path / "idx")).manifest.ntotal == 2000
    assert not work.exists()  # published: the work folder became the index
