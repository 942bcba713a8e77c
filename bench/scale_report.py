"""Rendering bench/scale.py's results as its BENCHMARKS.md section: the table, verdicts, extrapolation."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.benchmarks_md import update_section  # noqa: F401  (bench/scale.py imports it from here)
from bench.index_report import CLUSTERS, DIM, NOISE, machine, table, verdict

THRESHOLD, COST_TARGET, RSS_TARGET = 0.95, 1.3, 1.25
JOBS = ("embed-texts", "embed-images", "build-index", "search", "dedup", "unique")
# Stages that run on the driver alone, whatever the cluster's size (the rest runs in tasks): build-index
# plans, trains on its sample, merges (memory only: 0 for a sharded index), tunes recall from the shards'
# partial top-k and publishes; search, dedup and unique run every stage as Spark tasks (grouping and
# ranking in Spark). Older runs named dedup's driver grouping `group + write`.
DRIVER_STAGES = {"build-index": ("plan", "train", "merge", "measure recall", "publish"),
                 "dedup": ("group + write",)}
TARGET_CAPS = {"build-index": 870_000, "dedup": 330_000}  # items/s on any cluster: 10x the 1M run of issue 15


@dataclass
class Run:
    """One `sparkamp` job run: wall s of the process, the job's own s and stages (runs table),
    {role: [[peak VmHWM, peak RssAnon] MiB per process]}, ok rows and the job's stats."""

    job: str
    n: int
    wall_s: float
    job_s: float
    stages: dict[str, float]
    rss: dict[str, list[list[float]]]
    rows_ok: int
    stats: dict[str, float]

    @property
    def us_per_item(self) -> float:
        return 1e6 * self.job_s / self.rows_ok

    def peak(self, role: str, anon: bool = False) -> float:
        """The largest peak VmHWM (or RssAnon) among the processes of `role`, MiB."""
        return max((p[int(anon)] for p in self.rss.get(role, [])), default=0.0)

    @property
    def driver_s(self) -> float:
        return sum(self.stages.get(s, 0.0) for s in DRIVER_STAGES.get(self.job, ()))


@dataclass
class Plan:
    """What one benchmark run measures."""

    vectors: list[int]
    texts: list[int]
    images: list[int]
    precision: str = "fp32"
    planted: dict[int, int] = field(default_factory=dict)  # near copies planted, by corpus size
    text_chars: float = 0.0  # mean characters per text
    image_bytes: float = 0.0  # mean bytes per image file
    inline: bool = False  # every job in the benchmark's process on one session (--quick)
    jobs: list[str] = field(default_factory=lambda: list(JOBS))  # the jobs measured (--jobs)
    shard_bytes: str = ""  # build-index's shard_bytes (--shard-bytes; "" = the job's default)
    factory: str = ""      # build-index's factory at every size (--factory; "" = auto)
    memory_budget: str = ""  # build-index's memory_budget (--memory-budget; "" = the job's default)


@dataclass
class Results:
    """One benchmark run: what was asked, measured, and the other processes' CPU-seconds (total
    and by phase); saved as JSON with --save, rendered again with --render."""

    argv: list[str]
    plan: Plan
    runs: list[Run]
    other_s: float
    other_by_phase: dict[str, float]
    seconds: float
    date: str

    @classmethod
    def load(cls, path: Path) -> "Results":
        saved = json.loads(path.read_text())
        plan = Plan(**{**saved["plan"], "planted": {int(k): v for k, v in saved["plan"]["planted"].items()}})
        return cls(**{**saved, "plan": plan, "runs": [Run(**r) for r in saved["runs"]]})


def by_job(runs: list[Run]) -> dict[str, list[Run]]:
    """{job: its runs, smallest first}, in JOBS order."""
    return {job: sorted((r for r in runs if r.job == job), key=lambda r: r.n)
            for job in JOBS if any(r.job == job for r in runs)}


def size_rows(runs: list[Run]) -> list[list[Any]]:
    rows = []
    for job, series in by_job(runs).items():
        for prev, r in zip([None, *series], series):
            marginal = "—" if prev is None else \
                f"{1e6 * (r.job_s - prev.job_s) / (r.rows_ok - prev.rows_ok):,.0f}"
            rows.append([job, r.n, r.rows_ok, r.wall_s, r.job_s, round(r.us_per_item),
                         f"{r.us_per_item / series[0].us_per_item:.2f}", marginal, round(r.driver_s, 1),
                         round(r.peak("driver")), round(r.peak("driver", anon=True)), round(r.peak("jvm")),
                         round(r.peak("worker")), round(r.peak("worker", anon=True)), len(r.rss.get("worker", []))])
    return rows


def check_rows(runs: list[Run]) -> list[list[Any]]:
    rows = []
    for job, series in by_job(runs).items():
        first, last = series[0], series[-1]
        span = f"{first.n:,} → {last.n:,}"
        cost = last.us_per_item / first.us_per_item
        rss = last.peak("worker") / first.peak("worker")
        rows.append([job, "µs/item, largest ÷ smallest", span, f"{cost:.2f}",
                     verdict(cost, COST_TARGET, False)])
        if len(series) > 2:  # Δs/Δitems of the last step ÷ of the first: growth without fixed costs
            steps = [(b.job_s - a.job_s) / (b.rows_ok - a.rows_ok) for a, b in zip(series, series[1:])]
            rows.append([job, "marginal µs/item, last step ÷ first", f"{series[1].n:,} → {last.n:,}",
                         f"{steps[-1] / steps[0]:.2f}", verdict(steps[-1] / steps[0], COST_TARGET, False)])
        rows.append([job, "worker peak RSS (VmHWM), largest ÷ smallest", span, f"{rss:.2f}",
                     verdict(rss, RSS_TARGET, False)])
        for role in ("worker", "driver"):
            anon = last.peak(role, anon=True) / max(first.peak(role, anon=True), 1e-9)
            rows.append([job, f"{role} peak anon RSS, largest ÷ smallest", span, f"{anon:.2f}",
                         verdict(anon, RSS_TARGET, False)])
        if first.driver_s:
            grew = last.driver_s / first.driver_s
            rows.append([job, "driver-only s, largest ÷ smallest", span, f"{grew:.2f}",
                         verdict(grew, RSS_TARGET, False)])
    return rows


def merge_pointer(md: Path) -> str:
    """The on-disk merge row that bench/index.py measured, quoted from its section of BENCHMARKS.md."""
    lines = md.read_text().splitlines() if md.exists() else []
    section = lines[lines.index("## bench/index.py"):] if "## bench/index.py" in lines else []
    row = next((line for line in section if line.startswith("| ondisk |")), "")
    cells = [c.strip() for c in row.strip("|").split("|")]
    if len(cells) < 10:
        return "- Merge peak RSS: not re-measured here; see `## bench/index.py` (no on-disk row found)."
    return (f"- Merge peak RSS (target of the index issue: on-disk merge ≤ 1.5× the largest shard): not "
            f"re-measured here; `## bench/index.py` measured the on-disk merge of 1M vectors at VmHWM "
            f"{cells[2]} MiB = {cells[7]}× the largest shard ({cells[9]}), of which anonymous memory "
            f"{cells[4]} MiB = {cells[8]}× the shard; the rest is touched pages of memory-mapped files.")


def marginals(series: list[Run], skip: str = "") -> list[float]:
    """Δ job s ÷ Δ items between consecutive sizes, µs; without the stage `skip` if given."""
    cost = [r.job_s - r.stages.get(skip, 0.0) for r in series]
    return [1e6 * (cost[i + 1] - cost[i]) / (b.rows_ok - a.rows_ok)
            for i, (a, b) in enumerate(zip(series, series[1:]))]


def cost_observations(jobs: dict[str, list[Run]]) -> list[str]:
    """Where the cost per item comes from: fixed costs, the factory that auto picks, dedup's grouping."""
    steps = "; ".join(f"{job} " + " → ".join(f"{m:,.0f}" for m in marginals(s)) for job, s in jobs.items()
                      if len(s) > 1)
    lines = ["- Each run pays a fixed cost (Spark jobs to read, count, validate and publish, models "
             "loaded per worker), so µs/item falls with size and largest ÷ smallest is met trivially; "
             f"the marginal µs/item (Δs ÷ Δitems, step by step) is the linearity figure: {steps}."]
    builds = jobs.get("build-index", [])
    if len(builds) > 2 and builds[-1].stages.get("train", 0) > 1:
        last, plain = builds[-1], marginals(builds[-3:], skip="train")
        lines.append(f"- build-index: the factory that auto picks changes with size (Flat needs no "
                     f"training; `{last.stats.get('factory')}` at {last.n:,} trains for "
                     f"{last.stages['train']:.1f} s), so the last step carries the training; without "
                     f"the `train` stage the marginal goes {plain[0]:,.0f} → {plain[1]:,.0f} µs/vector "
                     f"({plain[1] / plain[0]:.2f}x).")
    factories = {r.n: f"`{r.stats.get('factory')}`" for r in builds}
    searches = jobs.get("search", [])
    if searches:
        lines.append("- search, µs/query end to end: " + " → ".join(
            f"{r.us_per_item:,.0f} ({r.n:,}, {factories.get(r.n, '?')})" for r in searches)
            + ": a Flat index costs ∝ n per query, an IVF one ∝ nprobe × n ÷ lists.")
    dedups = jobs.get("dedup", [])
    if dedups:
        lines.append("- dedup's stages: " + "; ".join(
            f"{r.n:,}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r.stages.items())
            + f" ({r.stats.get('duplicated_items', 0):,.0f} duplicated items)" for r in dedups) + ".")
    return lines


def memory_observations(jobs: dict[str, list[Run]]) -> list[str]:
    """What the largest processes hold at the largest vector size."""
    builds, lines, index = jobs.get("build-index", []), [], 0.0
    if builds:
        b = builds[-1]
        shard = b.stats.get("shard_mib") or b.n / max(b.stats.get("shards", 1), 1) * (4 * DIM + 8) / 2**20
        index = b.stats.get("index_mib", 0.0)
        lines.append(f"- build-index at {b.n:,}: {b.stats.get('shards', 0):.0f} shards, the largest ~{shard:,.0f} "
                     f"MiB (shard_bytes bounds a shard whatever the corpus): largest worker "
                     f"{b.peak('worker'):,.0f} MiB = {b.peak('worker') / max(shard, 1):,.1f}x its shard (anon "
                     f"{b.peak('worker', True):,.0f}); the driver {b.peak('driver'):,.0f} MiB (anon "
                     f"{b.peak('driver', True):,.0f}) with merge `{b.stats.get('merge', '?')}` of a "
                     f"{index:,.0f} MiB index.")
    for job in ("search", "dedup", "unique"):
        for r in jobs.get(job, [])[-1:]:
            lines.append(f"- {job} at {r.n:,}: largest worker {r.peak('worker'):,.0f} MiB, of which "
                         f"anonymous {r.peak('worker', True):,.0f}; the rest is file-backed pages: "
                         f"libraries and the memory-mapped index ({index:,.0f} MiB).")
    jvm = [f"{job} {s[0].peak('jvm'):,.0f} → {s[-1].peak('jvm'):,.0f}"
           for job, s in jobs.items() if len(s) > 1]
    lines.append("- The JVM's peak, smallest → largest size (" + ", ".join(jvm) + " MiB): its heap "
                 "grows lazily toward the default maximum (a quarter of RAM), so growth there is not "
                 "by itself a leak.")
    return lines


def amdahl_rows(runs: list[Run], cores: tuple[int, ...]) -> list[list[Any]]:
    """Per job at its largest size: task-part items/s per core, driver-only seconds, and items/s on
    `cores` cores if the task part divides among them and the driver-only part does not."""
    rows = []
    for job, series in by_job(runs).items():
        r = series[-1]
        tasks_s = r.job_s - r.driver_s
        crossover = f"{2 * tasks_s / r.driver_s:,.0f}" if r.driver_s else "—"
        rows.append([job, r.n, round(r.rows_ok / r.job_s, 1), round(r.rows_ok / (2 * tasks_s), 1),
                     round(r.driver_s, 1), crossover,
                     *(f"{r.rows_ok / (r.driver_s + 2 * tasks_s / c):,.0f}" for c in cores)])
    return rows


def command(argv: list[str]) -> list[str]:
    """The measuring arguments of a run: without --no-md and --save PATH, which change no figure."""
    shown, skip = [], False
    for arg in argv:
        if not skip and arg not in ("--no-md", "--save"):
            shown.append(arg)
        skip = arg == "--save"
    return shown


def report(results: Results) -> str:
    """The section body: command, date, machine, the size table, verdicts, extrapolation, notes."""
    plan, runs = results.plan, results.runs
    lines = [f"Command: `{' '.join(['.venv/bin/python', 'bench/scale.py', *command(results.argv)])}`  ",
             f"Date: {results.date}  ",
             f"Machine: {machine()} (`lscpu`); Spark local[2]; whole run {results.seconds / 60:.1f} min; "
             f"embeddings in {plan.precision}. **Shared machine**: other engineers' benchmarks and "
             f"tests may run at the same time; other processes used {results.other_s:,.0f} "
             f"CPU-seconds during this run ({results.other_s / (2 * results.seconds):.0%} of the 2 "
             "cores), by phase in the notes.", ""]
    lines += table(["job", "corpus", "items", "wall s", "job s", "µs/item", "growth", "marginal µs/item",
                    "driver-only s", "driver Py MiB", "driver anon MiB", "JVM MiB", "worker MiB",
                    "worker anon MiB", "workers"],
                   size_rows(runs))
    lines += [f"Targets: cost per item (job s ÷ items) grows ≤ {COST_TARGET}× from the smallest to the "
              f"largest size; worker RSS does not grow (taken here as ≤ {RSS_TARGET}×), for the largest "
              "Python worker's VmHWM and for its anonymous RSS; the driver's Python process's anonymous RSS "
              f"and the driver-only seconds (`{'`, `'.join(DRIVER_STAGES['build-index'])}` of build-index) "
              f"grow ≤ {RSS_TARGET}× too:", ""]
    lines += table(["job", "figure", "sizes", "ratio", "target"], check_rows(runs))
    lines += [merge_pointer(Path(__file__).resolve().parent.parent / "BENCHMARKS.md"), ""]
    jobs = by_job(runs)
    lines += ["Seen:", *cost_observations(jobs), *memory_observations(jobs), ""]
    lines += ["Extrapolation to a cluster: see the full run's section.", ""] if plan.inline else \
        extrapolation(runs, plan)
    return "\n".join([*lines, *notes(results)])


def extrapolation(runs: list[Run], plan: Any) -> list[str]:
    """The written extrapolation to a cluster, from this run's largest size of each job."""
    cores = (16, 128, 1024)
    last = {job: series[-1] for job, series in by_job(runs).items()}
    lines = ["### Extrapolation to a cluster", "",
             "Assumptions: an executor core runs tasks as fast as a core here (one task per core, "
             "local[2] = 2 cores); the driver-only stages (build-index: plan, train on the sample, merge "
             "(small indexes only), recall from the shards' partial top-k, publish) do not speed up with "
             "cores; every other second divides among the cores (Amdahl); network and shuffle keep up. Per "
             "job at its largest size measured here:", ""]
    lines += table(["job", "corpus", "items/s, 2 cores", "items/s per core (tasks)", "driver-only s",
                    "cores where driver = tasks", *(f"items/s, {c:,} cores" for c in cores)],
                   amdahl_rows(runs, cores))
    bullets = {
        "embed-images": lambda r: (
            f"- embed-images: {r.rows_ok / (r.job_s - r.driver_s) / 2:,.1f} images/s per core on "
            f"28x28 PNGs of {plan.image_bytes:,.0f} bytes (decode {r.stats.get('decode_seconds', 0):,.0f} "
            f"s vs model {r.stats.get('model_seconds', 0):,.0f} s, summed over tasks), so the model "
            "bounds it. Photos cost more to decode and to read: at an assumed 200 KB per JPEG each "
            f"core reads {r.rows_ok / r.job_s / 2 * 0.2:,.1f} MB/s, so 1,000 cores need "
            f"{r.rows_ok / r.job_s / 2 * 0.2:,.1f} GB/s from storage: past the read bandwidth of the "
            "store (an assumed 10 GB/s object store: "
            f"{10_000 / (r.rows_ok / r.job_s / 2 * 0.2):,.0f} cores), storage is the bottleneck."),
        "embed-texts": lambda r: (
            f"- embed-texts: {r.rows_ok / r.job_s / 2:,.1f} texts/s per core for glosses of "
            f"{plan.text_chars:,.0f} characters on average (cost grows with tokens per text); the "
            "input is a few hundred bytes per text, so it stays CPU-bound to thousands of cores; the "
            "driver only lists, counts and publishes."),
        "build-index": lambda r: (
            f"- build-index ({r.stats.get('factory', '?')}, merge `{r.stats.get('merge', '?')}`, largest shard "
            f"{r.stats.get('shard_mib', 0):,.0f} MiB at {r.n:,}): adding shards (each also giving its exact and "
            f"approximate top-k of the recall queries) divides among cores; the driver plans, trains on a sample "
            f"(train_size 100k: {r.stages.get('train', 0):.1f} s; it grows with the lists auto picks, not with n), "
            f"merges only a small index (`merge` {r.stages.get('merge', 0):.1f} s), tunes recall from the partials "
            f"({r.stages.get('measure recall', 0):.1f} s) and publishes ({r.stages.get('publish', 0):.1f} s); "
            f"driver peak {r.peak('driver'):,.0f} MiB ({r.peak('driver', True):,.0f} anonymous). "
            + cap_sentence(by_job(runs)["build-index"], "vectors")),
        "search": lambda r: (
            f"- search: {r.rows_ok / r.job_s / 2:,.0f} queries/s per core here, index merge "
            f"`{r.stats.get('merge', '?')}` ({r.stats.get('shards', 0):.0f} shards); largest worker "
            f"{r.peak('worker'):,.0f} MiB at {r.n:,} vectors, {r.peak('worker', True):,.0f} MiB of it "
            "anonymous (the file-backed rest, the memory-mapped index files, is shared by a machine's workers "
            "through the page cache). Queries divide among cores with no driver-only stage."),
        "dedup": lambda r: (
            f"- dedup: the k-NN divides among cores like search; pairs are grouped into duplicate groups in "
            f"Spark ({r.stats.get('duplicated_items', 0):,.0f} duplicated items at {r.n:,}); largest worker "
            f"{r.peak('worker'):,.0f} MiB ({r.peak('worker', True):,.0f} anonymous), driver "
            f"{r.peak('driver', True):,.0f} MiB anonymous. " + cap_sentence(by_job(runs)["dedup"], "items")),
        "unique": lambda r: (
            f"- unique: the k-NN of every item divides among cores like dedup's; ranks come from a "
            f"range-partitioned sort in Spark; largest worker {r.peak('worker'):,.0f} MiB "
            f"({r.peak('worker', True):,.0f} anonymous), driver {r.peak('driver', True):,.0f} MiB anonymous. "
            + cap_sentence(by_job(runs)["unique"], "items")),
    }
    return [*lines, *(bullets[job](r) for job, r in last.items()), ""]


def cap_sentence(series: list[Run], unit: str) -> str:
    """The throughput the driver-only seconds allow on any cluster (Amdahl with infinite cores), from the
    run's own numbers, with its verdict against TARGET_CAPS."""
    last, job = series[-1], series[-1].job
    target = TARGET_CAPS.get(job)
    wanted = f" (target ≥ {target:,} {unit}/s: " if target else " ("
    if not last.driver_s:
        return (f"No driver-only stage: on a large enough cluster the tasks' own seconds bound it, not one "
                f"process{wanted}{'met' if target else 'no target'}, as far as stage seconds tell).")
    at_n = last.n / last.driver_s
    text = f"Its driver-only stages take {last.driver_s:.1f} s at {last.n:,}: at most {at_n:,.0f} {unit}/s on any cluster"
    if len(series) > 1 and last.driver_s > series[-2].driver_s:
        prev = series[-2]
        marginal = (last.n - prev.n) / (last.driver_s - prev.driver_s)
        text += (f"; they grew {last.driver_s / prev.driver_s:.2f}x for {last.n / prev.n:.0f}x the corpus, so a "
                 f"growing corpus is capped near {marginal:,.0f} {unit}/s (Δn ÷ Δ driver s)")
        at_n = marginal
    elif len(series) > 1:
        text += f"; they did not grow from {series[-2].n:,} (so the cap rises with n)"
    return text + (f"{wanted}{verdict(at_n, target, True)})." if target else ".")


def notes(results: Results) -> list[str]:
    plan, runs = results.plan, results.runs
    factories = ", ".join(f"{r.n:,}: `{r.stats.get('factory', '?')}` nprobe {r.stats.get('nprobe', 0):.0f}"
                          for r in runs if r.job == "build-index")
    found = ", ".join(f"{r.n:,}: {r.stats.get('duplicated_items', 0):,.0f} of {2 * plan.planted[r.n]:,}"
                      for r in runs if r.job == "dedup")
    return [
        "Notes:",
        ("- `--quick`: every job ran in the benchmark's process (`jobs.cli.main`, as `sparkamp` does) "
         "on one running local[2] session: wall s has no JVM start, Python workers may stay warm "
         "between jobs, VmHWM is reset (clear_refs 5) before each job, and driver Py includes the "
         "benchmark itself. " if plan.inline else
         "- Each job ran as users run it: `.venv/bin/sparkamp <job> --set master=local[2] ...` as a "
         "child process. wall s = the process (JVM and session start included). ")
        + "job s = the run's `seconds` in its runs-table row (session up → summary); µs/item and "
        "growth use job s. "
        "growth = µs/item ÷ the smallest size's; marginal = Δ job s ÷ Δ items from the size above. "
        "Each size ran once.",
        "- RSS: every process of the job's tree polled every 0.2 s, peak VmHWM per process. "
        "driver Py = the sparkamp process; JVM = Spark's JVM, in local mode also the executor (its "
        "heap holds shuffle and broadcast blocks); worker = the largest Python worker forked by "
        "pyspark.daemon (workers = how many were seen, including short-lived ones); worker anon = "
        "its sampled peak RssAnon, memory not backed by files (VmHWM also counts touched pages of "
        "memory-mapped files, which the page cache shares between workers).",
        f"- Vectors: bench/index.py's data ({CLUSTERS} Gaussian clusters, noise σ={NOISE}, unit "
        f"{DIM}-d) in 100k-row Parquet files, the last 1% of each file a planted near copy (cosine ≈ "
        f"0.98) of an earlier row. build-index: factory {plan.factory or 'auto'} ({factories}), shard_bytes "
        f"{plan.shard_bytes or 'default'}. search: `--k 10 "
        "--exclude-self` with the first tenth of each file as queries (items = queries). unique: all items. dedup: "
        f"`--threshold {THRESHOLD}` with the built index; duplicated items found of those planted "
        f"(copies and their originals; an original drawn twice makes one group of 3): {found}.",
        *([f"- Texts: a seeded sample of WordNet noun glosses (`word: first sentence of the gloss`, "
        f"{plan.text_chars:,.0f} characters on average), JSON Lines; there is no 1M of real text "
        f"here, the largest measured is {max(plan.texts, default=0):,} (all: 82,115). Images: "
        f"Fashion-MNIST as PNGs (t10k, then train); sizes run: "
        f"{', '.join(f'{n:,}' for n in plan.images) or 'none'} of 70,000.",
        f"- Embeddings with `precision: {plan.precision}`"
        + (" (the key exists in the jobs at the time of the run)." if plan.precision != "fp32" else ".")]
          if plan.texts or plan.images else []),
        "- Other processes' CPU-seconds by phase: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in results.other_by_phase.items()) + ".",
    ]
