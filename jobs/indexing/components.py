"""Connected components of an edge list in Spark: the alternating large-star / small-star algorithm of
Kiveris et al. 2014 ("Connected Components in MapReduce and Beyond", SoCC), as DataFrame joins and
aggregations with a Parquet checkpoint per round.

GraphFrames implements the same algorithm, but its JVM jar comes only from Maven and cannot be installed
here, so this is our own (read against the paper, ~100 lines). Nothing but counts reaches the driver.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from jobs.tables.publish import remove
from jobs.tables.scratch import checkpoint

log = logging.getLogger(__name__)

MAX_ROUNDS = 100  # the paper's bound is O(log² n) rounds; a 20,000-node chain takes 14


@dataclass(frozen=True)
class Components:
    """The result of connected_components."""

    members: object  # DataFrame(id string, group_id string): every id of an edge, its component's smallest id
    count: int       # rows of `members` (ids with an edge, self-loops included)
    rounds: int      # large-star + small-star rounds until every component was a star


def connected_components(edges, work: str) -> Components:
    """The connected components of the undirected graph `edges` (DataFrame(id_a, id_b) of non-null string
    ids; self-loops and repeated edges allowed), each id labelled with its component's smallest id (Spark's
    string order = Python's for valid UTF-8, so it equals union-find's: tests/test_components.py).

    Ids become int64 once (monotonically_increasing_id of the distinct ids, written to `work`: unique,
    so no hash collisions); each round is a large-star then a small-star step over edges (src > dst),
    checkpointed to `work` (a scratch folder, e.g. scratch.folder's); it stops when every component is a
    star around its smallest node. `members` reads `work`: use it before the folder is removed.
    Raises RuntimeError past MAX_ROUNDS (a bug, not an input)."""
    from pyspark.sql import functions as F

    ends = edges.select(F.col("id_a").alias("id")).union(edges.select(F.col("id_b").alias("id"))).distinct()
    nodes = checkpoint(ends.withColumn("node", F.monotonically_increasing_id()), f"{work}/nodes")
    a, b = (nodes.select(F.col("id").alias(f"id_{s}"), F.col("node").alias(s)) for s in "ab")
    ints = edges.join(a, "id_a").join(b, "id_b")
    current = checkpoint(ints.select(F.greatest("a", "b").alias("src"), F.least("a", "b").alias("dst"))
                         .filter(F.col("src") != F.col("dst")).distinct(), f"{work}/edges-0")
    rounds, (count, unfinished) = 0, _unfinished(current)
    while unfinished:
        log.info("connected components: round %d, %d edges, %d nodes not yet in a star", rounds, count, unfinished)
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
        current = checkpoint(_small_star(_large_star(current)), f"{work}/edges-{rounds}")
        remove(edges.sparkSession, f"{work}/edges-{rounds - 1}")  # nothing reads it any more
        count, unfinished = _unfinished(current)
    log.info("connected components: %d rounds, %d edges to roots", rounds, count)
    root = nodes.join(current.select(F.col("src").alias("node"), F.col("dst").alias("root")), "node", "left")
    root = root.select("id", F.coalesce("root", "node").alias("root"))
    smallest = root.groupBy("root").agg(F.min("id").alias("group_id"))
    return Components(root.join(smallest, "root").select("id", "group_id"), nodes.count(), rounds)


def _large_star(edges):
    """Each node u links each larger neighbour v to m(u) = the smallest of u and its neighbours; the
    result may repeat an edge (small-star's distinct removes repeats)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    both = edges.select(F.col("src").alias("u"), F.col("dst").alias("v")).union(
        edges.select(F.col("dst").alias("u"), F.col("src").alias("v")))
    low = F.least(F.min("v").over(Window.partitionBy("u")), F.col("u"))
    return (both.withColumn("m", low).filter(F.col("v") > F.col("u"))
            .select(F.col("v").alias("src"), F.col("m").alias("dst")))


def _small_star(edges):
    """Each node u links itself and its smaller neighbours to m(u) = its smallest neighbour (edges have
    src > dst, so u's smaller neighbours are its dsts); distinct edges, src > dst."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    low = edges.withColumn("m", F.min("dst").over(Window.partitionBy("src")))
    pairs = F.array(F.struct(F.col("dst").alias("src"), F.col("m").alias("dst")),
                    F.struct("src", F.col("m").alias("dst")))
    moved = low.select(F.explode(pairs).alias("e")).select("e.src", "e.dst")
    return moved.filter(F.col("src") != F.col("dst")).distinct()


def _unfinished(edges) -> tuple[int, int]:
    """(edges, nodes that keep a component from being a star): a node with two edges to smaller nodes,
    or with one while it is also the smaller end of another edge. 0 nodes = a fixed point of both steps."""
    from pyspark.sql import functions as F

    ends = edges.select(F.col("src").alias("node"), F.lit(1).alias("up"), F.lit(0).alias("down")).union(
        edges.select(F.col("dst").alias("node"), F.lit(0).alias("up"), F.lit(1).alias("down")))
    degrees = ends.groupBy("node").agg(F.sum("up").alias("up"), F.max("down").alias("down"))
    bad = (F.col("up") > 1) | ((F.col("up") == 1) & (F.col("down") == 1))
    row = degrees.agg(F.sum("up"), F.count(F.when(bad, 1))).first()
    return int(row[0] or 0), int(row[1])
