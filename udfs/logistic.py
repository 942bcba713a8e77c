"""A fitted scikit-learn logistic regression as softmax-ready arrays: what label heads and the TF-IDF view keep."""
from __future__ import annotations

import numpy as np


def class_rows(model, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights [n_classes, d], bias [n_classes]) float32 of a fitted scikit-learn LogisticRegression whose
    classes are ints in 0..n_classes-1, softmax-ready: a class it never saw gets bias -1e4 (never chosen);
    two classes, kept by scikit-learn as one row (p1 = sigmoid(w·x + b)), become ±(w, b) / 2."""
    weights = np.zeros((n_classes, model.coef_.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)
    if len(model.classes_) == 2:
        for row, sign in zip(model.classes_, (-0.5, 0.5)):
            weights[row], bias[row] = sign * model.coef_[0], sign * model.intercept_[0]
    else:
        weights[model.classes_], bias[model.classes_] = model.coef_, model.intercept_
    return weights, bias
