"""Serve the prototypes' apps on the batch outputs: live search, an explorer, a label playground, a map."""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import ClassVar

if __package__ in (None, ""):  # `python jobs/serve.py` without the package on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.core.config import (TABLE_PREFIX, ConfigError, JobConfig, key, require_non_negative,  # noqa: E402
                          require_positive)
from jobs.core.paths import check_input_exists  # noqa: E402

NAME = "serve"
PLAN = ("load the index (checked against its manifest) and its model once → open the tables (row groups "
        "read by id, never whole) → project a seeded sample for the maps → serve the page and the HTTP API "
        "on host:port; 'apply to the table' runs assign-labels as a child process")
USES_SPARK = False  # a web server: the CLI starts no session for it
TABLES = ("embeddings", "neighbours", "duplicates", "uniqueness", "label_embeddings")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config(JobConfig):
    default_output: ClassVar[str] = "serve"
    output: str = key("", "where 'apply to the table' writes its labels tables (one folder per run); "
                      "empty = warehouse/serve", flag="--output")
    index: str = key("", "the index directory written by build-index (its model embeds live queries)",
                     flag="--index")
    compare_index: str = key("", "a second index of the same items (another model or layer), compared "
                             "side by side", flag="--compare-index")
    embeddings: str = key("", "the embeddings table behind the index: item pages, statuses, and the "
                          "image files behind thumbnails", flag="--embeddings")
    neighbours: str = key("", "a neighbours table (search): an item's stored neighbours", flag="--neighbours")
    duplicates: str = key("", "a duplicate-groups table (dedup)", flag="--duplicates")
    uniqueness: str = key("", "a uniqueness table (unique): the most unique items", flag="--uniqueness")
    gold: str = key("", "true labels (JSON {id: label}, CSV or Parquet with id and label_column): hits "
                    "and misses, rank-weighted precision, the maps' colours", flag="--gold")
    label_column: str = key("label", "label column of a tabular `gold`")
    labels_head: str = key("", "a saved label head (assign-labels): the playground's `head` method",
                           flag="--labels-head")
    label_set: str = key("", "a label-set YAML: the playground's starting labels and templates",
                         flag="--label-set")
    label_embeddings: str = key("", "a text embeddings table: the playground's map, and what 'apply to "
                                "the table' labels; empty = --embeddings of a text index",
                                flag="--label-embeddings")
    host: str = key("127.0.0.1", "address to listen on; another than loopback must be asked for "
                    "(the app has no log-in)", flag="--host")
    port: int = key(8000, "port to listen on; 0 = any free port (logged)", flag="--port")
    k: int = key(20, "results per query", flag="--k")
    max_upload_bytes: int = key(20 * 2**20, "largest image upload (or request body) accepted, in bytes")
    max_pixels: int = key(64_000_000, "largest image accepted, in pixels (decompression bombs are refused)")
    max_text_chars: int = key(10_000, "longest text accepted (a query or a text to label), in characters")
    map_sample: int = key(2000, "points on each map (a seeded sample, projected once at start-up)")
    compare_queries: int = key(200, "gold-labelled items the comparison's overall scores are measured on")
    thumb_size: int = key(128, "thumbnail side in pixels")
    zmap_vocab_size: int = key(20_000, "the playground's Zmap (when no zmap head is given): words it is fitted "
                               "on, once, at its first use")
    torch_threads: int = key(1, "torch threads per model call; 1 keeps latency steady when other work shares "
                             "the cores, and image queries then run side by side, one a core; 0 = all cores")
    seed: int = key(0, "seed of the map and comparison samples")

    def validate(self) -> None:
        super().validate()
        check_input_exists("index", self.index)
        for name in ("compare_index", "gold", "labels_head", "label_set", *TABLES):
            value = getattr(self, name)
            if value.startswith(TABLE_PREFIX):
                raise ConfigError(f"key '{name}': serve reads Parquet paths (it runs no Spark); give the "
                                  f"table's location instead of {value!r}")
            if value:
                check_input_exists(name, value)
        require_positive(self, "k", "max_upload_bytes", "max_pixels", "max_text_chars", "map_sample",
                         "compare_queries", "thumb_size", "zmap_vocab_size")
        require_non_negative(self, "torch_threads")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"key 'port' must be 0 to 65535, got {self.port}")
        if not self.host.strip():
            raise ConfigError("key 'host' is empty; 127.0.0.1 serves this machine only")


def app_options(cfg: Config):
    """The app's typed options from the job's config."""
    from jobs.app.apply import ApplyOptions
    from jobs.app.corpus import CorpusFiles
    from jobs.app.engine import UploadLimits
    from jobs.app.state import AppOptions

    files = CorpusFiles(cfg.embeddings, cfg.neighbours, cfg.duplicates, cfg.uniqueness, cfg.gold, cfg.label_column)
    return AppOptions(
        cfg.index, cfg.compare_index, files, cfg.label_embeddings, cfg.label_set, cfg.labels_head,
        UploadLimits(cfg.max_upload_bytes, cfg.max_pixels, cfg.max_text_chars), cfg.k, cfg.thumb_size,
        cfg.map_sample, cfg.compare_queries, cfg.seed, cfg.zmap_vocab_size, cfg.torch_threads,
        ApplyOptions("", cfg.output, cfg.warehouse, cfg.runs_table, cfg.master, cfg.zmap_vocab_size))


def run(cfg: Config) -> int:
    """Loads everything once, binds host:port, serves until interrupted. Exit 0, or 2 for a bad input."""
    import uvicorn

    from jobs.app import api, state

    try:
        sock = bind(cfg.host, cfg.port)
        loaded = state.load(app_options(cfg))
    except ConfigError as exc:  # as the CLI reports a bad config: no traceback
        print(f"sparkamp serve: config error: {exc}\n  see `sparkamp serve --help` for every key and what it "
              "accepts", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    if not ipaddress.ip_address(host).is_loopback:
        log.warning("serving on %s: anyone who can reach this machine can query the index and start labelling "
                    "runs (there is no log-in)", host)
    log.info("sparkamp serve: open http://%s:%d/ (Ctrl-C stops it)", cfg.host, port)
    server = uvicorn.Server(uvicorn.Config(api.create_app(loaded), log_level=cfg.log_level.lower(),
                                           access_log=cfg.log_level == "DEBUG"))
    server.run(sockets=[sock])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); ConfigError when the address is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # proto IPPROTO_TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so; without
        # it every answer on a kept-alive connection waited 40 ms for the client's delayed ACK
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(f"key 'port': cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


if __name__ == "__main__":
    from jobs import cli, serve

    sys.exit(cli.run_job(serve, sys.argv[1:]))
