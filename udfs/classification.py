"""Classification metrics from a confusion count: accuracy, top-k accuracy, macro-F1, per-class P/R/F1."""
from __future__ import annotations

from dataclasses import dataclass

NONE = "(none)"  # the predicted label of a gold item that got no prediction


@dataclass(frozen=True)
class MetricRow:
    metric: str
    value: float
    items: int
    label: str | None = None       # the gold class (per-class rows and the confusion matrix)
    predicted: str | None = None   # confusion matrix rows only


def classification_metrics(confusion: dict[tuple[str, str], int], top_k_hits: int, k: int) -> list[MetricRow]:
    """confusion {(gold, predicted): items} (predicted may be NONE or `unknown`) → metric rows.

    Macro averages run over the gold classes; a class never predicted has precision 0.
    """
    total = sum(confusion.values())
    if total == 0:
        return []
    gold = sorted({g for g, _ in confusion})
    correct = sum(n for (g, p), n in confusion.items() if g == p)
    rows = [MetricRow("accuracy", correct / total, total)]
    if k > 1:
        rows.append(MetricRow(f"top_{k}_accuracy", top_k_hits / total, total))
    f1s = []
    for label in gold:
        tp = confusion.get((label, label), 0)
        actual = sum(n for (g, _), n in confusion.items() if g == label)
        predicted = sum(n for (_, p), n in confusion.items() if p == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        rows += [MetricRow("precision", precision, predicted, label), MetricRow("recall", recall, actual, label),
                 MetricRow("f1", f1, actual, label)]
    rows.append(MetricRow("macro_f1", sum(f1s) / len(f1s), total))
    rows += [MetricRow("confusion", float(n), n, g, p) for (g, p), n in sorted(confusion.items())]
    return rows
