"""The BENCHMARKS.md section of bench/embed.py: throughput, checks against targets, the step profile,
the before/after table and the notes."""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
from typing import Any

from bench import embed_engines
from bench.embed_engines import VARIANTS, spark_variant
from bench.embed_loops import Measure, peak_gflops

TARGET_RATIO, TARGET_NAIVE = 0.90, 2.0
TARGET_SCORE, PROTOTYPE_SCORE = 92.0, 89.5
NAIVE = "naive loop, 1 process x 2 threads, fp32"


def machine() -> str:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("Model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores"


def throughput_rows(kind: str, measures: list[Measure]) -> list[str]:
    """Markdown rows, one per variant; the last column is this rate ÷ the naive loop's."""
    naive = next((m.rate for m in measures if m.variant == NAIVE), 0.0)
    rows = []
    for m in measures:
        decode = f"{1000 * m.decode_s / m.items:.2f}" if m.decode_s else "—"
        ratio = f"{m.rate / naive:.2f}" if naive else ""
        rows.append(f"| {kind} | {m.variant} | {m.items} | {m.seconds:.2f} | {m.rate:.1f} | {decode} | "
                    f"{1000 * m.model_s / m.items:.2f} | {ratio} |")
    return rows


def checks(results: Any) -> list[tuple[str, str, str, bool]]:
    """(figure, measured, target, met) for every target of the embedding jobs."""
    out = []
    images = results.speed["images"]
    naive = images.get(NAIVE).rate
    for engine, precision in VARIANTS:
        ratio = images.get(spark_variant(engine, precision)).rate / naive
        out.append((f"images/s, Spark {engine} {precision} ÷ naive torch fp32 loop", f"{ratio:.2f}",
                    f">= {TARGET_NAIVE:.1f}", ratio >= TARGET_NAIVE))
    for kind, comparison in results.speed.items():
        for precision in ("fp32", "bf16"):
            ratio = comparison.spark_ratio(precision)
            out.append((f"{kind}/s, Spark ÷ best bare loop, {precision}", f"{ratio:.3f}",
                        f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO))
    for kind, qualities in results.quality.items():
        rows = next(iter(qualities.values())).rows
        out += embed_engines.check_rows(kind, "iconic200" if kind == "images" else f"{rows} AG News rows",
                                        qualities)
    unsorted, ordered = results.padding
    out.append(("sentences: padding share of token slots, batches of 8, arrival order → length-sorted per 1,024-row block",
                f"{unsorted:.1f} % → {ordered:.1f} %", "little padding", ordered < 5))
    score = results.scores[0][1]
    out.append(("iconic200 rank-weighted P@15 (%), efficientnet-lite0 fp32", f"{score:.1f}",
                f">= {TARGET_SCORE:.0f} (prototype best {PROTOTYPE_SCORE})", score >= TARGET_SCORE))
    return out


def flops_rows(results: Any) -> list[str]:
    """Achieved GFLOP/s of the CNN: over the Spark job's wall time and over its model time alone."""
    rows = ["| variant | images/s | GFLOP/s, whole job | GFLOP/s, model time only | peak | share of peak (model) |",
            "|---|---:|---:|---:|---|---:|"]
    for engine, precision in VARIANTS:
        m = results.speed["images"].get(spark_variant(engine, precision))
        peak, how = peak_gflops(precision, os.cpu_count() or 1)
        wall = m.rate * results.gflop
        model = results.gflop * m.items / m.model_s * (os.cpu_count() or 1)  # model_s is summed over 2 tasks
        share = f"{100 * model / peak:.0f} %" if peak else "—"
        rows.append(f"| Spark job, {engine} {precision} | {m.rate:.1f} | {wall:.1f} | {model:.1f} | "
                    f"{f'{peak:.0f} ({how})' if peak else how} | {share} |")
    return rows


def profile_rows(profile: dict[str, dict[str, float]]) -> list[str]:
    rows = ["| step | fp32 ms/image | bf16 ms/image |", "|---|---:|---:|"]
    for step in profile["fp32"]:
        rows.append(f"| {step} | {profile['fp32'][step]:.2f} | {profile['bf16'][step]:.2f} |")
    rows.append(f"| **total** | {sum(profile['fp32'].values()):.2f} | {sum(profile['bf16'].values()):.2f} |")
    return rows


def before_after_rows(results: Any) -> list[str]:
    """Each optimisation as a step from the naive loop, from the same run's best passes."""
    images = results.speed["images"]
    steps = [(NAIVE, "naive: full PIL decode, torchvision transforms, 1 image per call, `no_grad`, NCHW"),
             ("bare, 1 process x 2 threads, fp32", "+ JPEG draft decode and one resample, batches of 4, "
                                                   "`inference_mode`, channels_last"),
             ("bare, 2 processes x 1 thread, fp32", "+ one process per core (no OpenMP threads waiting on "
                                                    "each other)"),
             ("bare, 2 processes x 1 thread, bf16", "+ bf16 autocast"),
             ("Spark job, local[2] x 1 thread, bf16", "the Spark job: + listing, hashing, Arrow, Parquet, "
                                                      "verify and publish"),
             (spark_variant("onnx", "fp32"), "the Spark job at fp32 with `engine: onnx` (ONNX Runtime)"),
             (spark_variant("openvino", "fp32"), "the Spark job at fp32 with `engine: openvino`"),
             (spark_variant("openvino", "bf16"), "the Spark job at bf16 with `engine: openvino`")]
    naive = images.get(NAIVE).rate
    rows = ["| step | images/s | × naive |", "|---|---:|---:|"]
    for variant, what in steps:
        rows.append(f"| {what} | {images.get(variant).rate:.1f} | {images.get(variant).rate / naive:.2f} |")
    return rows


NOTES = """Notes:
- Best of {repeats} interleaved rounds per variant; Spark ÷ best bare within each round: {rounds}. \
The machine is shared and noisy (other work may run at the same time): trust the side-by-side ratios, \
not the absolute numbers.
- Spark time = `job.run` on a running local[2] session: listing/reading, counting, embedding, writing \
Parquet, verifying and publishing. Session start-up is excluded. Before each precision's pass the job \
runs untimed on a tiny input so both Python workers hold the model; its best time ({warm_images:.1f} s \
images / {warm_texts:.1f} s texts) is the job's fixed cost, which weighs on `--quick`'s small inputs.
- Threads: Spark = 2 tasks x 1 torch thread, decoding inline (`decode_threads: 0`); bare = 1 process \
x 2 torch threads or 2 processes x 1 thread. Batch size = the job's default (images 4, texts 8); the naive \
loop embeds one image per call (on the first {naive} images). decode/model ms/item are summed over tasks or processes.
- bf16 = `torch.autocast("cpu", bfloat16)` around the model (convolutions and matmuls in bf16, fp32 \
accumulation and norms), or OpenVINO's `INFERENCE_PRECISION_HINT: bf16`; this CPU has {bf16_units}. \
GFLOP per image = {gflop:.3f} (torch's FLOP counter, multiply-add = 2, {crop} px). The peak is \
theoretical, from the clock in /proc/cpuinfo (boost clocks make it higher), and only worked out for the \
AMD Zen 4 it was written for; depthwise convolutions are memory-bound, so no CNN of this family nears it.
- Engines: `engine: onnx | openvino` run the model exported by `torch.onnx.export` (pixels or token \
ids in, L2-normalised vectors out) with ONNX Runtime (CPU provider) or OpenVINO (CPU, f32 unless bf16), \
1 intra-op thread per task like torch. The export is made once per machine and model (table below: \
into an empty cache, in this process, before Spark starts); the Spark jobs' drivers and workers reuse \
it. Cosines compare each variant's vectors with torch fp32's for the same items: iconic200's 200 \
images embedded by the job, and the 4,000 AG News rows of the throughput runs.
- Step profile: {profile} images, one step after another in one process with 1 torch thread, so the \
steps are comparable with each other (not with the throughput table, where two tasks run at once).
- Images: iconic200 JPEGs (~320x240) repeated to {images}; texts: the first {texts} AG News test rows \
as `title. description`, in JSON Lines (id, text). Quality: iconic200's 200 images embedded by the job \
at each precision; the AG News rows' Spark outputs of both precisions, P@15 by AG News class."""


def bf16_units() -> str:
    flags = open("/proc/cpuinfo").read()
    found = [name for flag, name in (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX")) if flag in flags]
    return " and ".join(found) if found else "no bf16 instructions"


def report(args: argparse.Namespace, results: Any) -> str:
    """The BENCHMARKS.md section: command, date, machine, results, checks, profile, notes."""
    lines = [f"Command: `{' '.join(['.venv/bin/python', 'bench/embed.py', *args.argv])}`  ",
             f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}  ",
             f"Machine: {machine()} (`lscpu`)", "",
             "| benchmark | variant | items | seconds | items/s | decode ms/item | model ms/item | × naive |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind, comparison in results.speed.items():
        lines += throughput_rows(kind, comparison.best)
    lines += ["", "| check | measured | target | verdict |", "|---|---:|---|---|"]
    lines += [f"| {name} | {value} | {target} | {'meets target' if ok else 'BELOW target'} |"
              for name, value, target, ok in checks(results)]
    lines += ["", "Engines: one-off export and load (build the torch model, read the export, compile) in seconds:",
              "", *embed_engines.setup_rows(results.setup)]
    rates = {kind: {(e, p): c.get(spark_variant(e, p)).rate for e, p in VARIANTS} for kind, c in results.speed.items()}
    lines += ["", "`engine: auto` (udfs/engines.py AUTO) against this run:", "",
              *embed_engines.auto_rows(rates, results.quality)]
    lines += ["", "Before/after, images (each step adds one change; same run):", "", *before_after_rows(results)]
    lines += ["", "CNN arithmetic rate:", "", *flops_rows(results)]
    lines += ["", "Where an image's time goes (the job's steps, profiled):", "", *profile_rows(results.profile)]
    if len(results.scores) > 1:
        lines += ["", "iconic200 knobs (same metric, one change each): "
                  + ", ".join(f"{name} **{score:.1f}**" for name, score in results.scores) + "."]
    rounds = "; ".join(f"{k} {p} " + ", ".join(f"{r:.3f}" for r in rs)
                       for k, c in results.speed.items() for p, rs in c.round_ratios.items())
    lines += ["", NOTES.format(repeats=args.repeats, rounds=rounds, images=args.images, texts=args.texts,
                               warm_images=results.speed["images"].warm_s,
                               warm_texts=results.speed["sentences"].warm_s, gflop=results.gflop,
                               crop=224, profile=args.profile, bf16_units=bf16_units(),
                               naive=min(args.images, 400))]
    return "\n".join(lines)
