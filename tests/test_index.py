"""FAISS building blocks without Spark: choosing, sharding, merging, exact top-k, integrity checks."""
from __future__ import annotations

import json
import os

import faiss
import numpy as np
import pytest

from index import factory, manifest, searcher, shards, store


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_choose_factory_follows_size_and_budget():
    assert factory.choose_factory(50_000, 384, factory.parse_size("4G")).factory == "IDMap2,Flat"
    ivf = factory.choose_factory(1_000_000, 384, factory.parse_size("4G"))
    assert ivf.factory == "IVF2048,Flat" and "fits" in ivf.reason
    pq = factory.choose_factory(1_000_000, 384, factory.parse_size("100M"))
    assert "PQ" in pq.factory and pq.factory.startswith("OPQ")
    big = factory.choose_factory(4_000_000, 384, factory.parse_size("4G"))  # merged: compressed to fit
    assert big.factory == "IVF4096,PQ128" and "budget of a merged index" in big.reason
    sharded = factory.choose_factory(4_000_000, 384, factory.parse_size("4G"), sharded=True)
    assert sharded.factory == "IVF4096,Flat" and "kept as shards each searched within it" in sharded.reason
    with pytest.raises(ValueError, match="raise memory_budget"):
        factory.choose_factory(10_000_000, 384, factory.parse_size("10M"))
    with pytest.raises(ValueError, match=r"\(PQ needs 256 rows to train\); raise memory_budget"):
        factory.choose_factory(200, 384, 1000)
    assert factory.parse_size("1.5G") == 3 * 2**29 and factory.parse_size("512m") == 512 * 2**20
    with pytest.raises(ValueError, match="not a size"):
        factory.parse_size("lots")


@pytest.fixture(scope="module")
def ivf_setup():
    data = clustered(4000, 32, 40, seed=0)
    ids = np.random.default_rng(1).choice(10**9, 4000, replace=False).astype(np.int64) * 7 + 3  # distinct; no 10^9 shuffle
    index = factory.build_empty("IVF32,Flat", 32, "ip")
    factory.train(index, data[:2000], seed=0)
    return data, ids, shards.serialize(index)


def test_sharded_in_memory_merge_equals_one_process(ivf_setup):
    data, ids, trained = ivf_setup
    parts = np.array_split(np.random.default_rng(2).permutation(len(ids)), 5)
    merged = shards.merge_in_memory(trained, (shards.fill(trained, [(ids[p], data[p])]) for p in parts))
    single = shards.fill(trained, [(ids, data)])
    for index in (merged, single):
        factory.set_search_params(index, 4, 0)
    d1, i1 = merged.search(data[:200], 10)
    d2, i2 = single.search(data[:200], 10)
    assert merged.ntotal == 4000 and np.allclose(d1, d2, atol=1e-6)
    assert [set(a) for a in i1] == [set(b) for b in i2]


def test_on_disk_merge_equals_in_memory(ivf_setup, tmp_path):
    data, ids, trained = ivf_setup
    paths = []
    for n, part in enumerate(np.array_split(np.arange(len(ids)), 3)):
        paths.append(str(tmp_path / shards.shard_name(n)))
        shards.write_index(shards.fill(trained, [(ids[part], data[part])]), paths[-1])
    on_disk = shards.merge_on_disk(trained, paths, str(tmp_path / "index.ivfdata"))
    in_memory = shards.merge_in_memory(trained, shards.read_shards(paths))
    for index in (on_disk, in_memory):
        factory.set_search_params(index, 8, 0)
    d1, i1 = on_disk.search(data[:100], 5)
    d2, i2 = in_memory.search(data[:100], 5)
    assert np.allclose(d1, d2) and [set(a) for a in i1] == [set(b) for b in i2]


def test_exact_topk_over_blocks_equals_brute_force(ivf_setup):
    data, ids, _ = ivf_setup
    queries = data[:50]
    blocks = [(ids[s], data[s]) for s in np.array_split(np.arange(len(ids)), 7)]
    scores, got = shards.exact_topk(queries, blocks, 10, "ip")
    sims = queries @ data.T
    expected = ids[np.argsort(-sims, axis=1)[:, :10]]
    assert (got == expected).all() and np.allclose(scores, np.sort(sims, axis=1)[:, ::-1][:, :10], atol=1e-5)
    few, few_ids = shards.exact_topk(queries, [(ids[:3], data[:3])], 5, "l2")
    assert (few_ids[:, 3:] == -1).all() and np.isinf(few[:, 3:]).all()


def published_flat(tmp_path, data, names):
    """A tiny index directory written the way build-index writes one (merge: none)."""
    import pandas as pd

    ids = np.arange(len(names), dtype=np.int64) * 10
    trained = shards.serialize(factory.build_empty("Flat", data.shape[1], "ip"))
    folder = str(tmp_path / "idx")
    digest = store.write_bytes(f"{folder}/shards/{shards.shard_name(0)}",
                               shards.serialize(shards.fill(trained, [(ids, data)])))
    pd.DataFrame({"faiss_id": ids, "id": names}).to_parquet(f"{folder}/{manifest.IDS}")
    meta = manifest.Manifest(model="m", dim=data.shape[1], metric="ip", factory="Flat",
                             ntotal=len(names), merge="none",
                             shards=[{"name": f"shards/{shards.shard_name(0)}", "sha256": digest,
                                      "ntotal": len(names)}])
    manifest.write(folder, meta)
    return folder


def test_loaded_index_maps_string_ids_and_rejects_tampering(tmp_path):
    data = clustered(30, 8, 3, seed=4)
    names = [f"doc/{i:03d}.txt" for i in range(30)]
    folder = published_flat(tmp_path, data, names)
    loaded = searcher.load(folder)
    scores, found = searcher.search(loaded, data[:3], 2)
    assert found[:, 0].tolist() == names[:3] and np.allclose(scores[:, 0], 1, atol=1e-5)

    shard = tmp_path / "idx" / "shards" / shards.shard_name(0)
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(manifest.IndexIntegrityError, match="sha256"):
        searcher.load(folder)

    folder = published_flat(tmp_path / "b", data, names)
    doc = json.loads((tmp_path / "b" / "idx" / "manifest.json").read_text())
    doc["dim"] = 16
    (tmp_path / "b" / "idx" / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(manifest.IndexIntegrityError, match="dim 8 .* dim 16"):
        searcher.load(folder)
    with pytest.raises(manifest.IndexIntegrityError, match="no manifest.json"):
        searcher.load(str(tmp_path))


def test_a_shard_is_hashed_once_per_version_and_again_once_changed(tmp_path, monkeypatch):
    """load_shard: a second open of the same file reads it without hashing it again (a worker opens a
    shard once per query block); a file rewritten since (new mtime) is hashed again and refused."""
    data = clustered(30, 8, 3, seed=4)
    folder = published_flat(tmp_path, data, [f"d{i}" for i in range(30)])
    name, digest = manifest.read(folder).shards[0]["name"], manifest.read(folder).shards[0]["sha256"]
    hashed, real = [], store.sha256
    monkeypatch.setattr(store, "sha256", lambda uri: hashed.append(uri) or real(uri))  # counts, then hashes
    for _ in range(3):
        assert searcher.load_shard(folder, name, digest).ntotal == 30
    assert len(hashed) == 1
    shard = tmp_path / "idx" / name
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF
    shard.write_bytes(bytes(raw))
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    with pytest.raises(manifest.IndexIntegrityError, match="sha256"):
        searcher.load_shard(folder, name, digest)
    assert len(hashed) == 2


def test_recall_at_k():
    exact = (np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, -np.inf]]), np.array([[1, 2, 3, 4], [5, 6, 7, -1]]))
    approx = (np.array([[0.9, 0.8, 0.5, 0.4], [0.7, 0.8, 0.9, 0.1]]), np.array([[1, 2, 9, 8], [7, 6, 5, 0]]))
    assert searcher.recall_at_k(exact, approx, k=4) == pytest.approx((0.5 + 1.0) / 2)


def test_recall_counts_tied_scores_as_right_answers():
    same = np.ones((1, 10), np.float32)
    # 20 identical vectors: exact search keeps ids 0-9, an index may return 10-19; all are exact answers
    assert searcher.recall_at_k((same, np.arange(10)[None]), (same, np.arange(10, 20)[None]), 10) == 1.0
    # a tie at the k-th place: 4 or 5 are as right as 3; 6 (a lower score) is not
    exact = (np.array([[0.9, 0.8, 0.7]]), np.array([[1, 2, 3]]))
    assert searcher.recall_at_k(exact, (np.array([[0.9, 0.8, 0.7]]), np.array([[1, 2, 4]])), 3) == 1.0
    assert searcher.recall_at_k(exact, (np.array([[0.9, 0.8, 0.7 + 2e-6]]), np.array([[1, 2, 5]])), 3) == 1.0
    lower = (np.array([[0.9, 0.8, 0.69]]), np.array([[1, 2, 6]]))
    assert searcher.recall_at_k(exact, lower, 3) == pytest.approx(2 / 3)
    # an approximate score better than the k-th (PQ error) does not make a wrong id right
    better = (np.array([[0.95, 0.9, 0.8]]), np.array([[7, 1, 2]]))
    assert searcher.recall_at_k(exact, better, 3) == pytest.approx(2 / 3)
    # l2 distances tie the same way; fewer than k vectors is recall@n
    l2 = (np.array([[0.0, 2.0, np.inf]]), np.array([[1, 2, -1]]))
    assert searcher.recall_at_k(l2, (np.array([[0.0, 2.0, np.inf]]), np.array([[1, 3, -1]])), 3) == 1.0
    assert searcher.recall_at_k(l2, (np.array([[0.0, 2.5, np.inf]]), np.array([[1, 3, -1]])), 3) == 0.5


@pytest.mark.parametrize("factory_string, points, what", [
    ("Flat", 0, "nothing to train"), ("HNSW32", 0, "nothing to train"), ("IVF64,Flat", 64, "64 IVF lists"),
    ("IVF64_HNSW32,Flat", 64, "64 IVF lists"), ("PQ16", 256, "PQ16x8 (256 centroids per sub-quantizer)"),
    ("PQ16x4", 16, "PQ16x4 (16 centroids per sub-quantizer)"), ("IVF64,PQ8", 256, "PQ8x8"),
    ("OPQ16,IVF64,PQ16", 256, "OPQ16 rotation"), ("OPQ8,IVF512,Flat", 512, "512 IVF lists")])
def test_training_need_of_each_factory_kind(factory_string, points, what):
    need = factory.training_need(factory.build_empty(factory_string, 64, "ip"))
    assert (need.points, need.advised) == (points, 39 * points) and what in need.what


def test_faiss_errors_are_factory_errors_with_faiss_reason():
    factory.check_parses("OPQ48,IVF4096,PQ48", "ip")  # needs a dim divisible by 48: fine at config time
    factory.check_parses("IVF64_HNSW32,Flat", "ip")
    with pytest.raises(factory.FactoryError, match="^'IVF,Flat': could not parse index string IVF,Flat$"):
        factory.check_parses("IVF,Flat", "ip")
    with pytest.raises(factory.FactoryError, match="'PQ7' for 32-d vectors: The dimension of the vector .d. "
                                                   "should be a multiple of the number of subquantizers"):
        factory.build_empty("PQ7", 32, "ip")
    index = factory.build_empty("IVF64,Flat", 32, "ip")
    with pytest.raises(factory.FactoryError, match=r"training on 29 vectors failed: Number of training points "
                                                   r"\(29\) should be at least as large as number of clusters \(64\)"):
        factory.train(index, np.ones((29, 32), np.float32), seed=0)
    assert factory.is_hnsw("HNSW32") and not factory.is_hnsw("IVF64_HNSW32,Flat")


def test_worker_cache_holds_one_version_per_key():
    from udfs import cache

    loads = []
    first = cache.get_latest(("test-index", "/x"), "v1", lambda: loads.append(1) or "index v1")
    again = cache.get_latest(("test-index", "/x"), "v1", lambda: loads.append(2) or "unused")
    rebuilt = cache.get_latest(("test-index", "/x"), "v2", lambda: loads.append(3) or "index v2")
    assert (first, again, rebuilt, loads) == ("index v1", "index v1", "index v2", [1, 3])
    assert cache.loaded_keys().count(("test-index", "/x")) == 1


@pytest.mark.parametrize("factory_string", ["IVF32,Flat", "IVF32,PQ4", "IDMap2,Flat"])
def test_merging_shard_files_into_the_first_gives_the_same_index_byte_for_byte(tmp_path, factory_string):
    """The tree merge's way (shard files memory-mapped, IVF lists appended to the first shard's) writes the same
    index file as merge_from into a copy of the trained empty index."""
    data = clustered(3000, 32, 30, seed=4)
    ids = np.arange(3000, dtype=np.int64) * 3 + 1
    index = factory.build_empty(factory_string, 32, "ip")
    factory.train(index, data, seed=0)
    trained, paths = shards.serialize(index), []
    for n, part in enumerate(np.array_split(np.random.default_rng(5).permutation(3000), 4)):
        paths.append(str(tmp_path / shards.shard_name(n)))
        shards.write_index(shards.fill(trained, [(ids[part], data[part])]), paths[-1])
    old = shards.merge_in_memory(trained, shards.read_shards(paths))
    new = shards.merge_files(faiss.read_index(paths[0]), paths[1:])
    assert new.ntotal == 3000 and shards.serialize(new) == shards.serialize(old)
