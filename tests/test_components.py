"""Connected components in Spark (large-star / small-star) against union-find on random graphs, a long
chain, stars, cliques, isolated pairs, self-loops and repeated edges."""
from __future__ import annotations

import random
from typing import Iterable

from jobs.indexing.components import connected_components
from jobs.tables import scratch


def connected_groups(edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The oracle: union-find over id pairs, {id: its group's smallest id}."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    for a, b in edges:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def components(spark, tmp_path, edges: list[tuple[str, str]]):
    """({id: group_id} from Spark, rounds), the scratch folder gone afterwards."""
    df = spark.createDataFrame(edges, "id_a string, id_b string")
    with scratch.folder(spark, str(tmp_path / "groups"), "cc") as work:
        found = connected_components(df, work)
        members = {r.id: r.group_id for r in found.members.collect()}
        assert found.count == len(members)
    assert list((tmp_path / "_sparkamp_staging").iterdir()) == []
    return members, found.rounds


def test_union_find_oracle_by_hand():
    assert connected_groups([("b", "c"), ("d", "c"), ("x", "y")]) == \
        {"b": "b", "c": "b", "d": "b", "x": "x", "y": "x"}


def random_graph(seed: int) -> list[tuple[str, str]]:
    """A few hundred to a few thousand nodes, 0.3-1.2 edges per node, repeated edges and self-loops."""
    rng = random.Random(seed)
    nodes = [f"r{seed}-{rng.randrange(10**6):06x}-{i}" for i in range(rng.choice([300, 1500, 3000]))]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(int(len(nodes) * rng.uniform(0.3, 1.2)))]
    return edges + edges[:50] + [(n, n) for n in nodes[:20]]


def test_random_graphs_stars_cliques_pairs_equal_union_find(spark, tmp_path):
    """One Spark run over a disjoint union (each part alone would cost the same rounds of Spark jobs)."""
    star = [("s00", f"s{i:02d}") for i in range(1, 30)] + [(f"t{i:02d}", "t99") for i in range(20)]
    clique = [(f"c{i}", f"c{j}") for i in range(8) for j in range(8) if i != j]
    pairs = [("p2", "p1"), ("q1", "q2"), ("q2", "q1"), ("q1", "q2")]
    loops = [("solo", "solo"), ("p1", "p1")]
    unicode = [("é", "z"), ("日本", "é"), ("Z", "a")]
    randoms = [random_graph(seed) for seed in (0, 1, 2)]
    edges = star + clique + pairs + loops + unicode + [e for graph in randoms for e in graph]
    members, _ = components(spark, tmp_path, edges)
    assert members == connected_groups(edges)
    assert members["t99"] == "t00" and members["s29"] == "s00" and members["c7"] == "c0"
    assert members["p2"] == "p1" and members["solo"] == "solo" and members["日本"] == "z"
    for graph in randoms:  # neither one group nor all singletons
        found = connected_groups(graph)
        assert 1 < len(set(found.values())) < len(found)


def test_long_chain_converges_in_few_rounds(spark, tmp_path):
    """A path is label propagation's worst case (n rounds); large/small-star needs O(log² n) at most."""
    labels = [f"n{i:05d}" for i in range(20_000)]
    random.Random(7).shuffle(labels)
    edges = list(zip(labels, labels[1:]))
    members, rounds = components(spark, tmp_path, edges)
    assert set(members.values()) == {"n00000"} and len(members) == 20_000
    assert 1 < rounds <= 30
