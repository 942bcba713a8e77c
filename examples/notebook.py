"""sparkamp from a notebook or your own pipeline: your SparkSession, your DataFrames, sparkamp's functions.

Run it from the repository (or with sparkamp installed):
    python examples/notebook.py [--images 50] [--texts 50] [--work /tmp/sparkamp-example]

It writes a few packaged Fashion-MNIST images as PNG files, embeds them, indexes them, finds each one's
nearest neighbours, labels a few fortune cookies zero-shot, and prints what it found.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when sparkamp is not installed

from pyspark.sql import SparkSession  # noqa: E402

import sparkamp  # noqa: E402
from jobs.samples import datasets  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--texts", type=int, default=50)
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="sparkamp-example-"))
    args = parser.parse_args()
    work = Path(args.work)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this Python's packages
    spark = (SparkSession.builder.master("local[2]").appName("sparkamp example")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")

    # a DataFrame of image paths, as you would have one
    classes = datasets.write_fashion_mnist(work / "images", args.images, seed=0)
    paths = spark.createDataFrame([(name, str(work / "images" / name)) for name in sorted(classes)],
                                  "id string, path string")
    images = sparkamp.embed_images(paths, path_col="path").cache()
    statuses = {r.status: r["count"] for r in images.groupBy("status").count().collect()}
    print(f"embedded {images.count()} images: {statuses}")

    info = sparkamp.build_index(images, str(work / "index"))
    print(f"index: {info.factory}, {info.ntotal} vectors of {info.dim}-d, recall@10 {info.recall_at_10:.3f}")

    neighbours = sparkamp.search(images, str(work / "index"), k=3, exclude_self=True)
    for query in sorted(classes)[:3]:
        found = neighbours.filter(neighbours.query_id == query).orderBy("rank").collect()
        print(f"nearest to {query} ({classes[query]}): "
              + ", ".join(f"{r.neighbor_id} ({classes[r.neighbor_id]}, {r.score:.2f})" for r in found))

    # a DataFrame of texts, labelled zero-shot with label names alone
    fortunes = spark.createDataFrame([(r["id"], r["text"]) for r in datasets.fortunes()[::50][:args.texts]],
                                     "id string, text string")
    labels = sparkamp.assign_labels(sparkamp.embed_texts(fortunes), list(datasets.FORTUNE_CATEGORIES))
    statuses = {r.status: r["count"] for r in labels.groupBy("status").count().collect()}
    print(f"labelled {labels.count()} fortunes: {statuses}")
    for row in labels.orderBy("id").limit(3).collect():
        print(f"  {row.id}: {row.label} ({row.score:.2f})")

    # a column function, for withColumn / select
    one = paths.limit(1).withColumn("e", sparkamp.image_embedding("path")).select("id", "e.status", "e.embedding")
    row = one.first()
    print(f"image_embedding({row.id}): {row.status}, {len(row.embedding)} values")
    spark.stop()


if __name__ == "__main__":
    main()
