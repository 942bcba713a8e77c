"""A sharded index (build-index merge: none) searched as (query block x shard) tasks gives what the merged
index gives: search, dedup and unique; a dedup killed half-way searches only its unfinished blocks again."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sparkamp
from index import manifest, shards
from jobs import cli
from jobs.indexing import query_blocks, shard_search
from tests.conftest import common_args
from tests.test_reliability import kill_run, run_in_background

N_RANDOM, N_NEAR = 200, 20
COPIES = ["copy0", "copy1", "v0100"]  # one vector, one content_hash
PLANTED = sorted([[f"near{i:02d}", f"v{i:04d}"] for i in range(N_NEAR)] + [COPIES])  # cosine >= 0.95


def write_corpus(path: Path) -> None:
    """200 random unit vectors (16-d), 20 near copies of the first 20, 2 exact copies of v0100 (same
    content_hash) and one row that failed to embed."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=(N_RANDOM, 16))
    vectors = np.vstack([base, base[:N_NEAR] + rng.normal(scale=0.05, size=(N_NEAR, 16)), base[[100, 100]]])
    ids = [f"v{i:04d}" for i in range(N_RANDOM)] + [f"near{i:02d}" for i in range(N_NEAR)] + ["copy0", "copy1"]
    hashes = [f"h{i}" for i in range(N_RANDOM + N_NEAR)] + ["h100", "h100"]
    rows = pd.DataFrame({"id": ids, "source": "synthetic", "content_hash": hashes, "model": "synthetic-16",
                         "embedding": list((vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)),
                         "status": "ok", "error": None})
    broken = pd.DataFrame({"id": ["broken"], "source": "synthetic", "content_hash": [None], "model": "synthetic-16",
                           "embedding": [None], "status": "decode_error", "error": "not an image"})
    pd.concat([rows, broken], ignore_index=True).to_parquet(path)


@pytest.fixture(scope="module")
def indexes(spark, tmp_path_factory):
    """{factory: {"merged": folder, "sharded": folder (4 shards)}} of one corpus, and the corpus."""
    root = tmp_path_factory.mktemp("sharded")
    write_corpus(root / "emb.parquet")
    built = {}
    for factory in ("Flat", "IVF8,Flat"):
        for name, merge in (("merged", ["--set", "merge=memory"]), ("sharded", ["--set", "merge=none", "--set", "num_shards=4"])):
            out = root / f"{factory.replace(',', '-')}-{name}"
            assert cli.main(["build-index", "--embeddings", str(root / "emb.parquet"), "--output", str(out),
                             "--factory", factory, "--set", "nprobe=8", *merge, *common_args(root)]) == 0
            built.setdefault(factory, {})[name] = out
    assert len(list((built["Flat"]["sharded"] / "shards").glob("shard-*.faiss"))) == 4
    return root / "emb.parquet", built


def table(path: Path, by: list[str]) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values(by).reset_index(drop=True)


def assert_same_neighbours(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Row for row: the same queries, ranks, statuses and scores (up to float noise), and the same neighbour
    wherever its score is not tied (the exact copies tie; the sharded merge orders them by faiss id, the
    merged index by its own insertion order: both are exact answers)."""
    columns = ["query_id", "rank", "status", "error"]
    assert a[columns].equals(b[columns])
    assert np.allclose(a.score, b.score, atol=1e-5, equal_nan=True)
    rounded = a.assign(s=a.score.round(5))
    tied = rounded.duplicated(["query_id", "s"], keep=False) | rounded.s.eq(rounded.groupby("query_id").s.transform("last"))
    assert a.neighbor_id[~tied].fillna("").equals(b.neighbor_id[~tied].fillna(""))
    assert (~tied).sum() > len(a) / 2


@pytest.mark.parametrize("factory,exclude,k", [("Flat", False, 5), ("Flat", True, 5), ("IVF8,Flat", True, 5),
                                               ("Flat", True, 300)])
def test_sharded_search_equals_the_merged_index(indexes, tmp_path, factory, exclude, k):
    emb, built = indexes
    found = {}
    for name, folder in built[factory].items():
        out = tmp_path / name
        assert cli.main(["search", "--index", str(folder), "--queries", str(emb), "--output", str(out), "--k", str(k),
                         "--set", f"exclude_self={str(exclude).lower()}", "--set", "query_blocks=3",
                         *common_args(tmp_path)]) == 0
        found[name] = table(out, ["query_id", "rank"])
    merged, sharded = found["merged"], found["sharded"]
    assert_same_neighbours(sharded, merged)
    ok = sharded[sharded.status == "ok"]
    indexed = N_RANDOM + N_NEAR + 2
    assert ok.groupby("query_id").size().eq(min(k, indexed - exclude)).all() and ok.query_id.nunique() == indexed
    assert sharded[sharded.query_id == "broken"][["status", "error"]].values.tolist() == [["decode_error", "not an image"]]
    assert (ok.query_id != ok.neighbor_id).all() if exclude else (ok[ok["rank"] == 1].score > 0.999).all()


def test_merge_partial_drops_the_query_and_keeps_the_best(tmp_path):
    scores = np.array([[0.9, 0.5, 0.8, 0.7]], np.float32)  # two shards' top-2, side by side
    ids = np.array([[1, 2, 3, -1]])
    best = shards.merge_partial(scores, ids, 3, "ip", own=np.array([1]))
    assert best[1].tolist() == [[3, 2, -1]] and np.allclose(best[0][0, :2], [0.8, 0.5])


def test_ivf_shards_share_one_coarse_search_and_give_each_shards_own_results():
    import faiss

    rng = np.random.default_rng(3)
    base, queries = (rng.standard_normal((n, 32)).astype(np.float32) for n in (4000, 700))
    trained = faiss.index_factory(32, "IVF32,Flat", faiss.METRIC_L2)
    trained.train(base)
    parts = []
    for shard in range(3):
        part = faiss.deserialize_index(faiss.serialize_index(trained))
        part.add_with_ids(base[shard::3], np.arange(shard, 4000, 3))
        part.nprobe = 4
        parts.append(part)
    coarse = shard_search.Coarse(len(queries))
    found = [[coarse.search(part, queries[i:i + 300], 7, i) for i in range(0, 700, 300)] for part in parts]
    own = [[part.search(queries[i:i + 300], 7) for i in range(0, 700, 300)] for part in parts]
    for mine, theirs in zip(found, own):
        for (scores, ids), (want_scores, want_ids) in zip(mine, theirs):
            np.testing.assert_array_equal(ids, want_ids)
            np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    assert sorted(coarse._kept) == [(0, 32, 4), (300, 32, 4), (600, 32, 4)]  # one quantizer search per batch
    merged = shard_search.search_group(queries, parts, 7, 300, "l2")
    whole = faiss.deserialize_index(faiss.serialize_index(trained))
    whole.add_with_ids(base, np.arange(4000))
    whole.nprobe = 4
    np.testing.assert_array_equal(merged[1], whole.search(queries, 7)[1])


def test_rerank_of_a_sharded_index_is_refused_before_any_work(indexes, tmp_path, capsys):
    emb, built = indexes
    code = cli.main(["search", "--index", str(built["Flat"]["sharded"]), "--queries", str(emb), "--output",
                     str(tmp_path / "nb"), "--set", "rerank=average-qe", *common_args(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "key 'rerank'" in err and "4 shards" in err and "rerank: none" in err
    assert not (tmp_path / "nb").exists()


def groups_of(path: Path) -> list[list[str]]:
    return sorted(sorted(g) for g in pd.read_parquet(path).groupby("group_id").id.apply(list))


def test_sharded_dedup_and_unique_equal_the_merged_index(indexes, tmp_path):
    emb, built = indexes
    for name, folder in built["Flat"].items():
        for job in ("dedup", "unique"):
            threshold = ["--threshold", "0.95"] if job == "dedup" else []
            assert cli.main([job, "--embeddings", str(emb), "--index", str(folder), "--output", str(tmp_path / f"{job}-{name}"),
                             "--set", "query_blocks=2", *threshold, *common_args(tmp_path)]) == 0
    groups = groups_of(tmp_path / "dedup-sharded")
    assert groups == groups_of(tmp_path / "dedup-merged")
    assert groups == PLANTED
    ranks = {name: table(tmp_path / f"unique-{name}", ["rank"]) for name in ("merged", "sharded")}
    columns = ["id", "rank", "status"]
    assert ranks["sharded"][columns].equals(ranks["merged"][columns])
    nearest = {name: ranks[name].nearest_id.where(~ranks[name].nearest_id.isin(COPIES), "a copy") for name in ranks}
    assert nearest["sharded"].equals(nearest["merged"])  # the three copies tie: any of them is the nearest
    assert np.allclose(ranks["sharded"].nearest_score, ranks["merged"].nearest_score, atol=1e-5, equal_nan=True)
    assert not list((tmp_path / "_sparkamp_staging").glob("*-blocks"))  # checkpoints removed after success


def searched_blocks(log: str) -> list[tuple[int, str]]:
    return re.findall(r"searched block (\d+) shard (\S+) \(", log)


def test_a_killed_dedup_searches_only_its_unfinished_blocks_again(indexes, tmp_path):
    """SIGKILL of the driver's process group once half its (block, shard group) tasks are done; the re-run
    reuses them and searches only the others. 16 blocks on local[2]: one group of the 4 shards, 16 tasks."""
    emb, built = indexes
    out = tmp_path / "groups"
    args = ["dedup", "--embeddings", str(emb), "--index", str(built["Flat"]["sharded"]), "--output", str(out),
            "--threshold", "0.95", "--set", "query_blocks=16", "--set", "master=local[2]", *common_args(tmp_path)]
    first = run_in_background(args, tmp_path / "first.log")
    blocks = tmp_path / "_sparkamp_staging" / "groups-blocks"
    deadline, done = time.time() + 300, []
    while time.time() < deadline and first.poll() is None and len(done) < 8:
        done = list(blocks.glob("*/tasks/_b*.done"))
        time.sleep(0.02)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    kill_run(first, tmp_path / "first.log")  # its pyspark workers too: none finishes a block afterwards
    finished = {int(m.name[2:7]) for m in blocks.glob("*/tasks/_b*-g00000.done")}
    assert 8 <= len(finished) < 16, f"{len(finished)} of 16 tasks done when killed"
    assert not out.exists()

    second = run_in_background(args, tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    log = (tmp_path / "second.log").read_text()
    assert f"{len(finished)} of 16 blocks reused, {16 - len(finished)} searched" in log
    again = searched_blocks(log)
    assert {int(b) for b, _ in again} == set(range(16)) - finished  # exactly the unfinished blocks,
    assert len(again) == 4 * (16 - len(finished))  # each in the 4 shards, once
    assert groups_of(out) == PLANTED
    assert not blocks.exists()  # removed once the job succeeded


def test_the_queries_cross_no_shuffle_and_a_task_searches_a_group_of_shards(spark, indexes, tmp_path):
    """The queries are written once by block; the tasks are a (block, shard group) table (3 x 2 here) with
    no Exchange and no vector in its plan; each query gets one partial row per group, its group's top k."""
    emb, built = indexes
    folder = str(built["Flat"]["sharded"])
    rows = spark.read.parquet(str(emb)).filter("status = 'ok'").select("id", "embedding")
    shard_plan = shard_search.plan(folder, manifest.read(folder), 222, 3, (5, False, (0, 0), 64), cores=2)
    assert shard_plan.groups == ((0, 1), (2, 3)) and len(shard_plan.tasks) == 6
    partials = shard_search.searched(rows, shard_plan, str(tmp_path / "queries"))
    plan = partials._jdf.queryExecution().executedPlan().toString()
    assert "Exchange" not in plan and "embedding" not in plan and partials.rdd.getNumPartitions() == 6
    found = partials.toPandas()
    table = pd.read_parquet(emb).query("status == 'ok'").set_index("id")
    assert len(found) == 2 * len(table) and (found.groupby("id").shard_group.nunique() == 2).all()
    read = [query_blocks.read(str(tmp_path / "queries"), b) for b in range(3)]
    ids = [i for queries, _ in read for i in queries.id]
    assert sorted(ids) == sorted(table.index)  # each query in one block
    assert np.array_equal(np.vstack([v for _, v in read]), np.stack(table.embedding.loc[ids]))
    by_group = [found[found.shard_group == g].set_index("id").loc[table.index] for g in (0, 1)]
    held = [set(np.concatenate(g.ids.to_numpy()).tolist()) for g in by_group]
    assert not held[0] & held[1]  # the two groups searched disjoint shards
    both = np.hstack([np.stack(g.scores.to_numpy()) for g in by_group])
    vectors = np.stack(table.embedding)
    exact = -np.sort(-(vectors @ vectors.T), axis=1)[:, :5]
    assert np.allclose(-np.sort(-both, axis=1)[:, :5], exact, atol=1e-5)  # the groups' top 5 hold the exact top 5


def test_the_python_api_searches_a_sharded_index_and_leaves_no_scratch(spark, indexes, tmp_path):
    """sparkamp.search of a sharded index: computed before it returns (its queries' scratch folder beside
    work_dir is gone), the same rows as the merged index's."""
    emb, built = indexes
    queries = spark.read.parquet(str(emb))
    found = {name: sparkamp.search(queries, str(folder), k=5, exclude_self=True, work_dir=str(tmp_path / "work"))
             .toPandas().sort_values(["query_id", "rank"]).reset_index(drop=True) for name, folder in built["Flat"].items()}
    assert_same_neighbours(found["sharded"], found["merged"])
    assert found["sharded"].query_id.nunique() == N_RANDOM + N_NEAR + 3
    assert not list(tmp_path.rglob("*staging-queries*"))
