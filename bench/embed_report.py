"""The BENCHMARKS.md section of bench/embed.py: throughput, checks against targets, the step profile,
the before/after table and the notes."""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
from typing import Any

from bench.embed_loops import Measure, peak_gflops

TARGET_RATIO, TARGET_NAIVE, TARGET_COS, TARGET_DROP = 0.90, 2.0, 0.99, 0.5
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
    for precision in ("bf16", "fp32"):
        ratio = images.get(f"Spark job, local[2] x 1 thread, {precision}").rate / naive
        out.append((f"images/s, Spark {precision} ÷ naive fp32 loop", f"{ratio:.2f}", f">= {TARGET_NAIVE:.1f}",
                    ratio >= TARGET_NAIVE))
    for kind, comparison in results.speed.items():
        for precision in ("fp32", "bf16"):
            ratio = comparison.spark_ratio(precision)
            out.append((f"{kind}/s, Spark ÷ best bare loop, {precision}", f"{ratio:.3f}",
                        f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO))
    for kind, q in results.quality.items():
        data = "iconic200" if kind == "images" else f"{q.rows} AG News rows"
        out.append((f"{kind}: bf16 cosine to fp32, min (mean) over {q.rows}", f"{q.cos_min:.4f} ({q.cos_mean:.5f})",
                    f">= {TARGET_COS}", q.cos_min >= TARGET_COS))
        drop = q.score_fp32 - q.score_bf16
        out.append((f"{kind}: {data} rank-weighted P@15 (%), fp32 → bf16", f"{q.score_fp32:.2f} → {q.score_bf16:.2f}",
                    f"drop <= {TARGET_DROP}", drop <= TARGET_DROP))
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
    for precision in ("fp32", "bf16"):
        m = results.speed["images"].get(f"Spark job, local[2] x 1 thread, {precision}")
        peak, how = peak_gflops(precision, os.cpu_count() or 1)
        wall = m.rate * results.gflop
        model = results.gflop * m.items / m.model_s * (os.cpu_count() or 1)  # model_s is summed over 2 tasks
        rows.append(f"| Spark job, {precision} | {m.rate:.1f} | {wall:.1f} | {model:.1f} | {peak:.0f} ({how}) | "
                    f"{100 * model / peak:.0f} % |")
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
                                                      "verify and publish")]
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
accumulation and norms); this CPU has AVX-512 BF16 and no AMX. GFLOP per image = {gflop:.3f} (torch's \
FLOP counter, multiply-add = 2, {crop} px). The peak is theoretical, from the clock in /proc/cpuinfo \
(boost clocks make it higher); depthwise convolutions are memory-bound, so no CNN of this family nears it.
- Step profile: {profile} images, one step after another in one process with 1 torch thread, so the \
steps are comparable with each other (not with the throughput table, where two tasks run at once).
- Images: iconic200 JPEGs (~320x240) repeated to {images}; texts: the first {texts} AG News test rows \
as `title. description`, in JSON Lines (id, text). Quality: iconic200's 200 images embedded by the job \
at each precision; the AG News rows' Spark outputs of both precisions, P@15 by AG News class."""


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
                               crop=224, profile=args.profile,
                               naive=min(args.images, 400))]
    return "\n".join(lines)
