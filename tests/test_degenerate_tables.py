"""Tiny, degenerate and bad-vector tables through the CLI: exact rows with statuses, or a config error
that names the key; never a traceback."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs import cli
from jobs.indexing.partitions import faiss_id_column
from tests.conftest import common_args
from tests.test_hostile_inputs import Warnings
from tests.test_index_jobs import write_embeddings

DIM = 8
MODEL = "tiny-8"


def unit(*rows: list[float]) -> np.ndarray:
    x = np.array([r + [0.0] * (DIM - len(r)) for r in rows], np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# a and b are near-duplicates (cosine 0.995); c is far from both, nearer to a (0.287) than to b (0.286)
TINY = dict(zip("abc", unit([1.0], [1.0, 0.1], [0.3, 0.0, 1.0])))


def sparkamp(tmp_path, *args: str) -> tuple[int, str]:
    """(exit code, what the jobs and the CLI logged at WARNING and above) of `sparkamp args...`."""
    said, loggers = Warnings(), [logging.getLogger(name) for name in ("jobs", "sparkamp")]
    for logger in loggers:
        logger.addHandler(said)
    try:
        return cli.main([*args, *common_args(tmp_path)]), "\n".join(said.messages)
    finally:
        for logger in loggers:
            logger.removeHandler(said)


def last_run(tmp_path, job: str) -> dict:
    rows = [pq.read_table(f).to_pylist()[0] for f in (tmp_path / "runs").glob(f"run-*-{job}-*.parquet")]
    row = max(rows, key=lambda r: r["started_at"])
    return {**row, "statuses": json.loads(row["statuses"])}


def table(spark, path) -> pd.DataFrame:
    frame = spark.read.parquet(str(path)).toPandas()
    return frame.astype({c: "Int64" for c in ("rank",) if c in frame})


def neighbour_rows(spark, path) -> list[tuple]:
    rows = table(spark, path).sort_values(["query_id", "rank"])
    return [(r.query_id, None if pd.isna(r.rank) else int(r.rank), r.neighbor_id, r.status)
            for r in rows.itertuples()]


def expected_neighbours(names: list[str], vectors: np.ndarray, k: int, exclude_self: bool) -> list[tuple]:
    sims = vectors @ vectors.T
    rows = []
    for q, name in enumerate(names):
        order = [j for j in np.argsort(-sims[q], kind="stable") if not (exclude_self and j == q)][:k]
        found = [(name, rank, names[j], "ok") for rank, j in enumerate(order, 1)]
        rows += found or [(name, None, None, "no_neighbours")]
    return rows


@pytest.mark.parametrize("n", [1, 2, 3])  # with k = 2: k - 1, k and k + 1 items
def test_tiny_tables_give_exact_rows_in_every_job(spark, tmp_path, n):
    names = list("abc")[:n]
    vectors = np.stack([TINY[name] for name in names])
    emb = write_embeddings(tmp_path / "emb", vectors, names, model=MODEL)
    index = str(tmp_path / "index")
    assert sparkamp(tmp_path, "build-index", "--embeddings", emb, "--output", index,
                    "--set", "min_recall=1.0")[0] == 0
    meta = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert (meta["ntotal"], meta["factory"], meta["left_out"]) == (n, "IDMap2,Flat", {})
    assert meta["recall_at_10"] == 1.0  # recall@n below 10 vectors

    for k, exclude in ((2, True), (5, False)):  # k = 5: more than the index holds, every item, itself first
        out = tmp_path / f"nb-{k}"
        assert sparkamp(tmp_path, "search", "--index", index, "--queries", emb, "--output", str(out),
                        "--k", str(k), *(["--exclude-self"] if exclude else []))[0] == 0
        assert neighbour_rows(spark, out) == expected_neighbours(names, vectors, k, exclude)
        statuses = {"no_neighbours": 1} if n == 1 and exclude else {"ok": n}
        assert last_run(tmp_path, "search")["statuses"] == statuses
    if n == 1:
        assert table(spark, tmp_path / "nb-2").error.tolist() == [
            "the index returned no neighbour other than the query itself"]

    assert sparkamp(tmp_path, "dedup", "--embeddings", emb, "--index", index, "--output",
                    str(tmp_path / "groups"), "--threshold", "0.9", "--set", "k=2")[0] == 0
    groups = table(spark, tmp_path / "groups")
    assert sorted(zip(groups.group_id, groups.id)) == ([] if n == 1 else [("a", "a"), ("a", "b")])

    assert sparkamp(tmp_path, "unique", "--embeddings", emb, "--index", index, "--output",
                    str(tmp_path / "unique"), "--set", "k=2")[0] == 0
    ranked = table(spark, tmp_path / "unique").sort_values("rank")
    assert ranked["rank"].tolist() == list(range(1, n + 1))
    if n == 1:
        assert (ranked.status.tolist(), ranked.nearest_id.tolist()) == (["no_neighbours"], [None])
        assert ranked.error.tolist() == ["the index returned no other item"]
        assert last_run(tmp_path, "unique")["statuses"] == {"no_neighbours": 1}
        return
    nearest = {"a": "b", "b": "a", "c": "a"}
    assert dict(zip(ranked.id, ranked.nearest_id)) == {name: nearest[name] for name in names}
    assert set(ranked.status) == {"ok"} and ranked.error.isna().all()
    assert ranked.nearest_score.tolist()[-2:] == pytest.approx([float(TINY["a"] @ TINY["b"])] * 2)
    if n == 3:
        assert ranked.id.iloc[0] == "c" and ranked.nearest_score.iloc[0] == pytest.approx(TINY["a"] @ TINY["c"])


def write_rows(folder, rows: dict[str, object], model: str = MODEL) -> str:
    """An embeddings table of {id: vector} (None = a row that failed to embed), ids as content hashes."""
    folder.mkdir(parents=True)
    pd.DataFrame({"id": list(rows), "source": list(rows), "content_hash": list(rows), "model": model,
                  "embedding": [None if v is None else np.asarray(v, np.float32) for v in rows.values()],
                  "status": ["ok" if v is not None else "decode_error" for v in rows.values()],
                  "error": [None if v is not None else "cannot decode the file" for v in rows.values()]},
                 ).to_parquet(folder / "part-0.parquet")
    return str(folder)


def bad_vectors() -> dict[str, object]:
    nan, inf = TINY["a"].copy(), TINY["b"].copy()
    nan[3], inf[0] = np.nan, np.inf
    return {"nan": nan, "inf": inf, "zero": np.zeros(DIM, np.float32), "failed": None}


@pytest.mark.parametrize("element", ["float", "double"])
def test_vector_check_finds_every_kind_of_bad_vector(spark, element):
    from jobs.tables import vectors

    rows = {"ok": [0.6, -0.8, 0.0], "nan": [float("nan"), 1.0, 0.0], "inf": [1.0, float("inf"), 0.0],
            "minus_inf": [1.0, float("-inf"), 0.0], "null_value": [1.0, None, 0.0], "zero": [0.0, 0.0, 0.0],
            "minus_zero": [-0.0, 0.0, 0.0], "short": [1.0, 0.0], "missing": None, "tiny": [1e-40, 0.0, 0.0]}
    df = spark.createDataFrame(list(rows.items()), f"id string, embedding array<{element}>")
    expected = {"ok": "ok", "nan": "non_finite", "inf": "non_finite", "minus_inf": "non_finite",
                "null_value": "non_finite", "zero": "zero_vector", "minus_zero": "zero_vector",
                "short": "wrong_dim", "missing": "missing_vector", "tiny": "ok"}
    for metric in ("ip", "l2"):  # an all-zero vector has an L2 distance, not a cosine
        status = vectors.vector_check(3, metric)[0]
        got = {r["id"]: r["status"] for r in df.select("id", status.alias("status")).collect()}
        assert got == {k: ("ok" if metric == "l2" and v == "zero_vector" else v) for k, v in expected.items()}
    from index import vectors as blocks  # the same statuses on the Arrow blocks a build's shard writer checks

    arrow = df.toArrow()
    column = arrow.column("embedding")
    for metric in ("ip", "l2"):
        codes = blocks.check(column, 3, metric)
        got = {k: blocks.STATUSES[c - 1] if c else "ok" for k, c in zip(arrow.column("id").to_pylist(), codes)}
        assert got == {k: ("ok" if metric == "l2" and v == "zero_vector" else v) for k, v in expected.items()}
        assert blocks.left_out(codes).tolist() == [1, 1, 4, 2 if metric == "ip" else 0]
    assert blocks.check(column, 0, "ip")[list(rows).index("short")] == 0  # dim 0: the length is not checked


def test_bad_vectors_are_left_out_with_their_status_in_every_job(spark, tmp_path):
    table_path = write_rows(tmp_path / "emb", {**TINY, **bad_vectors()})
    queries = write_rows(tmp_path / "queries", {**TINY, **bad_vectors(), "short": TINY["c"][:7]})
    index = str(tmp_path / "index")
    code, said = sparkamp(tmp_path, "build-index", "--embeddings", table_path, "--output", index)
    assert code == 0
    meta = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert (meta["ntotal"], meta["left_out"]) == (3, {"non_finite": 2, "zero_vector": 1})
    usable = spark.read.parquet(table_path).filter("id IN ('a', 'b', 'c')").select(faiss_id_column(), "id",
                                                                                     "content_hash").collect()
    written = pq.read_table(tmp_path / "index" / "ids.parquet").to_pylist()  # by the shard writers
    assert sorted(written, key=lambda r: r["id"]) == sorted((r.asDict() for r in usable), key=lambda r: r["id"])
    run = last_run(tmp_path, "build-index")
    # every row of the table is counted: indexed (ok), left out (its vector's status), not ok (its own)
    assert (run["rows_in"], run["statuses"]) == (7, {"ok": 3, "non_finite": 2, "zero_vector": 1, "decode_error": 1})
    assert "2 rows left out of the index as non_finite" in said and "'inf', 'nan'" in said
    assert "1 rows left out of the index as zero_vector" in said and "'zero'" in said

    assert sparkamp(tmp_path, "search", "--index", index, "--queries", queries, "--output",
                    str(tmp_path / "nb"), "--k", "2", "--exclude-self")[0] == 0
    good = expected_neighbours(list("abc"), np.stack(list(TINY.values())), 2, True)
    failed = [(q, None, None, s) for q, s in (("failed", "decode_error"), ("inf", "non_finite"),
                                              ("nan", "non_finite"), ("short", "wrong_dim"), ("zero", "zero_vector"))]
    assert neighbour_rows(spark, tmp_path / "nb") == sorted(good + failed, key=lambda r: (r[0], r[1] or 0))
    errors = table(spark, tmp_path / "nb").set_index("query_id").error
    assert errors["failed"] == "cannot decode the file"
    assert errors["short"] == "the embedding has 7 values; the index holds 8-d vectors"
    assert errors["nan"] == errors["inf"] == "the embedding holds NaN, infinite or null values"
    assert errors["zero"].startswith("the embedding is all zeros")
    assert last_run(tmp_path, "search")["statuses"] == {"ok": 3, "non_finite": 2, "zero_vector": 1,
                                                        "wrong_dim": 1, "decode_error": 1}

    assert sparkamp(tmp_path, "dedup", "--embeddings", table_path, "--index", index, "--output",
                    str(tmp_path / "groups"), "--threshold", "0.9")[0] == 0
    assert sorted(table(spark, tmp_path / "groups").id) == ["a", "b"]
    assert last_run(tmp_path, "dedup")["statuses"] == {"ok": 3, "non_finite": 2, "zero_vector": 1, "skipped": 1}

    assert sparkamp(tmp_path, "unique", "--embeddings", queries, "--index", index, "--output",
                    str(tmp_path / "unique"))[0] == 0
    ranked = table(spark, tmp_path / "unique").sort_values("rank")
    assert ranked.id.tolist()[0] == "c" and set(ranked.id[1:3]) == {"a", "b"}
    assert list(zip(ranked.id[3:], ranked.status[3:], ranked["rank"][3:])) == [
        ("inf", "non_finite", 4), ("nan", "non_finite", 5), ("short", "wrong_dim", 6), ("zero", "zero_vector", 7)]
    assert ranked.nearest_id[3:].isna().all() and ranked.error[3:].notna().all()
    assert last_run(tmp_path, "unique")["statuses"] == {"ok": 3, "non_finite": 2, "zero_vector": 1,
                                                        "wrong_dim": 1, "skipped": 1}


def test_a_table_without_one_usable_vector(spark, tmp_path):
    bad = {k: v for k, v in bad_vectors().items() if k in ("nan", "zero")}
    all_bad, good = write_rows(tmp_path / "bad", bad), write_rows(tmp_path / "good", TINY)
    code, said = sparkamp(tmp_path, "build-index", "--embeddings", all_bad, "--output", str(tmp_path / "never"))
    assert code == 2 and not (tmp_path / "never").exists()
    assert ("key 'embeddings': none of its 2 ok rows has a vector that can be used "
            "(non_finite: 1, zero_vector: 1)") in said
    index = str(tmp_path / "index")
    assert sparkamp(tmp_path, "build-index", "--embeddings", good, "--output", index)[0] == 0
    assert sparkamp(tmp_path, "search", "--index", index, "--queries", all_bad, "--output",
                    str(tmp_path / "nb"))[0] == 0
    assert neighbour_rows(spark, tmp_path / "nb") == [("nan", None, None, "non_finite"),
                                                      ("zero", None, None, "zero_vector")]
    for job in ("dedup", "unique"):
        code, said = sparkamp(tmp_path, job, "--embeddings", all_bad, "--index", index, "--output",
                              str(tmp_path / job))
        assert code == 2 and "none of its 2 ok rows has a vector that can be used" in said
        assert not (tmp_path / job).exists()


def test_recall_queries_come_from_the_usable_rows_when_the_sample_holds_none(spark, tmp_path):
    """3 usable vectors among 10,000 ok rows: the seeded sample of recall queries (~40 rows) holds none, so
    the build samples again from the usable rows instead of measuring recall on no query."""
    rows = {f"z{i:05d}": np.zeros(DIM, np.float32) for i in range(9997)} | TINY
    code, said = sparkamp(tmp_path, "build-index", "--embeddings", write_rows(tmp_path / "emb", rows), "--output",
                          str(tmp_path / "index"), "--set", "recall_queries=5")
    assert code == 0, said
    meta = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert (meta["ntotal"], meta["left_out"], meta["recall_at_10"]) == (3, {"zero_vector": 9997}, 1.0)
    assert "9997 rows left out of the index as zero_vector" in said


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("factory_string, reason", [
    ("IVF64,Flat", "needs at least 64 training vectors for 64 IVF lists (faiss advises 2496)"),
    ("PQ16", "needs at least 256 training vectors for PQ16x8 (256 centroids per sub-quantizer)"),
    ("OPQ16,IVF64,PQ16", "needs at least 256 training vectors for the OPQ16 rotation"),
    ("PQ7", "'PQ7' for 16-d vectors: The dimension of the vector (d) should be a multiple of the number "
            "of subquantizers (M)")])
def test_a_factory_the_table_cannot_train_is_a_config_error(spark, tmp_path, factory_string, reason):
    emb = write_embeddings(tmp_path / "emb", random_unit(29, 16, 0), [f"v{i}" for i in range(29)], model=MODEL)
    code, said = sparkamp(tmp_path, "build-index", "--embeddings", emb, "--output", str(tmp_path / "never"),
                          "--factory", factory_string)
    assert code == 2 and not (tmp_path / "never").exists()
    assert f"key 'factory': '{factory_string}'" in said and "29 rows of 16-d vectors" in said and reason in said
    assert "factory: auto would use IDMap2,Flat" in said
    assert ("IVF1,Flat keeps an IVF" in said) == ("IVF" in factory_string)


def test_factory_strings_at_config_time_and_train_size(spark, tmp_path, capsys):
    emb = write_embeddings(tmp_path / "emb", random_unit(100, 16, 1), [f"v{i}" for i in range(100)], model=MODEL)
    args = ["build-index", "--embeddings", emb, "--output", str(tmp_path / "index"), "--dry-run"]
    for good in ("OPQ48,IVF4096,PQ48", "IVF64_HNSW32,Flat"):  # valid for some dim; merge: memory is fine
        assert cli.main([*args, "--factory", good]) == 0
    assert cli.main([*args, "--factory", "IVF,Flat"]) == 2
    assert "key 'factory': 'IVF,Flat': could not parse index string IVF,Flat" in capsys.readouterr().err
    assert cli.main([*args, "--factory", "HNSW32", "--set", "merge=memory"]) == 2
    assert "HNSW graphs cannot be merged" in capsys.readouterr().err
    code, said = sparkamp(tmp_path, "build-index", "--embeddings", emb, "--output", str(tmp_path / "index"),
                          "--factory", "IVF16,Flat", "--set", "train_size=10")
    assert code == 2 and "key 'train_size': IVF16,Flat needs at least 16 training vectors for 16 IVF lists, " \
                         "train_size is 10" in said


def test_identical_vectors_are_exact_answers_for_recall(spark, tmp_path):
    vectors = np.vstack([np.repeat(random_unit(1, 16, 2), 20, axis=0), random_unit(9, 16, 3)])
    emb = write_embeddings(tmp_path / "emb", vectors, [f"v{i:02d}" for i in range(29)], model=MODEL)
    # exact search on 20 identical vectors; then an IVF (HNSW quantizer, merged in memory) searched exhaustively
    for name, extra in (("flat", []), ("ivf", ["--factory", "IVF2_HNSW8,Flat", "--set", "nprobe=2"])):
        assert sparkamp(tmp_path, "build-index", "--embeddings", emb, "--output", str(tmp_path / name),
                        "--set", "min_recall=1.0", *extra)[0] == 0
        assert json.loads((tmp_path / name / "manifest.json").read_text())["recall_at_10"] == 1.0


def test_unique_looks_past_exact_copies(spark, tmp_path):
    rng = np.random.default_rng(4)
    centre = unit([1.0])[0]
    others = centre + 0.15 * rng.normal(size=(8, DIM))
    others = (others / np.linalg.norm(others, axis=1, keepdims=True)).astype(np.float32)
    odd = unit([0.4, 1.0])[0]  # about 0.37 to the others, which are about 0.9 to each other
    names = [f"copy-{i:02d}" for i in range(12)] + [f"other-{i}" for i in range(8)]
    hashes = ["odd"] * 12 + names[12:]
    vectors = np.vstack([np.repeat(odd[None], 12, axis=0), others])
    folder = tmp_path / "emb"
    write_embeddings(folder, vectors, names, model=MODEL)
    frame = pd.read_parquet(folder).assign(content_hash=hashes)
    frame.to_parquet(folder / "part-0.parquet")
    index = str(tmp_path / "index")
    assert sparkamp(tmp_path, "build-index", "--embeddings", str(folder), "--output", index)[0] == 0
    runs = {}
    for k in (10, 20):  # k = 10 sees only copies first; k = 20 sees everything
        out = tmp_path / f"unique-{k}"
        assert sparkamp(tmp_path, "unique", "--embeddings", str(folder), "--index", index, "--output", str(out),
                        "--set", f"k={k}")[0] == 0
        runs[k] = table(spark, out).sort_values("rank").reset_index(drop=True)
    pd.testing.assert_frame_equal(runs[10], runs[20])
    ranked = runs[10]
    nearest = int(np.argmax(others @ odd))
    assert ranked.id[:12].tolist() == names[:12] and ranked["rank"].tolist() == list(range(1, 21))
    assert set(ranked.nearest_id[:12]) == {f"other-{nearest}"} and set(ranked.status) == {"ok"}
    assert np.allclose(ranked.nearest_score[:12], others[nearest] @ odd, atol=1e-6)
    sims = others @ others.T
    np.fill_diagonal(sims, -1)
    assert np.allclose(ranked.nearest_score[12:], np.sort(sims.max(axis=1)), atol=1e-6)

    same = write_embeddings(tmp_path / "same", np.repeat(odd[None], 5, axis=0), [f"s{i}" for i in range(5)],
                            model=MODEL)
    frame = pd.read_parquet(same).assign(content_hash="odd")
    frame.to_parquet(tmp_path / "same" / "part-0.parquet")
    assert sparkamp(tmp_path, "unique", "--embeddings", same, "--output", str(tmp_path / "unique-same"),
                    "--set", "k=1")[0] == 0
    ranked = table(spark, tmp_path / "unique-same").sort_values("rank")
    assert ranked.id.tolist() == [f"s{i}" for i in range(5)] and set(ranked.status) == {"only_copies"}
    assert ranked.nearest_id.isna().all() and ranked.error.iloc[0] == (
        "its 4 nearest items are all exact copies of it (same content_hash): no other item to compare with")


def _rows(status: list, ids: list, models: list, dims: list) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "source": ids, "content_hash": ids, "model": models, "status": status,
                         "embedding": [None if d is None else [0.5] * d for d in dims],
                         "error": [None if s == "ok" else "bad" for s in status]})


# tables whose ok rows break the contract in each way check_embeddings refuses, and tables it accepts
CONTRACT_TABLES = {
    "clean": _rows(["ok"] * 3, list("abc"), [MODEL] * 3, [DIM] * 3),
    "a repeated id": _rows(["ok"] * 3, list("aab"), [MODEL] * 3, [DIM] * 3),
    "a blank id": _rows(["ok"] * 3, ["a", " \u3000", "c"], [MODEL] * 3, [DIM] * 3),
    "a null id": _rows(["ok"] * 3, ["a", None, "c"], [MODEL] * 3, [DIM] * 3),
    "two models": _rows(["ok"] * 3, list("abc"), [MODEL, "other", MODEL], [DIM] * 3),
    "a null model beside one": _rows(["ok"] * 3, list("abc"), [None, MODEL, MODEL], [DIM] * 3),
    "only null models": _rows(["ok"] * 2, list("ab"), [None, None], [DIM] * 2),
    "two dims": _rows(["ok"] * 3, list("abc"), [MODEL] * 3, [DIM, DIM, 4]),
    "no ok row": _rows(["decode_error"] * 2, list("ab"), [MODEL] * 2, [None, None]),
    "other statuses repeat ids": _rows(["ok", "decode_error", "decode_error", None], list("abbc"),
                                       [MODEL, "other", None, MODEL], [DIM, None, None, 3]),
}


def _checked(spark, path: str, stored: bool, check) -> tuple:
    from jobs.core.config import ConfigError
    from jobs.tables import contracts

    try:
        found = contracts.check_embeddings(contracts.read_table(spark, path), check, path, stored=stored)
    except ConfigError as exc:
        return ("refused", str(exc))
    return ("read", found.statuses, found.dim, found.model, found.hashes_apart)


@pytest.mark.parametrize("name", list(CONTRACT_TABLES))
def test_the_two_pass_read_of_a_stored_table_checks_as_the_one_pass_read(spark, tmp_path, name):
    """check_embeddings(stored=True) reads the vectors' lengths and the ids and models in two passes: for
    each kind of table it accepts or refuses, the same result or error as one pass over every column."""
    from jobs.tables.contracts import EmbeddingsCheck

    path = str(tmp_path / "emb")
    spark.createDataFrame(CONTRACT_TABLES[name], "id string, source string, content_hash string, model string, "
                          "status string, embedding array<float>, error string").write.parquet(path)
    found = []
    for check in (EmbeddingsCheck(purpose="to index"), EmbeddingsCheck(model=MODEL, dim=DIM)):
        one, two = _checked(spark, path, False, check), _checked(spark, path, True, check)
        assert one == two
        found.append(two)
    accepted = {"clean", "other statuses repeat ids", "a null model beside one"}  # a null model is no other model
    assert found[0][0] == ("read" if name in accepted else "refused"), found[0]
