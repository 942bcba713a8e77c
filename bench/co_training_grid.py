"""Co-training's rounds on AG News, chosen on half of the test rows and reported on the other half.

    .venv/bin/python bench/co_training_grid.py                   # ~15 min on 2 quiet cores
    .venv/bin/python bench/co_training_grid.py --settings 5,0,tfidf 8,0,tfidf --per-class 8

Why the test rows: co-training's TF-IDF view is transductive and needs a corpus (its vocabulary and idf
come from the table), which the 581 training rows are not. So the 7,600 test rows are the table every
setting self-trains on (no gold used), its accuracy on the first 3,800 chooses the setting, and the last
3,800, never looked at to choose, say what the chosen one gives. Each setting is the job's own code
(jobs.labelling.self_training.self_train with FitOptions) on MiniLM embeddings made once
(bench/self_training_grid.py's cache): rounds, label_spreading (k, alpha 0.2) and co_training. The start
is zero-shot (conf/labels_agnews.yaml) or centroid + label texts (prior_weight 1) with n examples/class
drawn with numpy seeds 0..--seeds-1 from the 581 training rows, as bench/self_training_grid.py draws them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.labels import LABELS, read_agnews  # noqa: E402
from bench.self_training_grid import embedded  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="example draws per few-shot setting")
    parser.add_argument("--cache", default="/tmp/agnews-minilm.npz", help="embeddings cache (.npz)")
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 8, 64],
                        help="examples per class (0 = zero-shot)")
    parser.add_argument("--settings", nargs="+",
                        default=["2,0,none", "2,3,none", "2,0,tfidf", "3,0,tfidf", "5,0,tfidf", "5,3,tfidf"],
                        help="rounds,label_spreading,co_training triples")
    args = parser.parse_args()
    from jobs.labelling import methods
    from jobs.labelling.examples import Examples
    from jobs.labelling.methods import FitOptions
    from jobs.labelling.self_training import self_train
    from jobs.labelling.sets import read_label_set
    from udfs import heads, texts
    from udfs.heads import Head

    data = embedded(Path(args.cache))
    (tx, ty), (table, gold) = data["train"], data["test"]
    train_text, table_text = list(read_agnews("train_head581.csv").text), list(read_agnews("test.csv").text)
    names = read_label_set(str(LABELS)).names
    model = texts.load_text_model(texts.TextModelSpec())
    prior = methods.label_vectors_of(read_label_set(str(LABELS)), lambda b: texts.embed_texts(model, b, 32).embeddings)
    halves = np.arange(len(gold)) < len(gold) // 2
    print("| start | examples/class | rounds | label_spreading | co_training | accuracy, rows 1-3,800 (chooses) | "
          "accuracy, rows 3,801-7,600 (held out) | seconds per run |\n|---|---:|---:|---:|---|---:|---:|---:|")
    for per_class in args.per_class:
        for setting in args.settings:
            rounds, k, co_training = setting.split(",")
            cfg = FitOptions(self_training=int(rounds), label_spreading=int(k), label_spreading_alpha=0.2,
                             co_training=co_training)
            runs, started = [], time.perf_counter()
            for seed in range(args.seeds if per_class else 1):
                rng = np.random.default_rng(seed)
                chosen = np.concatenate([rng.permutation(np.flatnonzero(ty == c))[:per_class]
                                         for c in range(len(names))]).astype(int)
                examples = Examples(ty[chosen], tx[chosen], [train_text[i] for i in chosen] if per_class else None)
                start = Head("centroid", names, heads.normalise(heads.centroids(tx[chosen], ty[chosen], len(names))
                                                                + prior)) if per_class else \
                    Head("zero-shot", names, prior)
                head = self_train(table, cfg, start, examples, {}, table_text if co_training != "none" else None)
                predicted = head.scores(table, table_text).argmax(axis=1)
                runs.append([100 * float((predicted[m] == gold[m]).mean()) for m in (halves, ~halves)])
            first, second = np.mean(runs, axis=0)
            print(f"| {'centroid + prior' if per_class else 'zero-shot'} | {per_class or '—'} | {rounds} | {k} | "
                  f"{co_training} | {first:.1f} | {second:.1f} | {(time.perf_counter() - started) / len(runs):.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
