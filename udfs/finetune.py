"""SetFit-style fine-tuning: contrastive pairs from a few labelled texts, cosine loss, a bounded loop."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)
SAMPLINGS = ("random", "oversampling")
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")  # sentence-transformers' fit leaves these alone


@dataclass(frozen=True)
class FineTuneOptions:
    """The loop of the SetFit paper's runs (sentence-transformers' `fit`: AdamW with weight decay 0.01
    except biases and LayerNorm, linear warm-up over 10 % then linear decay to 0, gradients clipped at
    norm 1), bounded by `max_seconds`."""

    pairs_per_example: int = 20   # SetFit's num_iterations: one positive and one negative pair each
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0    # 0 = no clipping
    sampling: str = "random"      # or "oversampling": every pair once, the rarer kind repeated (setfit >= 1.0)
    max_seconds: float = 600.0    # stop early (and say so) rather than run unbounded on a driver
    seed: int = 0


@dataclass
class FineTuneStats:
    pairs: int
    steps: int
    seconds: float
    stopped_early: bool
    final_loss: float


def contrastive_pairs(labels: np.ndarray, per_example: int, seed: int) -> np.ndarray:
    """[p, 3] int rows (i, j, same) : for each example `per_example` times, one pair with an example of
    its own label (same = 1) and one with another label (same = 0), drawn with `seed`: the setfit
    library's sentence_pairs_generation (SetFit, Tunstall et al. 2022), without self-pairs. A label
    with one example gets negative pairs only; the class-balanced head fitted after fine-tuning
    (heads.fit_logreg) keeps it predicted. Drawing the same number of pairs per label instead (the
    paper's wording) changed nothing measurable on a 3/3/1 set: 6/6 either way, its 1-example
    label's probabilities 0.41 and 0.36 vs 0.42 and 0.36, over 3 seeds."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    by_label = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    others = {c: np.flatnonzero(labels != c) for c in by_label}
    rows = []
    for _ in range(per_example):
        for i, c in enumerate(labels):
            same = by_label[c][by_label[c] != i]
            if len(same):
                rows.append((i, int(rng.choice(same)), 1))
            if len(others[c]):
                rows.append((i, int(rng.choice(others[c])), 0))
    pairs = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return pairs[rng.permutation(len(pairs))]


def oversampled_pairs(labels: np.ndarray, seed: int) -> np.ndarray:
    """[p, 3] int rows (i, j, same): every unordered pair i <= j once in an order drawn with `seed`,
    the rarer kind (positive, usually) cycled until there are as many of it as of the other, shuffled: the setfit library's ContrastiveDataset with sampling_strategy
    "oversampling" (its default since 1.0). 8 examples of 4 labels: 144 positives (32 self-pairs),
    384 negatives → 768 pairs. The count grows with the square of the examples: 256 → 49k pairs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(len(labels))
    order = rng.permutation(len(i))
    i, j = i[order], j[order]
    same = labels[i] == labels[j]
    pos = np.stack([i[same], j[same], np.ones(same.sum(), np.int64)], axis=1)
    neg = np.stack([i[~same], j[~same], np.zeros((~same).sum(), np.int64)], axis=1)
    n = max(len(pos), len(neg))
    pos, neg = (np.resize(kind, (n if len(kind) else 0, 3)) for kind in (pos, neg))  # repeats from the start
    pairs = np.concatenate([pos, neg]).astype(np.int64)
    return pairs[rng.permutation(len(pairs))]  # the library's trainer shuffles them too


def pairs_for(labels: np.ndarray, opts: FineTuneOptions) -> np.ndarray:
    """The training pairs `opts.sampling` asks for (contrastive_pairs or oversampled_pairs)."""
    if opts.sampling not in SAMPLINGS:
        raise ValueError(f"sampling {opts.sampling!r}; accepted: {', '.join(SAMPLINGS)}")
    if opts.sampling == "oversampling":
        return oversampled_pairs(labels, opts.seed)
    return contrastive_pairs(labels, opts.pairs_per_example, opts.seed)


def fine_tune(encoder, texts: list[str], labels: np.ndarray, opts: FineTuneOptions,
              on_step: Callable[[int], None] | None = None) -> FineTuneStats:
    """Trains a SentenceTransformer in place with sentence-transformers' CosineSimilarityLoss on
    contrastive pairs of `texts` (pairs_for), with the optimiser, schedule and clipping of
    sentence-transformers' `fit` (FineTuneOptions); stops after `epochs` or `max_seconds`, whichever
    comes first. `on_step(steps done)`, when given, runs after each step with the encoder in eval mode
    (a learning curve's probe; its time counts against max_seconds). ValueError for an unknown
    `opts.sampling`."""
    import torch
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(opts.seed)
    pairs = pairs_for(labels, opts)
    loss_fn = CosineSimilarityLoss(encoder)
    named = list(encoder.named_parameters())
    optimiser = torch.optim.AdamW(
        [{"params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)], "weight_decay": opts.weight_decay},
         {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0}],
        lr=opts.learning_rate)
    total_steps = opts.epochs * -(-len(pairs) // opts.batch_size)
    schedule = get_linear_schedule_with_warmup(optimiser, int(np.ceil(total_steps * opts.warmup_ratio)),
                                               total_steps)
    device = next(encoder.parameters()).device
    start, steps, loss_value, stopped = time.perf_counter(), 0, float("nan"), False
    encoder.train()
    try:
        for _ in range(opts.epochs):
            for at in range(0, len(pairs), opts.batch_size):
                if time.perf_counter() - start > opts.max_seconds:
                    stopped = True
                    break
                batch = pairs[at:at + opts.batch_size]
                features = [_features(encoder, [texts[i] for i in batch[:, col]], device) for col in (0, 1)]
                loss = loss_fn(features, torch.tensor(batch[:, 2], dtype=torch.float32, device=device))
                optimiser.zero_grad()
                loss.backward()
                if opts.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(encoder.parameters(), opts.max_grad_norm)
                optimiser.step()
                schedule.step()
                steps, loss_value = steps + 1, float(loss.detach())
                if on_step is not None:
                    encoder.eval()
                    with torch.no_grad():
                        on_step(steps)
                    encoder.train()
            if stopped:
                break
    finally:
        encoder.eval()
    seconds = time.perf_counter() - start
    if stopped:
        log.warning("fine-tuning stopped at max_seconds=%.0f after %d of %d steps", opts.max_seconds,
                    steps, total_steps)
    return FineTuneStats(len(pairs), steps, seconds, stopped, loss_value)


def _features(encoder, texts: list[str], device) -> dict:
    features = encoder.preprocess(texts) if hasattr(encoder, "preprocess") else encoder.tokenize(texts)
    return {name: value.to(device) if hasattr(value, "to") else value for name, value in features.items()}
