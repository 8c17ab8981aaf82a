"""The embedded synthetic dataset: determinism, ABAW-like format and rates, the oracle, the probe margins."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from abaw_hf.data import column_array, make_synthetic_dataset, synthetic_oracle_predictions, synthetic_oracle_score
from abaw_hf.data.probes import ridge_probes
from abaw_hf.data.synthetic import SYNTHETIC_FEATURE_DIMS, synthetic_config_of


@pytest.fixture(scope="module")
def default_splits():
    return make_synthetic_dataset()


def test_deterministic_and_videos_independent_of_size():
    small = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=0)
    again = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=0)
    other = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=1)
    assert small["train"].data.table.equals(again["train"].data.table)
    assert not small["train"].data.table.equals(other["train"].data.table)
    larger = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=0, scale=2.0)
    assert len(set(larger["train"]["video"])) == 16 and len(set(larger["validation"]["video"])) == 4
    n = len(small["validation"])
    assert larger["validation"].select(range(n)).data.table.equals(small["validation"].data.table)


def test_format_splits_and_abaw_like_rates(default_splits):
    train, validation = default_splits["train"], default_splits["validation"]
    assert 10_000 <= len(train) <= 20_000 and 2_000 <= len(validation) <= 6_000
    assert {n: train.features[n].length for n in SYNTHETIC_FEATURE_DIMS} == SYNTHETIC_FEATURE_DIMS
    assert list(train.features)[:6] == ["video", "frame", "valence", "arousal", "expression", "aus"]
    assert not set(train["video"]) & set(validation["video"])
    assert all(int(v.rsplit("_", 1)[1]) % 5 == 4 for v in set(validation["video"]))
    videos, frames = np.asarray(train["video"]), np.asarray(train["frame"])
    same = videos[1:] == videos[:-1]
    assert np.all(np.diff(frames)[same] > 0) and np.all(videos[1:][~same] > videos[:-1][~same])
    steps = np.diff(frames)[same]
    assert 0.5 < np.mean(steps == 1) < 0.98 and np.any(steps > 30)  # gaps, short and long
    va_missing = np.mean(np.asarray(train["valence"]) == -5)
    expr = np.asarray(train["expression"])
    aus = np.asarray(train["aus"])
    assert 0.1 < va_missing < 0.45 and 0.15 < np.mean(expr == -1) < 0.5 and 0.1 < np.mean(aus[:, 0] == -1) < 0.45
    assert set(np.unique(expr)) == set(range(-1, 8))  # every class occurs
    positive = (aus == 1).sum(0) / (aus != -1).sum(0)
    assert positive.min() > 0.05 and positive.max() < 0.8
    fau, fau_present = column_array(train, "fau")
    assert 0.02 < 1 - fau_present.mean() < 0.1 and fau.min() >= 0 and fau.max() <= 5
    assert 0.002 < 1 - column_array(train, "eac")[1].mean() < 0.03


def test_oracle_is_the_ceiling_and_matches_most_labels(default_splits):
    validation = default_splits["validation"]
    oracle = synthetic_oracle_score(validation)
    assert 2.6 < oracle["p_mtl"] < 2.99  # label noise keeps it below 3, moderate noise keeps it high
    predictions = synthetic_oracle_predictions(validation)
    expression = np.asarray(validation["expression"])
    labelled = expression != -1
    assert 0.9 < np.mean(predictions["expression"][labelled] == expression[labelled]) < 1.0
    with pytest.raises(ValueError, match="not made by make_synthetic_dataset"):
        synthetic_config_of(datasets.Dataset.from_dict({"video": ["a"], "frame": [1]}))


def test_probe_margins_fusion_and_time(default_splits):
    train, validation = default_splits["train"], default_splits["validation"]
    subsets = {name: [name] for name in SYNTHETIC_FEATURE_DIMS} | {"all": list(SYNTHETIC_FEATURE_DIMS)}
    frame_scores = {name: score["p_mtl"] for name, score in ridge_probes(train, validation, subsets).items()}
    fused = frame_scores.pop("all")
    singles = frame_scores
    windowed = ridge_probes(train, validation, window=16)["all"]["p_mtl"]
    oracle = synthetic_oracle_score(validation)["p_mtl"]
    assert fused - max(singles.values()) >= 0.05, (singles, fused)
    assert windowed - fused >= 0.05, (fused, windowed)
    assert windowed < oracle
