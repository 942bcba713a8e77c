"""The `sparkamp` command: `sparkamp <job> [--conf FILE] [--set key=value ...] [flags]`."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import typing
from types import ModuleType

from jobs import JOBS
from jobs.core import config
from jobs.core.config import ConfigError

log = logging.getLogger("sparkamp")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in JOBS:
        print(f"sparkamp: unknown job {name!r}\n\n{_overview()}", file=sys.stderr)
        return 2
    return run_job(importlib.import_module(JOBS[name]), rest)


def _overview() -> str:
    lines = ["usage: sparkamp <job> [--conf FILE.yaml] [--set key=value ...] [flags]", "", "jobs:"]
    for name, module in JOBS.items():
        doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name:<14} {doc}")
    lines.append("\n`sparkamp <job> --help` lists every config key with its type and default.")
    return "\n".join(lines)


def build_parser(job: ModuleType) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"sparkamp {job.NAME}", description=(job.__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys (YAML, --set key=value, or the flags above):\n"
               + config.reference(job.Config))
    parser.add_argument("--conf", help="YAML file of config keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key (repeatable); spark.* keys go to the session")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    hints = typing.get_type_hints(job.Config)
    for name, f in config.fields(job.Config).items():
        if f.metadata.get("flag"):
            kind = hints[name]
            if kind is bool:
                parser.add_argument(f.metadata["flag"], dest=name, action="store_true", default=None,
                                    help=f.metadata["help"])
            else:
                parser.add_argument(f.metadata["flag"], dest=name, default=None, metavar=name.upper(),
                                    help=f.metadata["help"])
    return parser


def run_job(job: ModuleType, argv: list[str]) -> int:
    """Parse and validate (no Spark yet), then session → job.run → summary. Exit code 0/1/2."""
    args = build_parser(job).parse_args(argv)
    flags = {n: getattr(args, n) for n, f in config.fields(job.Config).items() if f.metadata.get("flag")}
    try:
        cfg = config.load(job.Config, args.conf, args.set, flags)
    except ConfigError as exc:
        print(f"sparkamp {job.NAME}: config error: {exc}\n"
              f"  see `sparkamp {job.NAME} --help` for every key and what it accepts", file=sys.stderr)
        return 2
    _configure_logging(cfg.log_level)
    if args.dry_run:
        print(json.dumps(config.as_dict(cfg), indent=2))
        steps = job.plan(cfg) if hasattr(job, "plan") else None  # a job of several steps lists them
        print(f"plan: {getattr(job, 'PLAN', job.NAME)}" + (f"\n{steps}" if steps else ""))
        print("(dry run: nothing was run)")
        return 0
    return execute(job, cfg)


def execute(job: ModuleType, cfg: typing.Any) -> int:
    from jobs.core import session, summary

    if not getattr(job, "USES_SPARK", True):  # serve: a web server; its Spark runs are child processes
        return job.run(cfg)
    metastore = any(isinstance(v, str) and v.startswith(config.TABLE_PREFIX)
                    for v in config.as_dict(cfg).values())  # any `table:` input or output
    spark, owned = session.get_session(cfg, job.NAME, metastore=metastore)
    run = summary.RunSummary(job.NAME, summary.new_run_id())
    try:
        job.run(spark, cfg, run)
        run.log_summary()
        summary.append_run(spark, cfg.runs_table, run.row(config.as_dict(cfg)))
        if hasattr(job, "next_step"):  # what to run next (the demo: the app on what it built)
            print(job.next_step(cfg))
        return 0
    except ConfigError as exc:
        log.error("%s: %s\n  fix the key above and re-run; `sparkamp %s --help` lists the accepted keys",
                  job.NAME, exc, job.NAME)
        return 2
    except summary.JobFailed as exc:
        log.error("%s failed: %s\n  its output was not published (any previous one is unchanged); fix the cause "
                  "and re-run, or see `sparkamp %s --help`", job.NAME, exc, job.NAME)
        return 1
    finally:
        if owned:
            spark.stop()


def _configure_logging(level: str) -> None:
    """The CLI is the application: it, not library code, decides where sparkamp's logs go."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    for name in ("sparkamp", "jobs", "udfs", "index"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
            logger.propagate = False
        logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
