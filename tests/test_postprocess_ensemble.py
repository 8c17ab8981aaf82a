"""Ensembles: several models' probabilities and VA are averaged exactly, row by row."""

from __future__ import annotations

import numpy as np
import pytest

from abaw_hf.data.synthetic import make_synthetic_dataset
from abaw_hf.evaluation import FramePredictions, average_predictions, predict_dataset


@pytest.fixture(scope="module")
def validation():
    return make_synthetic_dataset(num_videos=5, frames_per_video=48)["validation"]


def test_two_fold_ensemble_is_the_exact_mean_of_its_members(validation, tiny_model):
    first, second = (tiny_model(seed=seed, hidden_size=16, mlp_ratio=2.0, max_window=64) for seed in (1, 2))
    one = predict_dataset(first, validation, window=8)
    two = predict_dataset(second, validation, window=8)
    both = predict_dataset([first, second], validation, window=8)
    np.testing.assert_array_equal(both.row_index, np.arange(len(validation)))
    for name in ("valence_arousal", "expression_probs", "au_probs"):
        a, b, mean = getattr(one, name), getattr(two, name), getattr(both, name)
        assert not np.array_equal(a, b)  # the members really differ
        np.testing.assert_array_equal(mean, (a + b) / 2)
    np.testing.assert_allclose(both.expression_probs.sum(1), 1.0, atol=1e-5)


def test_average_predictions_refuses_members_over_different_rows():
    rows = np.arange(3)
    member = FramePredictions(rows, np.zeros((3, 2)), np.full((3, 8), 1 / 8), np.zeros((3, 12)))
    other = FramePredictions(rows[::-1].copy(), np.zeros((3, 2)), np.full((3, 8), 1 / 8), np.zeros((3, 12)))
    with pytest.raises(ValueError, match="different rows"):
        average_predictions([member, other])
