"""PCA whitening learnt from an embeddings table in Spark (the covariance by a distributed aggregation),
saved with a manifest, and applied to a table's rows."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobs.core.config import ConfigError
from jobs.tables.contracts import Embeddings
from udfs import precision, whitening
from udfs.batches import rebatch
from udfs.whitening import Sums, Whitening

BLOCK_ROWS = 4096  # vectors per numpy block on a worker: [4096, d] float64 and the [d, d] sums


@dataclass(frozen=True)
class WhiteningOptions:
    """How a whitening is fitted; the names are config keys."""

    whiten_dim: int = 0            # leading components kept; 0 = all the data spans
    whiten_shrinkage: float = 0.0  # eigenvalues shrunk towards their mean, 0..1

    def check(self) -> None:
        if self.whiten_dim < 0:
            raise ConfigError(f"key 'whiten_dim' must be >= 0 (0 = every component), got {self.whiten_dim!r}")
        if not 0 <= self.whiten_shrinkage <= 1:
            raise ConfigError(f"key 'whiten_shrinkage' must be in 0..1, got {self.whiten_shrinkage!r}")


def corpus_sums(table: Embeddings) -> Sums:
    """n, Σx and Σxxᵀ of the table's usable ok vectors: each partition's sums in numpy (mapInPandas), then a
    tree reduce of the [d, d] matrices, so no process holds the rows and the driver gets one matrix."""
    dim = table.dim

    def partial(frames):
        sums = whitening.partial_sums(np.stack(block["embedding"].to_numpy()) for block in rebatch(frames, BLOCK_ROWS))
        if sums is not None:
            yield pd.DataFrame({"n": [sums.n], "total": [sums.total.tobytes()], "outer": [sums.outer.tobytes()]})

    rows, _ = table.usable("ip", "the whitening")
    parts = rows.select("embedding").mapInPandas(partial, "n long, total binary, outer binary")
    return parts.rdd.map(lambda r: Sums(r["n"], np.frombuffer(r["total"], np.float64),
                                        np.frombuffer(r["outer"], np.float64).reshape(dim, dim))) \
        .treeReduce(lambda a, b: a + b)


def fit_whitening(table: Embeddings, folder: str, opts: WhiteningOptions = WhiteningOptions()) -> Whitening:
    """The PCA whitening of `table`'s ok vectors (udfs.whitening.fit of `corpus_sums`), saved to the local
    `folder` with a manifest naming the table, its model, n and the dims. ConfigError when the options are
    out of range or the table has fewer than 2 usable vectors."""
    opts.check()
    sums = corpus_sums(table)
    try:
        fitted = whitening.fit(sums, opts.whiten_dim, opts.whiten_shrinkage)
    except ValueError as exc:
        raise ConfigError(f"key 'whiten_dim': {exc}") from None
    whitening.save(fitted, folder, {"model": table.model, "source": table.location, "n": sums.n,
                                    **dataclasses.asdict(opts)})
    return fitted


def whitened_label(model: str, folder: str) -> str:
    """The `model` label of `model`'s embeddings whitened by `folder`, as udfs.cnn writes it (before the
    precision suffix): `efficientnet-lite0+gem3+whiten:/w`, `...+whiten:/w+bf16`."""
    base, kind = precision.split_label(model)
    return precision.with_precision(f"{base}+whiten:{folder}", kind)


def whiten_rows(rows, folder: str, label: str):
    """`rows` (an embeddings DataFrame) with each ok vector whitened by the whitening saved at `folder`
    (udfs.whitening.apply, loaded once per task) and `model` set to `label`. Lazy."""
    def apply(frames):
        fitted = whitening.load(folder)
        for frame in frames:
            ok = frame["embedding"].notna().to_numpy()
            if ok.any():
                out = whitening.apply(fitted, np.stack(frame["embedding"].to_numpy()[ok]))
                frame.loc[ok, "embedding"] = pd.Series(list(out), index=frame.index[ok])
            frame["model"] = label
            yield frame
    return rows.mapInPandas(apply, rows.schema)
