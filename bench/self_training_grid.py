"""Self-training settings on AG News, chosen on the training rows: fraction, rounds, label spreading.

    .venv/bin/python bench/self_training_grid.py                 # dev: the 581 training rows (~1 min)
    .venv/bin/python bench/self_training_grid.py --test          # also every setting on the 7,600 test rows
    .venv/bin/python bench/self_training_grid.py --rounds 2 --fraction 0.8 --spreading 0 5 10 20 40 \
        --alpha 0.5 0.8 0.99 --seeds 10                          # label spreading's k and alpha on dev

Dev = the 581 training rows: zero-shot labels all of them; with n examples/class (drawn with numpy, seeds
0..--seeds-1) the rest of them are the table self-training learns from and the rows scored. `--test`
scores the same settings with the 7,600 test rows as the table (examples from the training rows), for
the record only: what bench/labels.py reports is chosen here on dev. Every setting runs the job's own
code (jobs.labelling.self_training.self_train with FitOptions) on MiniLM embeddings made once with
udfs.texts.embed_texts (kept in --cache); the starting head is zero-shot (conf/labels_agnews.yaml) or
centroid + the label texts (prior_weight 1), as assign-labels fits them. Accuracy and macro-F1 ×100.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
AGNEWS = ROOT.parent / "shared" / "data" / "agnews"

from bench.labels import LABELS  # noqa: E402


def embedded(cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "test": ([n, 384] MiniLM embeddings, [n] class index)}, embedded once and cached."""
    import pandas as pd

    from udfs import texts

    if cache.is_file():
        data = np.load(cache)
        return {part: (data[f"{part}_x"], data[f"{part}_y"]) for part in ("train", "test")}
    model, out = texts.load_text_model(texts.TextModelSpec()), {}
    for part, name in (("train", "train_head581.csv"), ("test", "test.csv")):
        df = pd.read_csv(AGNEWS / name, header=None, names=["cls", "title", "description"])
        text = (df.title.fillna("") + ". " + df.description.fillna("")).str.replace("\\", " ", regex=False)
        out[part] = (texts.embed_texts(model, list(text), 64).embeddings, df.cls.to_numpy() - 1)
    np.savez(cache, **{f"{part}_{k}": v for part, (x, y) in out.items() for k, v in zip("xy", (x, y))})
    return out


def score(table: np.ndarray, gold: np.ndarray, start, examples, setting: dict) -> tuple[float, float]:
    """(accuracy, macro-F1) ×100 of `start` (a Head) self-trained on `table` with `setting`."""
    from sklearn.metrics import f1_score

    from jobs.labelling.examples import Examples
    from jobs.labelling.methods import FitOptions
    from jobs.labelling.self_training import self_train

    head = self_train(table, FitOptions(**setting), start, Examples(examples[1], examples[0], None), {})
    predicted = head.scores(table).argmax(axis=1)
    return 100 * float((predicted == gold).mean()), 100 * float(f1_score(gold, predicted, average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", action="store_true", help="also score every setting on the test rows")
    parser.add_argument("--seeds", type=int, default=3, help="example draws per few-shot setting")
    parser.add_argument("--cache", default="/tmp/agnews-minilm.npz", help="embeddings cache (.npz)")
    parser.add_argument("--rounds", type=int, nargs="+", default=[2, 5], help="self_training values")
    parser.add_argument("--fraction", type=float, nargs="+", default=[0.5, 0.8, 1.0],
                        help="self_training_fraction values")
    parser.add_argument("--spreading", type=int, nargs="+", default=[0, 10], help="label_spreading values (k)")
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.8], help="label_spreading_alpha values")
    parser.add_argument("--per-class", type=int, nargs="+", default=[0, 8, 64],
                        help="examples per class (0 = zero-shot)")
    args = parser.parse_args()
    # alpha only matters with spreading on: k = 0 is run once, at the first alpha
    settings = [dict(self_training=r, self_training_fraction=f, label_spreading=k, label_spreading_alpha=a)
                for r, f, k, a in itertools.product(args.rounds, args.fraction, args.spreading, args.alpha)
                if k or a == args.alpha[0]]
    from jobs.labelling import methods
    from jobs.labelling.sets import read_label_set
    from udfs import heads, texts
    from udfs.heads import Head

    data = embedded(Path(args.cache))
    (tx, ty), names = data["train"], read_label_set(str(LABELS)).names
    model = texts.load_text_model(texts.TextModelSpec())
    prior = methods.label_vectors_of(read_label_set(str(LABELS)), lambda b: texts.embed_texts(model, b, 32).embeddings)
    none = (np.zeros((0, tx.shape[1]), np.float32), np.zeros(0, np.int64))
    print("| start | examples/class | table | " + " | ".join(("rounds", "fraction", "label_spreading", "alpha")) +
          " | accuracy | macro-F1 |\n|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for per_class, where in itertools.product(args.per_class, ("dev", "test") if args.test else ("dev",)):
        for setting in settings:
            runs = []
            for seed in range(args.seeds if per_class else 1):
                rng = np.random.default_rng(seed)
                chosen = np.concatenate([rng.permutation(np.flatnonzero(ty == c))[:per_class]
                                         for c in range(len(names))]).astype(int)
                rest = np.setdiff1d(np.arange(len(ty)), chosen)
                table, gold = (tx[rest], ty[rest]) if where == "dev" else data["test"]
                examples = (tx[chosen], ty[chosen]) if per_class else none
                classes = heads.normalise(heads.centroids(*examples, len(names)) + prior) if per_class else prior
                start = Head("centroid" if per_class else "zero-shot", names, classes)
                runs.append(score(table, gold, start, examples, setting))
            acc, f1 = np.mean(runs, axis=0)
            print(f"| {'centroid + prior' if per_class else 'zero-shot'} | {per_class or '—'} | {where} | "
                  f"{setting['self_training']} | {setting['self_training_fraction']:g} | "
                  f"{setting['label_spreading']} | "
                  f"{setting['label_spreading_alpha'] if setting['label_spreading'] else '—'} | "
                  f"{acc:.1f} | {f1:.1f} |", flush=True)


if __name__ == "__main__":
    main()
