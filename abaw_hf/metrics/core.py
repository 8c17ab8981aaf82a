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


def score_va(prediction, target) -> dict[str, float]:
    """The VA task's metric: CCC of valence and of arousal over their labelled frames, and their mean ``va``."""
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1, 2)
    target = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if prediction.shape != target.shape:
        raise ValueError(f"valence/arousal: prediction shape {prediction.shape} differs from target {target.shape}")
    valence_valid = target[:, 0] != MISSING_VA
    arousal_valid = target[:, 1] != MISSING_VA
    valence = ccc(prediction[valence_valid, 0], target[valence_valid, 0])
    arousal = ccc(prediction[arousal_valid, 1], target[arousal_valid, 1])
    return {"ccc_valence": valence, "ccc_arousal": arousal, "va": (valence + arousal) / 2}


def _score_expression(prediction, target) -> dict[str, float]:
    return {"f1_expression": f1_expression(prediction, target)}


def _score_au(prediction, target) -> dict[str, float]:
    return {"f1_au": f1_au(prediction, target)}


# The metrics the task table names (`Task.score`): ``function(decisions, labels) -> {metric key: value}``, the
# task's own score under its row's ``score_key``.
TASK_SCORES = {"ccc_va": score_va, "f1_expression": _score_expression, "f1_au": _score_au}


def register_score(name: str, function) -> None:
    """Name a metric for the task table: ``function(decisions [N, ...], labels [N, ...]) -> {key: value}``."""
    if name in TASK_SCORES:
        raise ValueError(f"a metric named {name!r} exists")
    TASK_SCORES[name] = function


def score_tasks(decisions: dict, labels: dict, tasks) -> dict[str, float]:
    """The metrics of ``tasks`` (rows of the task table) from ``{task name: decisions}`` and ``{task name: labels}``:
    each task's metric keys, then its score under ``score_key``, ``p_mtl`` (the sum of the P_MTL tasks' scores, when
    ``tasks`` has every one) and ``num_frames``. For ABAW's tasks: the keys and values of `compute_abaw_metrics`."""
    from ..modeling.tasks_abaw_fusion import TASKS


    parts = {task.name: TASK_SCORES[task.score](decisions[task.name], labels[task.name]) for task in tasks}
    # the terms first (a one-key metric is its own term), then the scores made of several terms (ABAW's order)
    metrics = {key: value for task in tasks for key, value in parts[task.name].items()
               if key != task.score_key or len(parts[task.name]) == 1}
    for task in tasks:
        metrics.setdefault(task.score_key, parts[task.name][task.score_key])
    if {task.name for task in TASKS if task.in_p_mtl} <= {task.name for task in tasks}:
        metrics["p_mtl"] = sum(metrics[task.score_key] for task in tasks if task.in_p_mtl)
    metrics["num_frames"] = int(len(next(iter(labels.values()))))
    return metrics


def compute_abaw_metrics(va_pred, va_true, expr_pred, expr_true, au_pred, au_true) -> dict[str, float]:
    """All ABAW MTL terms and ``p_mtl``. ``au_pred`` are 0/1 decisions (threshold before calling)."""
    from ..modeling.tasks_abaw_fusion import ABAW_TASKS

    return score_tasks({"va": va_pred, "expression": expr_pred, "au": au_pred},
                       {"va": np.asarray(va_true).reshape(-1, 2), "expression": expr_true, "au": au_true}, ABAW_TASKS)
