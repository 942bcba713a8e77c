"""build-index's sharded index: shard_bytes, merge auto and its reason, the tree merge on executors, recall
measured from each shard's partial top-k, the keys' refusals."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from index import factory, recall, searcher, shards, store
from jobs import cli
from jobs.indexing import build as build_step
from jobs.indexing import partitions, training
from jobs.indexing.options import IndexOptions
from jobs.tables import samples
from tests.test_degenerate_tables import last_run
from tests.test_index import clustered
from tests.test_index_jobs import build, write_embeddings

DIM, ROWS = 32, 3000  # 3000 x 32 float32 = 375 KiB of vectors
SHARDED = ("--set", "shard_bytes=40K", "--set", "memory_budget=200K")  # the ~400 KiB index exceeds the budget


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded") / "emb"
    return write_embeddings(folder, clustered(ROWS, DIM, 30, seed=11), [f"doc-{i:05d}" for i in range(ROWS)],
                            files=(3, 2, 1))


class Said(logging.Handler):
    """What the jobs and their summaries log (INFO and above) while attached: capsys misses it once an
    earlier test's CLI handler holds a closed stream."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.loggers, self.messages = [logging.getLogger(n) for n in ("jobs", "sparkamp")], []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "Said":
        for logger in self.loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for logger in self.loggers:
            logger.removeHandler(self)

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


def manifest_of(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_shard_bytes_sizes_the_shards_and_merge_auto_keeps_them(spark, tmp_path, source):
    with Said() as said:
        assert build(tmp_path, source, str(tmp_path / "idx"), "--factory", "IVF16,Flat", *SHARDED) == 0
    meta = manifest_of(tmp_path / "idx")
    assert meta["merge"] == "none" and meta["config"]["merge"] == "auto"
    assert meta["merge_reason"] == ("the index (~400 KiB) exceeds memory_budget (200 KiB): kept as 10 shards of "
                                    "at most shard_bytes (40 KiB) of vectors")
    assert len(meta["shards"]) == 10  # ceil(384,000 / 40,960)
    assert sum(s["ntotal"] for s in meta["shards"]) == ROWS == meta["ntotal"]
    for shard in meta["shards"]:
        path = tmp_path / "idx" / shard["name"]
        assert shard["bytes"] == path.stat().st_size and shard["sha256"] == store.sha256(str(path))
        assert shard["ntotal"] * DIM * 4 <= 1.3 * 40 * 1024  # hash-partitioned: about shard_bytes at most
        assert 0 <= shard["min_id"] <= shard["max_id"]
    assert not (tmp_path / "idx" / "index.faiss").exists()
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["ids.parquet", "manifest.json", "shards",
                                                                    "trained.faiss"]  # no recall partials left
    assert "  merge                        none (the index (~400 KiB) exceeds" in said.text  # the job summary


def test_merge_auto_merges_an_index_within_memory_budget_on_an_executor(spark, tmp_path, source):
    with Said() as said:  # 10 shards of 40K, merged into one file by one executor task, moved into place
        assert build(tmp_path, source, str(tmp_path / "idx"), "--factory", "IVF16,Flat", "--set", "shard_bytes=40K",
                     "--set", "memory_budget=500K") == 0
    meta = manifest_of(tmp_path / "idx")
    assert meta["merge"] == "memory" and len(meta["shards"]) == 10  # the shards added, merged away
    assert meta["merge_reason"] == "the index (~400 KiB) fits memory_budget (500 KiB): merged into one file"
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["ids.parquet", "index.faiss",
                                                                    "manifest.json", "trained.faiss"]
    assert meta["files"]["index.faiss"] == store.sha256(str(tmp_path / "idx" / "index.faiss"))
    assert "tree merge" in meta["stage_seconds"] and "merge                        memory (the index" in said.text
    loaded = searcher.load(str(tmp_path / "idx"))
    assert len(loaded.parts) == 1 and loaded.parts[0].ntotal == ROWS and meta["recall_at_10"] >= 0.95


def test_factory_auto_keeps_ivf_flat_when_the_index_may_be_sharded(spark, tmp_path, source):
    with Said() as said:  # 3000 x (32 x 4 + 8) bytes exceed 200K: Flat would not fit one process, IVF,Flat shards
        assert build(tmp_path, source, str(tmp_path / "idx"), *SHARDED) == 0
    meta = manifest_of(tmp_path / "idx")
    assert meta["factory"] == "IVF64,Flat" and "kept as shards each searched within it" in meta["factory_reason"]
    assert meta["merge"] == "none" and meta["merge_reason"].startswith("the index (~406 KiB) exceeds memory_budget")
    assert meta["recall_at_10"] >= 0.95 and "IVF64,Flat (" in said.text
    forced = training.choose(IndexOptions(memory_budget="200K", merge="memory"), ROWS, DIM)  # one file: compress
    assert forced.factory == "IVF64,PQ32" and "budget of a merged index" in forced.reason
    incremental = training.choose(IndexOptions(memory_budget="200K", incremental=True), ROWS, DIM)
    assert incremental.factory == "IVF64,PQ32"  # an update needs a merged index


def test_tree_merge_on_executors_keeps_the_same_vectors(spark, tmp_path, source):
    args = ["--factory", "IVF16,Flat", *SHARDED, "--set", "nprobe=16"]
    assert build(tmp_path, source, str(tmp_path / "all"), *args) == 0
    assert build(tmp_path, source, str(tmp_path / "three"), *args, "--set", "shards_to_keep=3") == 0
    kept = manifest_of(tmp_path / "three")
    assert [s["name"] for s in kept["shards"]] == [f"merged/shard-0000{i}.faiss" for i in range(3)]
    assert [s["ntotal"] for s in kept["shards"]] == [
        sum(s["ntotal"] for s in manifest_of(tmp_path / "all")["shards"][lo:hi]) for lo, hi in ((0, 4), (4, 7), (7, 10))]
    assert not (tmp_path / "three" / "shards").exists()
    a, b = searcher.load(str(tmp_path / "all")), searcher.load(str(tmp_path / "three"))
    queries = clustered(200, DIM, 30, seed=12)
    (d_a, i_a), (d_b, i_b) = searcher.search(a, queries, 10), searcher.search(b, queries, 10)
    assert np.allclose(d_a, d_b, atol=1e-6) and [set(r) for r in i_a] == [set(r) for r in i_b]
    assert kept["recall_at_10"] == manifest_of(tmp_path / "all")["recall_at_10"] == 1.0


def test_the_tree_merge_refuses_a_shard_changed_after_it_was_written(spark, tmp_path):
    """Each merge task hashes its shards beside the merge (tree_merge: a thread) and fails before writing when
    one is not the file its writer hashed; the shards that are intact merge."""
    from jobs.indexing import tree_merge

    data, index = clustered(600, DIM, 6, seed=3), factory.build_empty("IVF4,Flat", DIM, "ip")
    factory.train(index, data, seed=0)
    trained, rows = shards.serialize(index), []
    for number, part in enumerate(np.array_split(np.arange(600), 4)):
        name = f"shards/{shards.shard_name(number)}"
        digest = store.write_index(str(tmp_path / name), shards.fill(trained, [(part.astype(np.int64), data[part])]))
        rows.append({"shard": name, "sha256": digest, "ntotal": len(part), "bytes": 0, "min_id": int(part[0]),
                     "max_id": int(part[-1])})
    merged = tree_merge.merge_groups(spark, str(tmp_path), rows, 2)
    assert [m["ntotal"] for m in merged] == [300, 300]
    changed = tmp_path / rows[3]["shard"]
    changed.write_bytes(changed.read_bytes()[:-8] + bytes(8))
    with pytest.raises(Exception, match=r"shard-00003.faiss changed after it was written \(sha256 mismatch\)"):
        tree_merge.merge_groups(spark, str(tmp_path / "again"), [{**r, "shard": "../" + r["shard"]} for r in rows], 1)
    assert not (tmp_path / "again" / tree_merge.MERGED).exists()


@pytest.mark.parametrize("factory_string", ["IDMap2,Flat", "IVF32,Flat"])
def test_recall_from_partials_equals_recall_of_the_merged_index(factory_string):
    data = clustered(4000, DIM, 40, seed=0)
    ids = np.arange(4000, dtype=np.int64) * 5 + 1
    index = factory.build_empty(factory_string, DIM, "ip")
    factory.train(index, data[:2000], seed=0)
    trained, queries, parts = shards.serialize(index), data[::40], np.array_split(np.arange(4000), 4)
    filled = [shards.fill(trained, [(ids[p], data[p])]) for p in parts]
    exact_parts = [shards.exact_topk(queries, [(ids[p], data[p])], 10, "ip") for p in parts]
    candidates = recall.nprobe_candidates(factory.nlist(index), 0)
    partials = [recall.partial_topk(s, queries, 10, candidates, 0, e) for s, e in zip(filled, exact_parts)]
    exact = shards.merge_topk(exact_parts, 10, "ip")
    merged = shards.merge_in_memory(trained, (shards.fill(trained, [(ids[p], data[p])]) for p in parts))
    folded = recall.Partials(10, "ip")  # the driver's way: each shard's file folded in turn
    for e, p in zip(exact_parts, partials):
        folded.add_bytes(recall.Partials.to_bytes(e, p))
    assert folded.shards == 4 and np.array_equal(folded.exact[1], exact[1])
    for target in (0.5, 0.9, 0.99, 1.0):
        old = None  # the old way: the merged index searched at each nprobe until target is reached
        for nprobe in candidates:
            factory.set_search_params(merged, nprobe, 0)
            old = (searcher.recall_at_k(exact, merged.search(queries, 10), 10), nprobe)
            if old[0] >= target:
                break
        assert recall.tune(exact, partials, candidates, 10, "ip", target) == old
        assert folded.tune(candidates, len(queries), target) == old
    assert candidates == ([0] if factory_string.startswith("IDMap") else [1, 2, 4, 8, 16, 32])


def test_a_compressed_shards_nprobe_ladder_stops_when_its_recall_stops_rising():
    data = clustered(4000, DIM, 40, seed=1)
    ids, parts = np.arange(4000, dtype=np.int64), np.array_split(np.arange(4000), 4)
    index = factory.build_empty("IVF64,PQ4", DIM, "ip")
    factory.train(index, data, seed=0)
    trained, queries = shards.serialize(index), data[::20]
    candidates = recall.nprobe_candidates(64, 0)  # 1, 2, 4, ..., 64
    full, stopped, exact_parts = [], [], []
    for p in parts:
        shard, exact = shards.fill(trained, [(ids[p], data[p])]), shards.exact_topk(queries, [(ids[p], data[p])], 10, "ip")
        ladder = []  # every nprobe searched: the old ladder
        for nprobe in candidates:
            factory.set_search_params(shard, nprobe, 0)
            ladder.append(shard.search(queries, 10))
        full.append(ladder)
        stopped.append(recall.partial_topk(shard, queries, 10, candidates, 0, exact))
        exact_parts.append(exact)
    searches = [len({id(result) for result in ladder}) for ladder in stopped]
    assert factory.is_compressed(shard) and all(3 <= n < len(candidates) for n in searches)  # stopped early
    for full_ladder, ladder, n in zip(full, stopped, searches):
        assert all(np.array_equal(a[1], b[1]) for a, b in zip(full_ladder[:n], ladder[:n]))  # the same searches
    exact = shards.merge_topk(exact_parts, 10, "ip")
    for target in (0.32, 0.325, 0.99):  # 0.99: PQ4 never reaches it (0.33 at best, from nprobe 4 on)
        assert recall.tune(exact, stopped, candidates, 10, "ip", target) == \
            recall.tune(exact, full, candidates, 10, "ip", target)
    found, nprobe = recall.tune(exact, stopped, candidates, 10, "ip", 0.99)
    assert 0.3 < found < 0.35 and nprobe == 4  # not nlist: a larger nprobe searches longer for nothing


def test_a_recall_far_below_target_is_warned_with_what_to_change(spark, tmp_path, source):
    with Said() as said:
        assert build(tmp_path, source, str(tmp_path / "idx"), "--factory", "IVF16,PQ4") == 0
    meta = manifest_of(tmp_path / "idx")
    warned = (f"recall@10 {meta['recall_at_10']:.3f} at best (nprobe {meta['nprobe']}) is far below target_recall "
              "0.95: IVF16,PQ4 compresses the vectors and cannot reach it; use a less compressed factory")
    assert meta["recall_at_10"] < 0.9 and meta["nprobe"] < 16 and warned in said.text
    assert f"  recall                       {warned}" in said.text  # the job summary's note


def test_the_training_sample_and_the_recall_queries_come_from_one_seeded_pass(spark, source):
    rows = spark.read.parquet(source).select(partitions.faiss_id_column(), "embedding")
    train, queries = samples.samples(rows, (1000, 100), ROWS, (0, 1), "ip")
    assert train.shape == (1000, DIM) and queries.shape == (100, DIM) and train.dtype == np.float32
    table = {v.tobytes() for v in clustered(ROWS, DIM, 30, seed=11)}  # the source's vectors, none other
    assert all(v.tobytes() in table for v in (*train, *queries)) and len({v.tobytes() for v in train}) == 1000
    again = samples.samples(rows.repartition(7), (1000, 100), ROWS, (0, 1), "ip")  # any partitioning
    assert np.array_equal(again[0], train) and np.array_equal(again[1], queries)  # seeded
    assert np.array_equal(samples.sample_vectors(rows, 100, ROWS, 1, "ip"), queries)  # the same sample alone
    keyed = rows.select("faiss_id", "embedding", samples.key("faiss_id", 1).alias("k")).orderBy("k").limit(100)
    smallest = keyed.orderBy("faiss_id").toArrow()  # the 100 rows of smallest key, by id
    assert np.array_equal(queries, np.stack(smallest.column("embedding").to_pylist()).astype(np.float32))


def test_the_read_pass_takes_the_same_samples_and_the_build_makes_no_pass_for_them(spark, tmp_path, source):
    opts = IndexOptions(factory="IVF16,Flat", train_size=1000, recall_queries=100)
    table = build_step.read_to_index(spark, source, opts)
    rows = spark.read.parquet(source).select(partitions.faiss_id_column(), "embedding")
    assert table.sample.complete == (True, True) and table.n_ok == ROWS
    for counts in ((1000, 100), (500, 100), (0, 30)):  # fewer rows: the first by key, as a pass of their own
        taken, own = table.sample.take(counts, (0, 1), "ip"), samples.samples(rows, counts, ROWS, (0, 1), "ip")
        assert [a.tobytes() for a in taken] == [b.tobytes() for b in own] and len(taken[1]) == counts[1]
    assert table.sample.take((1000, 100), (1, 2), "ip") is None and table.sample.take((1001, 100), (0, 1), "ip") is None
    with Said() as said:
        assert build(tmp_path, source, str(tmp_path / "idx"), "--factory", "IVF16,Flat", "--set", "train_size=1000",
                     "--set", "recall_queries=100") == 0
    assert "samples of 1000 and 100 rows: taken in the read pass" in said.text


def test_the_read_pass_samples_only_what_it_can_hold_and_counts_only_then():
    counted = []

    def count() -> int:
        counted.append(1)
        return 50_000

    assert training.sampling(IndexOptions(), count) is None and not counted  # 100k to train: a pass of its own
    small = training.sampling(IndexOptions(train_size=5000, recall_queries=200, seed=3), count)
    assert (small.counts, small.seeds, small.total, len(counted)) == ((0, 200), (3, 4), 50_000, 1)  # auto: Flat
    ivf = training.sampling(IndexOptions(factory="IVF64,Flat", train_size=5000, metric="l2"), count)
    assert (ivf.counts, ivf.metric) == ((5000, 1000), "l2")
    assert training.sampling(IndexOptions(factory="HNSW32"), count).counts == (0, 1000)  # nothing to train
    assert training.sampling(IndexOptions(factory="IVF64,Flat"), count) is None


@pytest.mark.parametrize("extra, said", [
    (["--set", "shard_bytes=abc"], "key 'shard_bytes': 'abc' is not a size"),
    (["--set", "shards_to_keep=-1"], "shards_to_keep"),
    (["--factory", "HNSW32", "--set", "shards_to_keep=2"], "key 'shards_to_keep': merges the shards of a "
                                                           "sharded index (merge: none or auto) of IVF or Flat"),
    (["--set", "merge=memory", "--set", "shards_to_keep=2"], "it cannot apply to merge: memory"),
])
def test_bad_sharding_keys_exit_2_naming_the_key(tmp_path, source, capsys, extra, said):
    assert cli.main(["build-index", "--embeddings", source, "--output", str(tmp_path / "never"), "--dry-run",
                     *extra]) == 2
    assert said in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_input_partitions_become_shards_without_a_shuffle(spark, tmp_path):
    vectors, names = clustered(ROWS, DIM, 30, seed=13), [f"doc-{i:05d}" for i in range(ROWS)]
    emb = write_embeddings(tmp_path / "emb", vectors, names, files=(1,) * 8)  # 8 files: 8 input partitions
    spark.conf.set("spark.sql.files.maxPartitionBytes", "200000")  # one file per partition, unsplit
    try:  # (Spark packs small files into about one partition per core otherwise)
        assert build(tmp_path, emb, str(tmp_path / "sharded"), "--factory", "IDMap2,Flat",
                     "--set", "shard_bytes=100K", "--set", "memory_budget=100K") == 0
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    meta = manifest_of(tmp_path / "sharded")  # 2 whole files of 48,000 bytes per shard (hashing would not
    assert meta["merge"] == "none" and [s["ntotal"] for s in meta["shards"]] == [750] * 4  # split them evenly)
    assert build(tmp_path, emb, str(tmp_path / "merged"), "--factory", "IDMap2,Flat", "--set", "merge=memory") == 0
    a, b = searcher.load(str(tmp_path / "sharded")), searcher.load(str(tmp_path / "merged"))
    (d_a, i_a), (d_b, i_b) = searcher.search(a, vectors[:100], 10), searcher.search(b, vectors[:100], 10)
    assert np.allclose(d_a, d_b, atol=1e-6) and [set(r) for r in i_a] == [set(r) for r in i_b]
    assert list(i_a[:, 0]) == names[:100]  # each vector finds itself first
    assert meta["recall_at_10"] == manifest_of(tmp_path / "merged")["recall_at_10"] == 1.0


def test_incremental_refuses_an_index_auto_would_keep_as_shards(spark, tmp_path, source):
    with Said() as said:
        assert build(tmp_path, source, str(tmp_path / "never"), "--factory", "IVF16,Flat",
                     "--set", "incremental=true", *SHARDED) == 2
    assert "key 'incremental': updates a merged index, but merge: auto keeps this one as shards" in said.text
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_the_shard_writer_leaves_out_and_counts_bad_vectors_even_a_whole_shard_of_them(spark, tmp_path, metric):
    vectors, names = clustered(ROWS, DIM, 30, seed=17), [f"doc-{i:05d}" for i in range(ROWS)]
    vectors[0, 3], vectors[800, 0], vectors[1600] = np.nan, np.inf, 0.0  # one in each of the first 3 shards
    vectors[2250::2], vectors[2251::2] = 0.0, np.nan  # the last 2 files (the 4th shard): none usable
    emb = write_embeddings(tmp_path / "emb", vectors, names, files=(1,) * 8)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "200000")  # one file per partition (as above)
    try:
        with Said() as said:
            assert build(tmp_path, emb, str(tmp_path / "idx"), "--factory", "IDMap2,Flat", "--metric", metric,
                         "--set", "shard_bytes=100K", "--set", "memory_budget=100K") == 0
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    meta = manifest_of(tmp_path / "idx")
    zero = {"zero_vector": 376} if metric == "ip" else {}  # an all-zero vector has an L2 distance
    assert meta["left_out"] == {"non_finite": 377, **zero}
    usable = np.isfinite(vectors).all(1) & ((vectors != 0).any(1) | (metric == "l2"))
    sizes = sorted(s["ntotal"] for s in meta["shards"])  # the bad files, the smallest, are read as one shard's
    assert sum(sizes) == usable.sum() and (sizes[0] >= 748 if metric == "ip" else sizes[0] == 375)  # none for ip
    assert len(sizes) == (3 if metric == "ip" else 4)
    assert last_run(tmp_path, "build-index")["statuses"] == {"ok": usable.sum(), "non_finite": 377, **zero}
    assert "377 rows left out of the index as non_finite" in said.text and "'doc-00000', 'doc-00800'" in said.text
    assert ("376 rows left out of the index as zero_vector" in said.text) == (metric == "ip")
    indexed = set(spark.read.parquet(str(tmp_path / "idx" / "ids.parquet")).toPandas()["id"])
    assert indexed == {n for n, ok in zip(names, usable) if ok} and meta["ntotal"] == usable.sum()
    assert meta["recall_at_10"] == 1.0 and "check vectors" not in meta["stage_seconds"]


def test_ids_that_share_a_hash_are_not_repeats_but_an_index_refuses_them(spark):
    from jobs.core.config import ConfigError
    from jobs.indexing import assembly
    from jobs.tables import ids

    stats = {"_ids": 2, "_distinct_hashes": 1, "_blank_ids": 0}  # as if 'a' and 'b' shared a hash
    assert not ids.hashes_apart(stats, 2) and ids.hashes_apart({**stats, "_distinct_hashes": 2}, 2)
    apart = spark.createDataFrame([("a",), ("b",)], "id string")
    ids.refuse_repeated(apart, stats, 2, "t", "embeddings")  # their ids differ: not refused as repeats
    with pytest.raises(ConfigError, match="'a' on 2 row"):
        ids.refuse_repeated(spark.createDataFrame([("a",), ("a",)], "id string"), stats, 2, "t", "embeddings")
    with pytest.raises(ConfigError, match="1 ids share a 64-bit hash"):  # what build-index runs when not apart
        assembly.check_hashes(apart, 3)


def test_the_read_pass_samples_a_table_with_rows_of_other_statuses(spark, tmp_path, source):
    """Rows of another status (their group samples nothing) and an ok row whose vector cannot be indexed: the
    read pass still counts every status and samples exactly what a pass of its own over the usable rows gives."""
    import pandas as pd

    frame = pd.read_parquet(source)
    bad = frame.index[:5]
    frame.loc[bad, "status"], frame.loc[bad, "error"], frame.loc[bad, "embedding"] = "decode_error", "bad", None
    frame.at[frame.index[5], "embedding"] = np.full(DIM, np.nan, np.float32)
    mixed = tmp_path / "mixed.parquet"
    frame.to_parquet(mixed)
    opts = IndexOptions(factory="IVF16,Flat", train_size=1000, recall_queries=100)
    table = build_step.read_to_index(spark, str(mixed), opts)
    assert table.statuses == {"ok": ROWS - 5, "decode_error": 5} and table.sample.complete == (True, True)
    rows = spark.read.parquet(str(mixed)).filter("status = 'ok'").select(partitions.faiss_id_column(), "embedding")
    own = samples.samples(rows, (1000, 100), ROWS - 5, (0, 1), "ip")
    taken = table.sample.take((1000, 100), (0, 1), "ip")
    assert [a.tobytes() for a in taken] == [b.tobytes() for b in own] and [len(a) for a in taken] == [1000, 100]
    assert not np.isnan(np.concatenate(taken)).any()  # the NaN row is never sampled
