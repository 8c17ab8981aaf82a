"""The ABAW Multi-Task Learning metric, in numpy.

``P_MTL = (CCC_V + CCC_A)/2 + F1_expr + F1_AU`` (range 0..3): CCC with population moments,
macro F1 over all 8 expression classes (a class never predicted nor present scores 0), and the
mean over the 12 AUs of each AU's binary F1. Each term ignores its missing-label markers
(VA -5, expression -1, AU -1).
"""

from __future__ import annotations

import numpy as np

from ..modeling.labels_abaw_fusion import MISSING_AU, MISSING_EXPRESSION, MISSING_VA, NUM_EXPRESSIONS


def ccc(prediction, target) -> float:
    """Concordance correlation coefficient; 0.0 for empty or fully degenerate input."""
    x = np.asarray(prediction, dtype=np.float64).ravel()
    y = np.asarray(target, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"ccc: prediction shape {x.shape} differs from target shape {y.shape}")
    if x.size == 0:
        return 0.0
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    denominator = vx + vy + (mx - my) ** 2
    return float(2.0 * cov / denominator) if denominator > 0 else 0.0


def _binary_f1(prediction: np.ndarray, target: np.ndarray) -> float:
    tp = np.sum((prediction == 1) & (target == 1))
    fp = np.sum((prediction == 1) & (target == 0))
    fn = np.sum((prediction == 0) & (target == 1))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def f1_expression(prediction, target, num_classes: int = NUM_EXPRESSIONS) -> float:
    """Macro F1 over all ``num_classes`` classes of the labelled frames (zero division -> 0)."""
    prediction = np.asarray(prediction).astype(np.int64).ravel()
    target = np.asarray(target).astype(np.int64).ravel()
    valid = target != MISSING_EXPRESSION
    prediction, target = prediction[valid], target[valid]
    if target.size == 0:
        return 0.0
    return float(np.mean([_binary_f1(prediction == c, target == c) for c in range(num_classes)]))


def f1_au(prediction, target) -> float:
    """Mean over AUs of the binary F1 of each AU; entries labelled -1 are ignored per AU."""
    prediction = np.asarray(prediction).astype(np.int64)
    target = np.asarray(target).astype(np.int64)
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(f"f1_au: expected two [N, num_aus] arrays, got {prediction.shape} and {target.shape}")
    scores = []
    for au in range(target.shape[1]):
        valid = target[:, au] != MISSING_AU
        scores.append(_binary_f1(prediction[valid, au], target[valid, au]))
    return float(np.mean(scores)) if scores else 0.0


def compute_abaw_metrics(va_pred, va_true, expr_pred, expr_true, au_pred, au_true) -> dict[str, float]:
    """All ABAW MTL terms and ``p_mtl``. ``au_pred`` are 0/1 decisions (threshold before calling)."""
    va_pred = np.asarray(va_pred, dtype=np.float64).reshape(-1, 2)
    va_true = np.asarray(va_true, dtype=np.float64).reshape(-1, 2)
    if va_pred.shape != va_true.shape:
        raise ValueError(f"valence/arousal: prediction shape {va_pred.shape} differs from target {va_true.shape}")
    valence_valid = va_true[:, 0] != MISSING_VA
    arousal_valid = va_true[:, 1] != MISSING_VA
    metrics = {
        "ccc_valence": ccc(va_pred[valence_valid, 0], va_true[valence_valid, 0]),
        "ccc_arousal": ccc(va_pred[arousal_valid, 1], va_true[arousal_valid, 1]),
        "f1_expression": f1_expression(expr_pred, expr_true),
        "f1_au": f1_au(au_pred, au_true),
    }
    metrics["va"] = (metrics["ccc_valence"] + metrics["ccc_arousal"]) / 2
    metrics["p_mtl"] = metrics["va"] + metrics["f1_expression"] + metrics["f1_au"]
    metrics["num_frames"] = int(va_true.shape[0])
    return metrics
