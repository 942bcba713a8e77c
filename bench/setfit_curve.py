"""SetFit ablations and learning curve on AG News, chosen on training rows (never the test set).

Per seed: 8 examples/class drawn from the 581 training rows; the other training rows are the dev set.
MiniLM is fine-tuned with udfs.finetune (one setting per run); at each checkpoint the examples, the dev
rows and the label texts are embedded with the encoder as it stands, and several heads are fitted and
scored on the dev rows: logistic (C=1, C=100), centroid, centroid + label prior, logistic + self-training
on the dev rows. Step 0 is the frozen encoder.

    .venv/bin/python bench/setfit_curve.py --seeds 0 1 2 --out /tmp/curve.jsonl
    .venv/bin/python bench/setfit_curve.py --sampling oversampling --seeds 0 1 2 --out /tmp/curve.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AGNEWS = ROOT.parent / "shared" / "data" / "agnews"

from bench.benchmarks_md import update_section  # noqa: E402
from bench.similarity import machine  # noqa: E402
from jobs.labelling.examples import Examples  # noqa: E402
from jobs.labelling.methods import FitOptions, label_vectors_of, with_label_texts  # noqa: E402
from jobs.labelling.self_training import self_train  # noqa: E402
from jobs.labelling.sets import read_label_set  # noqa: E402
from udfs import finetune, heads, texts  # noqa: E402


def train_rows() -> tuple[list[str], np.ndarray, list[str]]:
    classes = (AGNEWS / "classes.txt").read_text().split()
    df = pd.read_csv(AGNEWS / "train_head581.csv", header=None, names=["cls", "title", "description"])
    text = (df.title.fillna("") + ". " + df.description.fillna("")).str.replace("\\", " ", regex=False)
    return list(text), df.cls.to_numpy() - 1, classes


def agnews_test(rows: int) -> tuple[list[str], np.ndarray]:
    """The first `rows` AG News test texts (`title. description`, as bench/labels.py) and their labels 0..3."""
    df = pd.read_csv(AGNEWS / "test.csv", header=None, names=["cls", "title", "description"]).head(rows)
    text = (df.title.fillna("") + ". " + df.description.fillna("")).str.replace("\\", " ", regex=False)
    return list(text), df.cls.to_numpy() - 1


def draw(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                           for c in np.unique(labels)])


def self_trained(head: heads.Head, docs: np.ndarray, rounds: int, ex: Examples) -> np.ndarray:
    """Predictions on `docs` after `rounds` of jobs.labelling.self_training.self_train on them."""
    if not rounds:
        return head.scores(docs).argmax(1)
    return self_train(docs, FitOptions(self_training=rounds), head, ex, {}).scores(docs).argmax(1)


def heads_of(ex: np.ndarray, ex_y: np.ndarray, docs: np.ndarray, prior: np.ndarray) -> dict[str, np.ndarray]:
    """Each head's predicted labels for `docs` ([m, d]), fitted on the examples `ex` [n, d] / `ex_y` and the
    label-text vectors `prior` [c, d], all from one encoder."""
    n = len(prior)
    names = list(range(n))
    examples = Examples(ex_y, ex, None)
    weights, bias = heads.fit_logreg(ex, ex_y, n, 1.0, 0)
    logreg = heads.Head("logreg", names, weights, bias=bias)
    loose = heads.fit_logreg(ex, ex_y, n, 100.0, 0)
    x, y, weight = with_label_texts(ex, ex_y, prior, 1.0)
    weights, bias = heads.fit_logreg(x, y, n, 1.0, 0, weight)
    texts_head = heads.Head("logreg", names, weights, bias=bias)
    cent = heads.centroids(ex, ex_y, n)
    with_prior = heads.Head("centroid", names, heads.normalise(cent + prior))
    zero = heads.Head("zero-shot", names, prior)
    return {"logreg C=1": logreg.scores(docs).argmax(1),
            "logreg C=100": heads.Head("l", names, loose[0], bias=loose[1]).scores(docs).argmax(1),
            "logreg C=1 + label texts": texts_head.scores(docs).argmax(1),
            "logreg C=1 + label texts + self-training 2": self_trained(texts_head, docs, 2, examples),
            "centroid": (heads.normalise(docs) @ cent.T).argmax(1),
            "centroid + prior": with_prior.scores(docs).argmax(1),
            "zero-shot": zero.scores(docs).argmax(1),
            "logreg C=1 + self-training 2": self_trained(logreg, docs, 2, examples),
            "logreg C=1 + self-training 5": self_trained(logreg, docs, 5, examples),
            "centroid + prior + self-training 2": self_trained(with_prior, docs, 2, examples),
            "centroid + prior + self-training 5": self_trained(with_prior, docs, 5, examples),
            "zero-shot + self-training 2": self_trained(zero, docs, 2, Examples(ex_y[:0], None, None)),
            "zero-shot + self-training 5": self_trained(zero, docs, 5, Examples(ex_y[:0], None, None))}


def scored(preds: dict[str, np.ndarray], gold: np.ndarray) -> dict[str, tuple[float, float]]:
    """(accuracy, macro-F1) ×100 of each head's predictions."""
    from sklearn.metrics import f1_score

    return {name: (100 * float((p == gold).mean()), 100 * float(f1_score(gold, p, average="macro")))
            for name, p in preds.items()}


def probe(model, label_set, ex_text, ex_y, dev_text, dev_y, n: int, keep: str = "") -> dict[str, float]:
    """Each head's (accuracy, macro-F1) ×100 on the dev rows; `keep`: an .npz to save the embeddings in."""
    ex = texts.embed_texts(model, ex_text, 32).embeddings
    dev = texts.embed_texts(model, dev_text, 32).embeddings
    prior = label_vectors_of(label_set, lambda batch: texts.embed_texts(model, batch, 32).embeddings)
    if keep:
        np.savez(keep, ex=ex, ex_y=ex_y, dev=dev, dev_y=dev_y, prior=prior)
    return scored(heads_of(ex, ex_y, dev, prior), dev_y)


def report(paths: list[str]) -> str:
    """Markdown: per setting and evaluation set, a row per head and a column per checkpoint (steps of 16
    pairs): accuracy ×100, mean over the seeds that reached it (their count in brackets when fewer);
    the last column adds macro-F1."""
    merged: dict[tuple, dict] = {}  # a run's checkpoint: its heads, scored when it ran and later (posthoc)
    for r in (json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()):
        at = (*(r[k] for k in SETTING), r.get("on", "dev"), r["seed"], r["step"])
        merged[at] = {**r, "heads": {**merged.get(at, {}).get("heads", {}), **r["heads"]}}
    lines = list(merged.values())
    key = lambda r: json.dumps({**{k: r[k] for k in SETTING}, "on": r.get("on", "dev")})  # noqa: E731
    out = []
    for group in dict.fromkeys(key(r) for r in lines):
        rows = [r for r in lines if key(r) == group]
        seeds, steps = sorted({r["seed"] for r in rows}), sorted({r["step"] for r in rows})
        names = list(dict.fromkeys(n for r in rows for n in r["heads"]))
        out += [f"`{group}`, seeds {seeds}; seconds to each checkpoint (first seed): "
                + ", ".join(f"{next(r['seconds'] for r in rows if r['step'] == s):.0f}" for s in steps), "",
                "| head | " + " | ".join(f"step {s}" for s in steps) + " | last: macro-F1 |",
                "|---" + "|---:" * (len(steps) + 1) + "|"]
        for name in names:
            cells = []
            for step in steps:
                got = [r["heads"][name] for r in rows if r["step"] == step and name in r["heads"]]
                cells.append(f"{np.mean([g[0] for g in got]):.1f}" + ("" if len(got) == len(seeds) else f" ({len(got)})")
                             if got else "—")
            last = [r["heads"][name][1] for r in rows if r["step"] == steps[-1] and name in r["heads"]]
            out.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(last):.1f} |" if last else " | — |")
        out.append("")
    return "\n".join(out)


SETTING = ("per_class", "pairs", "epochs", "lr", "sampling", "warmup")


def posthoc(npz: str) -> None:
    """Every head of heads_of on the embeddings an earlier run kept (`probe`'s OUT.seedS.stepN.npz or
    OUT.seedS.testN.npz), printed and appended to OUT as a line of that run (report merges the heads)."""
    with np.load(npz) as saved:
        result = scored(heads_of(saved["ex"], saved["ex_y"], saved["dev"], saved["prior"]), saved["dev_y"])
    for name, (acc, f1) in result.items():
        print(f"{npz}: {name}: accuracy {acc:.1f}, macro-F1 {f1:.1f}")
    out, seed, where = re.fullmatch(r"(.+)\.seed(\d+)\.((?:step|test)\d+)\.npz", npz).groups()
    runs = [json.loads(line) for line in Path(out).read_text().splitlines() if line.strip()]
    on = where if where.startswith("test") else "dev"
    run = next(r for r in runs if r["seed"] == int(seed) and r.get("on", "dev") == on
               and (on != "dev" or r["step"] == int(where[4:])))
    with open(out, "a") as f:
        f.write(json.dumps({**run, "heads": result}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--sampling", default="random")
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--every", type=int, default=20, help="probe every this many steps")
    parser.add_argument("--no-frozen", action="store_true",
                        help="skip step 0 (the frozen encoder: the same for every setting of a seed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test", type=int, default=0, help="after the last step, score the first N test rows")
    parser.add_argument("--out", help="JSON lines to append to")
    parser.add_argument("--report", nargs="+", help="print the tables of these JSON-lines files and stop")
    parser.add_argument("--write", help="with --report: the commands to name in BENCHMARKS.md's section")
    parser.add_argument("--posthoc", nargs="+", help="score every head on these kept .npz files and stop")
    args = parser.parse_args()
    for npz in args.posthoc or ():
        posthoc(npz)
    if args.posthoc:
        return
    if args.report:
        print(report(args.report))
        if args.write:
            update_section(ROOT / "BENCHMARKS.md", "## bench/setfit_curve.py", "\n".join([
                f"Command: `{args.write}`  ", f"Machine: {machine()} (`lscpu`), shared: load average "
                f"{os.getloadavg()[0]:.0f} on 2 cores while this was written, so the seconds are far above a quiet "
                "machine's", "", "Dev = the 581 AG News training rows minus the 32 examples (8/class drawn with the "
                "seed); test = the first 2,000 test rows, after the last step only. Accuracy ×100; every head is "
                "fitted on the same fine-tuned (or, at step 0, frozen) MiniLM-L6 embeddings of one run. "
                "`+ label texts` is setfit's head now (methods.with_label_texts); `self-training N` runs "
                "jobs.labelling.self_training.self_train on the evaluated rows' embeddings (transductive, as the "
                "job does on its table).", "", report(args.report)]))
        return
    import torch

    torch.set_num_threads(args.threads)
    all_text, all_y, classes = train_rows()
    label_set = read_label_set(str(ROOT / "conf" / "labels_agnews.yaml"))
    setting = {k: getattr(args, k) for k in ("per_class", "pairs", "epochs", "lr", "sampling", "warmup")}
    for seed in args.seeds:
        chosen = draw(all_y, args.per_class, seed)
        rest = np.setdiff1d(np.arange(len(all_y)), chosen)
        ex_text, ex_y = [all_text[i] for i in chosen], all_y[chosen]
        dev_text, dev_y = [all_text[i] for i in rest], all_y[rest]
        model = texts.load_text_model(texts.spec_from_label("all-MiniLM-L6-v2"))
        started = time.perf_counter()

        def record(step: int) -> None:
            if step % args.every and step != total:
                return
            evals = [("dev", dev_text, dev_y, f"{args.out}.seed{seed}.step{step}.npz" if step in (0, total) else "")]
            if step == total and args.test:  # and the test rows: every head of this run, scored like dev
                test_text, test_y = agnews_test(args.test)
                evals.append((f"test{args.test}", test_text, test_y, f"{args.out}.seed{seed}.test{args.test}.npz"))
            for on, eval_text, eval_y, keep in evals:
                result = probe(model, label_set, ex_text, ex_y, eval_text, eval_y, len(classes), keep)
                line = {**setting, "seed": seed, "step": step, "on": on, "pairs_seen": step * 16,
                        "seconds": round(time.perf_counter() - started, 1), "heads": result}
                with open(args.out, "a") as f:
                    f.write(json.dumps(line) + "\n")
                print(seed, step, on, {k: round(v[0], 1) for k, v in result.items()}, flush=True)

        opts = finetune.FineTuneOptions(args.pairs, args.epochs, learning_rate=args.lr, warmup_ratio=args.warmup,
                                        sampling=args.sampling, max_seconds=1e9, seed=seed)
        total = args.epochs * -(-len(finetune.pairs_for(ex_y, opts)) // 16)
        if not args.no_frozen:
            record(0)
        finetune.fine_tune(model.encoder, ex_text, ex_y, opts, on_step=record)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
