"""Closed-form linear probes on a feature dataset: ridge regression per task, scored with P_MTL.

VA is regressed directly (clipped to [-1, 1]), the expression as a one-hot target (prediction = argmax) and
each AU as a 0/1 target (prediction = score > 0.5). Missing vectors enter as zeros plus a "present" indicator;
each task is fitted on its labelled rows only. `window > 1` averages each frame's features over `window`
consecutive available frames of its video (centred), which is what a temporal model can exploit.
"""

from __future__ import annotations

from typing import Sequence

import datasets
import numpy as np

from .columns import column_array
from .schema import MISSING_AU, MISSING_EXPRESSION, MISSING_VA, NUM_AUS, NUM_EXPRESSIONS, feature_dims_of


def _video_bounds(videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the first and one-past-last row of its video (rows sorted by video)."""
    change = np.flatnonzero(videos[1:] != videos[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(videos)]])
    lengths = stops - starts
    return np.repeat(starts, lengths), np.repeat(stops, lengths)


def window_average(values: np.ndarray, present: np.ndarray, videos: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred mean over `window` consecutive rows of the same video, using present rows only."""
    if window <= 1:
        return values, present
    first, stop = _video_bounds(videos)
    index = np.arange(len(values))
    low = np.clip(index - window // 2, first, None)
    high = np.minimum(low + window, stop)
    low = np.maximum(high - window, first)
    # float32 running sums of centred values stay small enough to subtract without losing precision
    centre = values[present].mean(0) if present.any() else np.zeros(values.shape[1], np.float32)
    masked = (values - centre) * present[:, None]
    sums = np.zeros((len(values) + 1, values.shape[1]), np.float32)
    np.cumsum(masked, axis=0, out=sums[1:])
    counts = np.concatenate([[0], np.cumsum(present)])
    count = counts[high] - counts[low]
    mean = sums[high]
    mean -= sums[low]
    mean /= np.maximum(count, 1)[:, None]
    mean += centre
    return mean, count > 0


def feature_matrix(split: datasets.Dataset, names: Sequence[str], window: int = 1) -> np.ndarray:
    """[N, sum(D) + len(names)] float32: each feature (zeros where missing) and its presence indicator."""
    videos = np.asarray(split.data.column("video").to_numpy(zero_copy_only=False))
    blocks = []
    for name in names:
        values, present = column_array(split, name)
        values, present = window_average(values.astype(np.float32), present, videos, window)
        blocks.append(np.where(present[:, None], values, 0).astype(np.float32))
        blocks.append(present[:, None].astype(np.float32))
    return np.concatenate(blocks, axis=1)


def _ridge(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc
    gram[np.diag_indices_from(gram)] += l2 * len(x)
    weights = np.linalg.solve(gram.astype(np.float64), (xc.T @ (y - y_mean)).astype(np.float64)).astype(np.float32)
    return weights, y_mean - x_mean @ weights


def ridge_probe(
    train: datasets.Dataset,
    validation: datasets.Dataset,
    names: Sequence[str] | None = None,
    *,
    window: int = 1,
    l2: float = 1e-2,
) -> dict[str, float]:
    """Fit ridge probes on `train`, score them on `validation`; returns `compute_abaw_metrics`' dict."""
    from ..metrics import compute_abaw_metrics

    names = list(names or feature_dims_of(train.features))
    x_train, x_val = feature_matrix(train, names, window), feature_matrix(validation, names, window)
    scale = x_train.std(0) + 1e-3
    x_train, x_val = x_train / scale, x_val / scale
    labels = {}
    for key, split in (("train", train), ("validation", validation)):
        labels[key] = split.with_format("numpy", columns=["valence", "arousal", "expression", "aus"])[:]

    va_train = np.stack([labels["train"]["valence"], labels["train"]["arousal"]], 1)
    va_rows = (va_train != MISSING_VA).all(1)
    weights, bias = _ridge(x_train[va_rows], va_train[va_rows], l2)
    va_pred = np.clip(x_val @ weights + bias, -1, 1)

    expression = labels["train"]["expression"].astype(np.int64)
    expr_rows = expression != MISSING_EXPRESSION
    onehot = np.eye(NUM_EXPRESSIONS, dtype=np.float32)[expression[expr_rows]]
    weights, bias = _ridge(x_train[expr_rows], onehot, l2)
    expr_pred = (x_val @ weights + bias).argmax(1)

    aus = labels["train"]["aus"].astype(np.int64)
    au_rows = (aus != MISSING_AU).all(1)
    weights, bias = _ridge(x_train[au_rows], aus[au_rows].astype(np.float32), l2)
    au_pred = (x_val @ weights + bias > 0.5).astype(np.int64)

    va_true = np.stack([labels["validation"]["valence"], labels["validation"]["arousal"]], 1)
    assert au_pred.shape[1] == NUM_AUS
    return compute_abaw_metrics(
        va_pred, va_true, expr_pred, labels["validation"]["expression"], au_pred, labels["validation"]["aus"]
    )
