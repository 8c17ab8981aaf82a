"""The ABAW MTL metric against scikit-learn and an independently written CCC."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest
from sklearn.metrics import f1_score

from abaw_hf.metrics import EVALUATE_MODULE_PATH, ccc, compute_abaw_metrics, f1_au, f1_expression


def reference_ccc(x, y):
    # written from the definition with explicit sums, independent of abaw_hf.metrics.core
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x) / n
    syy = sum((b - my) ** 2 for b in y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y)) / n
    return 2 * sxy / (sxx + syy + (mx - my) ** 2)


def random_split(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    va_true = rng.uniform(-1, 1, (n, 2))
    va_true[rng.random(n) < 0.2, 0] = -5
    va_true[rng.random(n) < 0.3, 1] = -5
    va_pred = np.clip(np.where(va_true == -5, 0, va_true) * 0.6 + rng.normal(0, 0.3, (n, 2)), -1, 1)
    expr_true = rng.integers(-1, 8, n)
    expr_pred = np.where(rng.random(n) < 0.5, np.clip(expr_true, 0, 7), rng.integers(0, 8, n))
    au_true = rng.integers(-1, 2, (n, 12))
    au_pred = rng.integers(0, 2, (n, 12))
    return va_pred, va_true, expr_pred, expr_true, au_pred, au_true


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_matches_sklearn_and_reference_ccc(seed):
    va_pred, va_true, expr_pred, expr_true, au_pred, au_true = random_split(seed)
    result = compute_abaw_metrics(va_pred, va_true, expr_pred, expr_true, au_pred, au_true)
    for dim, key in enumerate(["ccc_valence", "ccc_arousal"]):
        keep = va_true[:, dim] != -5
        assert result[key] == pytest.approx(reference_ccc(list(va_pred[keep, dim]), list(va_true[keep, dim])), abs=1e-10)
    keep = expr_true != -1
    expected_expr = f1_score(expr_true[keep], expr_pred[keep], labels=list(range(8)), average="macro", zero_division=0)
    assert result["f1_expression"] == pytest.approx(expected_expr, abs=1e-12)
    expected_au = np.mean(
        [f1_score(au_true[au_true[:, i] != -1, i], au_pred[au_true[:, i] != -1, i], zero_division=0) for i in range(12)]
    )
    assert result["f1_au"] == pytest.approx(expected_au, abs=1e-12)
    assert result["p_mtl"] == pytest.approx(
        (result["ccc_valence"] + result["ccc_arousal"]) / 2 + result["f1_expression"] + result["f1_au"]
    )


def test_absent_class_counts_as_zero_in_macro_f1():
    # class 7 never occurs nor is predicted: still one of the 8 classes averaged
    true = np.array([0, 1, 2, 3, 4, 5, 6])
    assert f1_expression(true, true) == pytest.approx(7 / 8)


def test_perfect_predictions_score_three():
    va = np.random.default_rng(0).uniform(-1, 1, (64, 2))
    expr = np.arange(64) % 8
    aus = np.random.default_rng(1).integers(0, 2, (64, 12))
    aus[0] = 1
    assert compute_abaw_metrics(va, va, expr, expr, aus, aus)["p_mtl"] == pytest.approx(3.0)


def test_ccc_edge_cases():
    assert ccc([], []) == 0.0
    assert ccc([0.5, 0.5], [0.5, 0.5]) == 0.0
    with pytest.raises(ValueError, match="shape"):
        ccc([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="num_aus"):
        f1_au(np.zeros(12), np.zeros(12))


def test_local_evaluate_module_offline():
    metric = evaluate.load(EVALUATE_MODULE_PATH)
    va_pred, va_true, expr_pred, expr_true, au_pred, au_true = random_split(5, n=60)

    def rows(va, expr, aus):
        return [
            {"valence": float(v[0]), "arousal": float(v[1]), "expression": int(e), "aus": a.tolist()}
            for v, e, a in zip(va, expr, aus)
        ]

    result = metric.compute(predictions=rows(va_pred, expr_pred, au_pred), references=rows(va_true, expr_true, au_true))
    expected = compute_abaw_metrics(va_pred, va_true, expr_pred, expr_true, au_pred, au_true)
    for key in ("ccc_valence", "ccc_arousal", "f1_expression", "f1_au", "p_mtl"):
        assert result[key] == pytest.approx(expected[key], abs=1e-6)
