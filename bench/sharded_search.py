"""Sharded vs merged index at a moderate size: build-index, search and dedup seconds, and whether the
results agree. `python bench/sharded_search.py --rows 200000 --folder /tmp/sharded-bench`."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from bench.scale import write_vectors
from jobs import cli


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    if cli.main(args) != 0:
        raise SystemExit(f"failed: {' '.join(args)}")
    return round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--nprobe", type=int, default=16)
    a = parser.parse_args()
    emb = a.folder / "emb"
    if not emb.exists():
        write_vectors(emb, a.rows)
    conf = a.folder / "spark.yaml"  # the training sample is collected: more than the default 1g driver heap
    conf.write_text("spark:\n  spark.driver.memory: 6g\n  spark.ui.showConsoleProgress: 'false'\n")
    common = ["--conf", str(conf), "--set", f"warehouse={a.folder / 'wh'}", "--set", f"runs_table={a.folder / 'runs'}"]
    result = {"rows": a.rows, "shards": a.shards, "nprobe": a.nprobe}
    for name, merge in (("merged", "merge=memory"), ("sharded", "merge=none")):
        index, seconds = str(a.folder / f"index-{name}"), {}
        seconds["build-index"] = timed(["build-index", "--embeddings", str(emb), "--output", index, "--set", merge,
                                        "--set", f"num_shards={a.shards}", "--set", f"nprobe={a.nprobe}", *common])
        seconds["search"] = timed(["search", "--index", index, "--queries", f"{emb}-queries", "--output",
                                   str(a.folder / f"nb-{name}"), "--k", "10", "--set", "mode=overwrite", *common])
        seconds["dedup"] = timed(["dedup", "--embeddings", str(emb), "--index", index, "--output",
                                  str(a.folder / f"groups-{name}"), "--set", "mode=overwrite", *common])
        result[name] = seconds
    nb = {n: pd.read_parquet(a.folder / f"nb-{n}").sort_values(["query_id", "rank"]).reset_index(drop=True)
          for n in ("merged", "sharded")}
    result["search_same_neighbour"] = float((nb["merged"].neighbor_id == nb["sharded"].neighbor_id).mean())
    groups = {n: sorted(sorted(g) for g in pd.read_parquet(a.folder / f"groups-{n}").groupby("group_id").id.apply(list))
              for n in ("merged", "sharded")}
    result["dedup_same_groups"] = groups["merged"] == groups["sharded"]
    result["dedup_groups"] = len(groups["merged"])
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
