"""Re-ranking of search candidates (udfs.reranking) on small sets whose right answer is known."""
import numpy as np

from udfs import reranking
from udfs.reranking import Rerank


def on_circle(degrees, dim=8):
    """Unit vectors at these angles in the first plane of `dim` dimensions."""
    out = np.zeros((len(degrees), dim), np.float32)
    out[:, 0], out[:, 1] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return out


def candidates(query, vectors):
    """The search's view: candidates by cosine, best first (ids = positions in `vectors`)."""
    scores = vectors @ query
    order = np.argsort(-scores)
    return scores[order][None], order[None].astype(np.int64), vectors[order][None]


def test_diffusion_follows_the_manifold_past_a_closer_outlier():
    # a chain of items at 10..60 degrees from the query; an isolated item at -52 degrees is closer in
    # cosine (0.62) than the chain's end (0.50), but only the chain is connected to the query's first results
    query = on_circle([0])[0]
    vectors = on_circle([10, 20, 30, 40, 50, 60, -52])
    scores, ids, vecs = candidates(query, vectors)
    assert ids[0].tolist() == [0, 1, 2, 3, 4, 6, 5]  # by cosine the outlier (6) is 6th
    new_scores, new_ids = reranking.rerank(Rerank("diffusion", graph_k=2, qe_top=3), query[None], ids, vecs,
                                           scores)
    assert sorted(new_ids[0].tolist()[:6]) == [0, 1, 2, 3, 4, 5] and new_ids[0][6] == 6
    assert np.all(np.diff(new_scores[0]) <= 0)
    # the isolated item has no edge and is not among the 3 seeds: nothing reaches it
    assert new_scores[0][-1] == 0.0
    # seeded by every candidate, it keeps its own y = cos^3
    all_seeds = reranking.rerank(Rerank("diffusion", graph_k=2, qe_top=7), query[None], ids, vecs, scores)
    assert all_seeds[1][0][-1] == 6 and abs(all_seeds[0][0][-1] - float(vectors[6] @ query) ** 3) < 1e-5


def test_query_expansion_rescores_with_the_expanded_query():
    query = on_circle([0])[0]
    vectors = on_circle([5, 15, -20, 30, -45])
    scores, ids, vecs = candidates(query, vectors)
    new_scores, new_ids = reranking.rerank(Rerank("average-qe", qe_top=2), query[None], ids, vecs, scores)
    expanded = query + vectors[0] + vectors[1]
    expanded /= np.linalg.norm(expanded)
    want = np.argsort(-(vectors @ expanded))
    assert new_ids[0].tolist() == want.tolist() == [0, 1, 3, 2, 4]  # drifts to +6.7 degrees: 30 passes -20
    np.testing.assert_allclose(new_scores[0], np.sort(vectors @ expanded)[::-1], atol=1e-6)
    # alpha-QE with a large alpha weighs the first result far above the second
    _, alpha_ids = reranking.rerank(Rerank("alpha-qe", qe_top=2, qe_alpha=50.0), query[None], ids, vecs, scores)
    assert alpha_ids[0].tolist() == [0, 1, 2, 3, 4]


def test_missing_candidates_stay_last_and_none_is_identity():
    query = on_circle([0])[0]
    scores, ids, vecs = candidates(query, on_circle([10, 20, 30]))
    ids[0, 1], vecs[0, 1], scores[0, 1] = -1, 0, -np.inf  # faiss's "no result"
    for method in ("average-qe", "diffusion"):
        _, new_ids = reranking.rerank(Rerank(method, qe_top=2, graph_k=1), query[None], ids, vecs, scores)
        assert new_ids[0].tolist()[-1] == -1 and sorted(new_ids[0].tolist()[:2]) == [0, 2]
    same = reranking.rerank(Rerank("none"), query[None], ids, vecs, scores)
    assert same[0] is scores and same[1] is ids


def test_conjugate_gradient_solves_a_batch_of_systems():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 6, 6))
    a = m @ m.transpose(0, 2, 1) + 6 * np.eye(6)
    b = rng.normal(size=(3, 6))
    np.testing.assert_allclose(reranking.conjugate_gradient(a, b), np.linalg.solve(a, b[..., None])[..., 0],
                               atol=1e-8)


def test_search_rerank_keys_are_checked_before_any_work(tmp_path, capsys):
    from jobs import cli

    (tmp_path / "index").mkdir()
    (tmp_path / "queries").mkdir()
    args = ["search", "--index", str(tmp_path / "index"), "--queries", str(tmp_path / "queries"),
            "--output", str(tmp_path / "out"), "--set", f"runs_table={tmp_path / 'runs'}"]
    assert cli.main([*args, "--set", "rerank=bogus"]) == 2
    assert "rerank" in capsys.readouterr().err
    assert cli.main([*args, "--set", "rerank=diffusion", "--set", "query_expansion=average"]) == 2
    assert "keys 'query_expansion' and 'rerank' disagree" in capsys.readouterr().err
    assert cli.main([*args, "--set", "rerank=diffusion", "--set", "rerank_graph_k=0"]) == 2
    assert "key 'rerank_graph_k' must be > 0" in capsys.readouterr().err
