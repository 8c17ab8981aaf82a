"""Closed-form linear probes on a feature dataset: ridge regression per task, scored with P_MTL.

VA is regressed directly (clipped to [-1, 1]), the expression as a one-hot target (prediction = argmax) and
each AU as a 0/1 target (prediction = score > 0.5). Missing vectors enter as zeros plus a "present" indicator;
each task is fitted on its labelled rows only. `window > 1` averages each frame's features over `window`
consecutive available frames of its video (centred), which is what a temporal model can exploit.
"""

from __future__ import annotations

from typing import Mapping, Sequence

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


def feature_matrix(split: datasets.Dataset, names: Sequence[str], window: int = 1) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """[N, sum(D) + len(names)] float32 (each feature, zeros where missing, then its presence indicator) and the
    column indices of each feature's block."""
    videos = np.asarray(split.data.column("video").to_numpy(zero_copy_only=False))
    blocks, columns, width = [], {}, 0
    for name in names:
        values, present = column_array(split, name)
        values, present = window_average(values.astype(np.float32), present, videos, window)
        blocks.append(np.where(present[:, None], values, 0).astype(np.float32))
        blocks.append(present[:, None].astype(np.float32))
        columns[name] = np.arange(width, width + values.shape[1] + 1)
        width += values.shape[1] + 1
    return np.concatenate(blocks, axis=1), columns


def _labels(split: datasets.Dataset) -> dict[str, np.ndarray]:
    table = split.with_format("numpy", columns=["valence", "arousal", "expression"])[:]
    aus = split.data.column("aus").combine_chunks().flatten().to_numpy()
    return {
        "va": np.stack([table["valence"], table["arousal"]], 1).astype(np.float32),
        "expression": np.asarray(table["expression"], np.int64),
        "aus": np.asarray(aus, np.int64).reshape(-1, NUM_AUS),
    }


def ridge_probes(
    train: datasets.Dataset,
    validation: datasets.Dataset,
    subsets: Mapping[str, Sequence[str]] | None = None,
    *,
    window: int = 1,
    l2: float = 1e-2,
) -> dict[str, dict[str, float]]:
    """Fit ridge probes on `train` and score them on `validation`, one per named subset of feature columns
    (default: all columns together, as "all"). Returns `{subset: compute_abaw_metrics(...)}`.

    The Gram matrix of all requested columns is computed once per task; each subset solves on its sub-block.
    """
    from ..metrics import compute_abaw_metrics

    subsets = dict(subsets or {"all": list(feature_dims_of(train.features))})
    names = [n for n in feature_dims_of(train.features) if any(n in s for s in subsets.values())]
    x_train, columns = feature_matrix(train, names, window)
    x_val, _ = feature_matrix(validation, names, window)
    scale = x_train.std(0) + 1e-3
    x_train /= scale
    x_val /= scale
    labels_train, labels_val = _labels(train), _labels(validation)

    targets = {  # task -> (labelled training rows, targets)
        "va": ((labels_train["va"] != MISSING_VA).all(1), labels_train["va"]),
        "expression": (
            labels_train["expression"] != MISSING_EXPRESSION,
            np.eye(NUM_EXPRESSIONS, dtype=np.float32)[np.clip(labels_train["expression"], 0, None)],
        ),
        "aus": ((labels_train["aus"] != MISSING_AU).all(1), labels_train["aus"].astype(np.float32)),
    }
    scores: dict[str, dict[str, np.ndarray]] = {name: {} for name in subsets}
    for task, (rows, y) in targets.items():
        x, y = x_train[rows], y[rows]
        x_mean, y_mean = x.mean(0), y.mean(0)
        x = x - x_mean
        gram = (x.T @ x).astype(np.float64)
        cross = (x.T @ (y - y_mean)).astype(np.float64)
        del x
        for subset, subset_names in subsets.items():
            cols = np.concatenate([columns[n] for n in subset_names])
            block = gram[np.ix_(cols, cols)]
            block[np.diag_indices_from(block)] += l2 * int(rows.sum())
            weights = np.linalg.solve(block, cross[cols]).astype(np.float32)
            scores[subset][task] = x_val[:, cols] @ weights + (y_mean - x_mean[cols] @ weights)
    return {
        subset: compute_abaw_metrics(
            np.clip(s["va"], -1, 1), labels_val["va"], s["expression"].argmax(1), labels_val["expression"],
            (s["aus"] > 0.5).astype(np.int64), labels_val["aus"],
        )  # fmt: skip
        for subset, s in scores.items()
    }
