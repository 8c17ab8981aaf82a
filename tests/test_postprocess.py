"""Post-processing: temporal smoothing, per-AU threshold tuning, decisions, choosing on validation."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from abaw_hf.evaluation import FramePredictions
from abaw_hf.metrics.core import f1_au
from abaw_hf.modeling import AbawFusionConfig
from abaw_hf.postprocess import (
    POSTPROCESSING_FILE,
    apply_au_thresholds,
    choose_smoothing,
    cross_fit_score,
    decide,
    read_postprocessing,
    save_postprocessing,
    score_frame_predictions,
    smooth_predictions,
    tune_au_thresholds,
)


def reference_smoothing(values, videos, frames, sigma, max_gap):
    """Brute force: every pair of rows of one video with no gap > max_gap between them, Gaussian in frames."""
    values, frames = np.asarray(values, np.float64), np.asarray(frames)
    out = np.empty_like(values)
    radius = int(np.ceil(3 * sigma))
    for i in range(len(values)):
        total, weights = 0.0, 0.0
        for j in range(len(values)):
            if videos[j] != videos[i] or abs(frames[j] - frames[i]) > radius:
                continue
            low, high = sorted((frames[i], frames[j]))
            between = np.sort(frames[(videos == videos[i]) & (frames >= low) & (frames <= high)])
            if max_gap is not None and len(between) > 1 and np.diff(between).max() > max_gap:
                continue
            weight = np.exp(-0.5 * ((frames[j] - frames[i]) / sigma) ** 2)
            total, weights = total + weight * values[j], weights + weight
        out[i] = total / weights
    return out


def test_matches_brute_force_with_gaps_and_shuffled_rows():
    rng = np.random.default_rng(0)
    videos = np.array(["a"] * 30 + ["b"] * 20)
    frames = np.concatenate([np.sort(rng.choice(80, 30, replace=False)), np.sort(rng.choice(50, 20, replace=False))])
    values = rng.normal(size=(50, 3))
    order = rng.permutation(50)  # input order must not matter
    smoothed = smooth_predictions(values[order], videos[order], frames[order], sigma=2.5, max_gap=4)
    expected = reference_smoothing(values, videos, frames, 2.5, 4)[order]
    np.testing.assert_allclose(smoothed, expected, rtol=1e-12, atol=1e-12)
    assert not np.allclose(smoothed, values[order])  # it did smooth


def test_never_crosses_video_boundaries():
    # two videos with the same frame numbers, interleaved rows, very different levels
    frames = np.tile(np.arange(40), 2)
    videos = np.repeat(np.array(["v1", "v2"], dtype=object), 40)
    values = np.where(videos == "v1", 0.0, 1.0)[:, None] + 0.01 * np.sin(frames)[:, None]
    interleave = np.argsort(np.tile(np.arange(40), 2), kind="stable")
    smoothed = smooth_predictions(values[interleave], videos[interleave], frames[interleave], sigma=8, max_gap=None)
    back = np.empty_like(smoothed)
    back[interleave] = smoothed
    alone = smooth_predictions(values[:40], videos[:40], frames[:40], sigma=8)
    np.testing.assert_allclose(back[:40], alone, atol=1e-12)
    assert back[:40].max() < 0.02 and back[40:].min() > 0.98


def test_never_crosses_a_gap_longer_than_max_gap():
    frames = np.array([0, 1, 2, 3, 20, 21, 22, 23])
    videos = np.zeros(8, dtype=int)
    values = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.float32)[:, None]
    separated = smooth_predictions(values, videos, frames, sigma=10, max_gap=5)
    np.testing.assert_array_equal(separated, values)
    joined = smooth_predictions(values, videos, frames, sigma=10, max_gap=None)
    assert 0 < joined[3, 0] < 1 and 0 < joined[4, 0] < 1


def test_constant_sequence_unchanged_and_probabilities_stay_normalised():
    rng = np.random.default_rng(1)
    frames = np.sort(rng.choice(500, 200, replace=False))
    videos = np.repeat(["x", "y"], 100)
    constant = np.tile(np.array([[0.25, -0.5, 0.125]], dtype=np.float32), (200, 1))
    smoothed = smooth_predictions(constant, videos, frames, sigma=6, max_gap=10)
    assert smoothed.dtype == np.float32
    np.testing.assert_allclose(smoothed, constant, rtol=0, atol=1e-7)
    probs = rng.dirichlet(np.ones(8), size=200)
    smoothed_probs = smooth_predictions(probs, videos, frames, sigma=3, max_gap=10)
    np.testing.assert_allclose(smoothed_probs.sum(1), 1.0, atol=1e-12)
    assert (smoothed_probs >= 0).all()


def test_sigma_zero_is_identity_and_bad_input_is_an_error():
    values = np.arange(6, dtype=np.float64)[:, None]
    np.testing.assert_array_equal(smooth_predictions(values, [0] * 6, range(6), sigma=0), values)
    with pytest.raises(ValueError, match="NaN"):
        smooth_predictions(np.array([[0.0], [np.nan]]), [0, 0], [0, 1], sigma=1)
    with pytest.raises(ValueError, match="rows"):
        smooth_predictions(values, [0] * 5, range(6), sigma=1)


# ----- thresholds and decisions ------------------------------------------------------------------------------


def au_problem(seed: int, n: int = 600):
    """AU labels and miscalibrated probabilities (some AUs too low, some too high), with -1 gaps."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, 12)) < rng.uniform(0.05, 0.6, 12)).astype(np.int64)
    shift = rng.uniform(-2.5, 2.5, 12)
    probs = 1 / (1 + np.exp(-(2.0 * (truth - 0.5) * rng.uniform(0.5, 2, 12) + rng.normal(size=(n, 12)) + shift)))
    truth[rng.random((n, 12)) < 0.1] = -1
    return probs, truth


@pytest.mark.parametrize("seed", range(5))
def test_tuned_thresholds_never_lower_validation_au_f1(seed):
    probs, truth = au_problem(seed)
    thresholds = tune_au_thresholds(probs, truth)
    assert len(thresholds) == 12 and all(0 < t < 1 for t in thresholds)
    _, at_half = decide(np.zeros((len(probs), 8)), probs, [0.5] * 12)
    _, tuned = decide(np.zeros((len(probs), 8)), probs, thresholds)
    assert f1_au(tuned, truth) >= f1_au(at_half, truth)
    if seed == 0:  # miscalibrated on purpose: tuning must find a real gain
        assert f1_au(tuned, truth) > f1_au(at_half, truth) + 0.02


def test_tuning_keeps_half_when_nothing_is_better():
    probs = np.array([[0.9], [0.8], [0.2], [0.1]]).repeat(12, axis=1)
    truth = np.array([[1], [1], [0], [0]]).repeat(12, axis=1)
    assert tune_au_thresholds(probs, truth) == [0.5] * 12  # every threshold in (0.2, 0.8] ties; 0.5 wins ties


def test_decide_argmax_and_threshold_inclusive():
    expression = np.array([[0.1, 0.7, 0.2] + [0] * 5, [0.0] * 7 + [1.0]])
    aus = np.array([[0.5] * 12, [0.49] * 12])
    labels, decisions = decide(expression, aus, [0.5] * 12)
    assert labels.tolist() == [1, 7]
    assert decisions.tolist() == [[1] * 12, [0] * 12]
    assert decisions.dtype == np.int8
    with pytest.raises(ValueError, match="12 AU thresholds"):
        decide(expression, aus, [0.5] * 11)
    with pytest.raises(ValueError, match="between 0 and 1"):
        decide(expression, aus, [0.5] * 11 + [1.5])


def test_thresholds_stored_in_config_and_model_folder(tmp_path):
    config = AbawFusionConfig(feature_dims={"resnet18": 8})
    thresholds = [0.3 + 0.01 * i for i in range(12)]
    assert apply_au_thresholds(config, thresholds) is config
    assert config.au_thresholds == pytest.approx(thresholds)
    config.save_pretrained(tmp_path)

    @dataclass
    class Choice:
        smoothing_sigma: float = 4.0
        au_thresholds: list = None

        def to_json(self):
            return {"smoothing_sigma": self.smoothing_sigma, "au_thresholds": self.au_thresholds, "max_gap": 8}

    save_postprocessing(tmp_path, Choice(au_thresholds=[0.2] * 12))
    reloaded = AbawFusionConfig.from_pretrained(tmp_path)
    assert reloaded.au_thresholds == [0.2] * 12
    assert read_postprocessing(tmp_path)["smoothing_sigma"] == 4.0
    assert json.loads((tmp_path / POSTPROCESSING_FILE).read_text())["max_gap"] == 8
    with pytest.raises(ValueError, match="12 AU thresholds"):
        apply_au_thresholds(config, [0.5] * 3)


def noisy_smooth_problem(seed: int = 3):
    """Smooth per-video labels and predictions = labels + white noise (so smoothing must help)."""
    rng = np.random.default_rng(seed)
    n_videos, length = 6, 200
    frames = np.tile(np.arange(length), n_videos)
    videos = np.repeat(np.arange(n_videos), length)
    t = frames / length
    va_true = np.stack([np.sin(2 * np.pi * (t + videos / 7)), np.cos(2 * np.pi * (t + videos / 5))], 1) * 0.6
    expression_true = ((t * 4 + videos) % 8).astype(np.int64)
    au_true = (np.sin(2 * np.pi * (t[:, None] * (1 + np.arange(12) / 6) + videos[:, None] / 3)) > 0).astype(np.int64)
    noisy = FramePredictions(
        row_index=np.arange(len(frames)),
        valence_arousal=va_true + rng.normal(0, 0.5, va_true.shape),
        expression_probs=np.exp(2 * np.eye(8)[expression_true] + rng.normal(0, 1.5, (len(frames), 8))),
        au_probs=np.clip(au_true * 0.6 + 0.2 + rng.normal(0, 0.3, au_true.shape), 0.001, 0.999),
    )
    noisy.expression_probs /= noisy.expression_probs.sum(1, keepdims=True)
    labels = {"va": va_true, "expression": expression_true, "au": au_true}
    return noisy, labels, videos, frames


def test_choose_smoothing_prefers_a_width_on_noisy_smooth_predictions():
    noisy, labels, videos, frames = noisy_smooth_problem()
    choice = choose_smoothing(noisy, labels, videos, frames, sigmas=(0, 1, 4), max_gap=None)
    assert set(choice.scores) == {0.0, 1.0, 4.0}
    assert choice.smoothing_sigma == 4.0
    assert choice.best["p_mtl"] > choice.scores[0.0]["p_mtl"] + 0.1
    assert len(choice.au_thresholds) == 12
    assert json.loads(json.dumps(choice.to_json()))["smoothing_sigma"] == 4.0


def test_cross_fit_without_choices_is_the_plain_score_and_smoothing_helps_out_of_sample():
    noisy, labels, videos, frames = noisy_smooth_problem(seed=4)
    plain, _ = cross_fit_score(noisy, labels, videos, frames, sigmas=(0,), tune_thresholds=False)
    assert plain == score_frame_predictions(noisy, labels)
    tuned, choices = cross_fit_score(noisy, labels, videos, frames, sigmas=(0, 2, 4))
    assert len(choices) == 2 and all(choice.smoothing_sigma > 0 for choice in choices)
    assert tuned["p_mtl"] > plain["p_mtl"] + 0.1
