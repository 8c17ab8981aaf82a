"""The embedded synthetic dataset: calibration targets (s-Aff-Wild2 statistics), determinism, format, the subject
shift, the oracle, the extractor registry's dims, and the previous easy generator kept by name."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from abaw_hf.data import column_array, make_synthetic_dataset, synthetic_oracle_predictions, synthetic_oracle_score
from abaw_hf.data.probes import ridge_probes
from abaw_hf.data.synthetic import (
    AU_RATES,
    EXPRESSION_FREQUENCIES,
    FPS,
    MISSING_SHARES,
    ROWS_PER_VIDEO,
    SYNTHETIC_FEATURE_DIMS,
    SYNTHETIC_PRESETS,
    extractor_noise,
    synthetic_config_of,
)
from abaw_hf.extractors import get_extractor_class

# Tolerances of the calibration targets on a generated split of 100 videos (~55k rows), absolute differences: each
# subject has its own expression mix and AU offsets, so a split of 100 subjects varies about its targets.
TOLERANCE = {"expression_frequency": 0.05, "au_rate": 0.07, "missing_share": 0.08, "rows_per_video": 0.25}


@pytest.fixture(scope="module")
def calibration_splits():
    return make_synthetic_dataset(num_videos=100, seed=1)


@pytest.fixture(scope="module")
def default_splits():
    return make_synthetic_dataset()


def _labels(split):
    table = split.with_format("numpy", columns=["video", "frame", "valence", "arousal", "expression", "aus"])[:]
    return table


def _mean_run_seconds(videos: np.ndarray, labels: np.ndarray) -> float:
    """Mean length (s at 30 fps) of runs of one labelled value on consecutive rows of one video."""
    labelled = labels >= 0
    change = np.concatenate([[True], (videos[1:] != videos[:-1]) | (labels[1:] != labels[:-1])])
    run_id = np.cumsum(change) - 1
    lengths = np.bincount(run_id)
    run_labelled = np.bincount(run_id, weights=labelled) > 0
    return float(lengths[run_labelled].mean() / FPS)


def test_calibration_targets_within_tolerance(calibration_splits):
    train, validation = _labels(calibration_splits["train"]), _labels(calibration_splits["validation"])
    expression = train["expression"]
    frequencies = np.bincount(expression[expression >= 0], minlength=8) / (expression >= 0).sum()
    assert np.abs(frequencies - EXPRESSION_FREQUENCIES).max() < TOLERANCE["expression_frequency"], frequencies
    assert frequencies[[0, 7]].min() > frequencies[[1, 2, 3]].max()  # Neutral and Other dominate, the rare stay rare
    aus = np.concatenate([train["aus"], validation["aus"]])
    rates = (aus == 1).sum(0) / (aus != -1).sum(0)
    assert np.abs(rates - AU_RATES).max() < TOLERANCE["au_rate"], rates
    assert rates[10] == rates.max() and rates[7] < 0.06  # AU25 the most common, AU15 rare
    for split, table in (("train", train), ("validation", validation)):
        measured = {"va": np.mean(table["valence"] == -5), "expression": np.mean(table["expression"] == -1),
                    "au": np.mean(table["aus"][:, 0] == -1)}
        for task, share in MISSING_SHARES[split].items():
            assert abs(measured[task] - share) < TOLERANCE["missing_share"], (split, task, measured[task], share)
    # missing AUs are missing for the whole row (one annotation per frame and task)
    assert np.all((train["aus"] == -1).all(1) == (train["aus"] == -1).any(1))
    # persistence: expression labels last seconds, AU states about a second, not single frames
    assert 1.2 < _mean_run_seconds(train["video"], expression) < 4.0
    au_runs = [_mean_run_seconds(train["video"], train["aus"][:, k]) for k in range(12)]
    assert 0.3 < np.median(au_runs) < 3.0, au_runs
    videos = np.concatenate([train["video"], validation["video"]])
    rows_per_video = len(videos) / len(set(videos))
    assert abs(rows_per_video / ROWS_PER_VIDEO - 1) < TOLERANCE["rows_per_video"], rows_per_video
    valence, arousal = train["valence"][train["valence"] != -5], train["arousal"][train["arousal"] != -5]
    assert -1 <= valence.min() and valence.max() <= 1 and 0.0 < valence.mean() < 0.25 and 0.1 < arousal.mean() < 0.4


def test_deterministic_per_seed_and_videos_independent_of_size():
    small = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=0)
    again = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=0)
    other = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=1)
    assert small["train"].data.table.equals(again["train"].data.table)
    assert small["validation"].data.table.equals(again["validation"].data.table)
    assert not small["train"].data.table.equals(other["train"].data.table)
    larger = make_synthetic_dataset(num_videos=10, frames_per_video=60, seed=0, scale=2.0)
    assert len(set(larger["train"]["video"])) == 16 and len(set(larger["validation"]["video"])) == 4
    n = len(small["validation"])
    assert larger["validation"].select(range(n)).data.table.equals(small["validation"].data.table)


def test_noise_override_changes_only_that_extractor():
    base = make_synthetic_dataset(num_videos=5, frames_per_video=60)["train"]
    louder = make_synthetic_dataset(num_videos=5, frames_per_video=60, extractor_noise={"eac": {"au": 5.0}})["train"]
    assert np.array_equal(column_array(base, "resnet18")[0], column_array(louder, "resnet18")[0])
    assert not np.array_equal(column_array(base, "eac")[0], column_array(louder, "eac")[0])
    assert np.array_equal(np.asarray(base["aus"]), np.asarray(louder["aus"]))  # labels do not move
    assert synthetic_config_of(louder).extractor_noise == {"eac": {"au": 5.0}}
    noise = extractor_noise(synthetic_config_of(louder))
    assert noise["eac"]["au"] == 5.0 and set(noise["fau"]) == {"au", "expression"}  # fau reads no VA
    with pytest.raises(ValueError, match="extractor_noise.*vgg"):
        make_synthetic_dataset(num_videos=5, frames_per_video=20, extractor_noise={"vgg": {"au": 1.0}})


def test_format_subject_shift_and_registry_dims(default_splits):
    train, validation = default_splits["train"], default_splits["validation"]
    assert SYNTHETIC_FEATURE_DIMS == {name: get_extractor_class(name).dim for name in SYNTHETIC_FEATURE_DIMS}
    assert {n: train.features[n].length for n in SYNTHETIC_FEATURE_DIMS} == SYNTHETIC_FEATURE_DIMS
    assert list(train.features)[:6] == ["video", "frame", "valence", "arousal", "expression", "aus"]
    assert 15_000 <= len(train) <= 30_000 and 3_000 <= len(validation) <= 8_000
    # one subject per video, every 5th video validates: no validation subject is seen in training
    assert not set(train["video"]) & set(validation["video"])
    assert all(int(v.rsplit("_", 1)[1]) % 5 == 4 for v in set(validation["video"]))
    videos, frames = np.asarray(train["video"]), np.asarray(train["frame"])
    same = videos[1:] == videos[:-1]
    assert np.all(np.diff(frames)[same] > 0) and np.all(videos[1:][~same] > videos[:-1][~same])
    steps = np.diff(frames)[same]
    assert 0.5 < np.mean(steps == 1) < 0.995 and np.any(steps > 30)  # gaps, short and long
    # features carry identity/recording conditions: per-video means differ far more than chance
    values, present = column_array(train, "resnet18")
    values = values[present].astype(np.float64)
    names = videos[present]
    means = np.stack([values[names == v].mean(0) for v in np.unique(names)])
    within = np.mean([values[names == v].var(0).mean() for v in np.unique(names)])
    per_video_rows = len(values) / len(means)
    assert means.var(0).mean() > 20 * within / per_video_rows
    fau, fau_present = column_array(train, "fau")
    assert 0.02 < 1 - fau_present.mean() < 0.1 and fau.min() >= 0 and fau.max() <= 5
    assert 0.002 < 1 - column_array(train, "eac")[1].mean() < 0.03


def test_oracle_is_the_ceiling(default_splits):
    validation = default_splits["validation"]
    oracle = synthetic_oracle_score(validation)
    assert 1.7 < oracle["p_mtl"] < 2.5  # annotator noise (confusions, AU and VA drift) keeps it well below 3
    predictions = synthetic_oracle_predictions(validation)
    expression = np.asarray(validation["expression"])
    labelled = expression != -1
    # 25 % of episodes are labelled as another class (about 0.8 expected; 10 validation subjects vary around it)
    assert 0.65 < np.mean(predictions["expression"][labelled] == expression[labelled]) < 0.95
    with pytest.raises(ValueError, match="not made by make_synthetic_dataset"):
        synthetic_config_of(datasets.Dataset.from_dict({"video": ["a"], "frame": [1]}))
    with pytest.raises(ValueError, match="synthetic kind"):
        make_synthetic_dataset(kind="hard")


def test_linear_probes_stay_far_below_the_oracle(default_splits):
    """Hard like s-Aff-Wild2: even all five extractors averaged over 16 frames leave most of the ceiling."""
    train, validation = default_splits["train"], default_splits["validation"]
    probed = ridge_probes(train, validation, {"all": list(SYNTHETIC_FEATURE_DIMS), "fau": ["fau"]}, window=16)
    assert 0.5 < probed["all"]["p_mtl"] < 1.7, probed["all"]
    assert probed["fau"]["ccc_valence"] < probed["all"]["ccc_valence"]  # OpenFace reads no valence of its own


def test_easy_generator_is_kept_by_name():
    easy = make_synthetic_dataset(**SYNTHETIC_PRESETS["easy-tiny"])
    assert synthetic_config_of(easy["train"]).kind == "easy"
    assert len(easy["train"]) + len(easy["validation"]) < 1500  # the easy generator's tiny size
    splits = make_synthetic_dataset(**SYNTHETIC_PRESETS["easy"])
    train, validation = splits["train"], splits["validation"]
    subsets = {name: [name] for name in SYNTHETIC_FEATURE_DIMS} | {"all": list(SYNTHETIC_FEATURE_DIMS)}
    frame_scores = {name: score["p_mtl"] for name, score in ridge_probes(train, validation, subsets).items()}
    fused = frame_scores.pop("all")
    windowed = ridge_probes(train, validation, window=16)["all"]["p_mtl"]
    oracle = synthetic_oracle_score(validation)["p_mtl"]
    assert fused - max(frame_scores.values()) >= 0.05, (frame_scores, fused)
    assert windowed - fused >= 0.05, (fused, windowed)
    assert 2.6 < oracle < 2.99 and 2.5 < windowed < oracle  # a quick learnable signal
