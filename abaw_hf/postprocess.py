"""Post-processing of per-frame predictions: temporal smoothing, per-AU thresholds, decisions.

Everything here is numpy in, numpy out, so that evaluation, submission and the inference pipeline share it.

* :func:`smooth_predictions` — a Gaussian over frame time within each segment (`abaw_hf.segments`): rows of
  different videos, and rows on either side of a frame-number gap longer than ``max_gap``, never see each other; the weight of a
  neighbour follows its frame distance, so skipped frames count as time.
* :func:`tune_au_thresholds` — one probability threshold per AU, the one with the best validation F1
  (0.5 is always a candidate and wins ties, so tuning never lowers validation AU F1).
* :func:`choose_smoothing` — the smoothing width with the best validation P_MTL (thresholds re-tuned per width).
* :func:`decide` — the one place that turns probabilities into an expression index and 0/1 AUs.

Tuning a model folder (writes ``au_thresholds`` into config.json and the choice into ``postprocessing.json``)::

    abaw-hf tune --model outputs/abaw-fusion --data synthetic --split validation   # abaw_hf.cli.tune
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import outputs
from .errors import UserError
from .metrics import compute_abaw_metrics
from .model_files import POSTPROCESSING_FILE, read_model_record
from .segments import segment_starts

DEFAULT_SIGMAS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
NEUTRAL_THRESHOLD = 0.5


# ----- temporal smoothing ------------------------------------------------------------------------------------


def smoothing_radius(sigma: float) -> int:
    """Frames on either side that smoothing with ``sigma`` reads (3 sigma, rounded up; 0 when off)."""
    return int(np.ceil(3.0 * sigma)) if sigma > 0 else 0


def smooth_predictions(
    values: np.ndarray,
    video_ids: Sequence,
    frames: Sequence[int],
    *,
    sigma: float,
    max_gap: int | None = None,
) -> np.ndarray:
    """Gaussian smoothing of ``values [N, C]`` over frame time, within each video and each gap-free run.

    The output at a frame is the weighted mean of the rows of its run within ``3·sigma`` frames, with weights
    ``exp(-d² / 2σ²)`` of the frame distance ``d``. Rows may come in any order; the result keeps the input order.
    ``sigma <= 0`` returns a copy. Probabilities stay probabilities (a convex combination).
    """
    values = np.asarray(values)
    squeeze = values.ndim == 1
    matrix = values.reshape(len(values), -1).astype(np.float64)
    video_ids = np.asarray(video_ids)
    frames = np.asarray(frames, dtype=np.int64)
    if not (len(video_ids) == len(frames) == len(matrix)):
        raise ValueError(f"smooth_predictions: {len(matrix)} rows of values, {len(video_ids)} video ids, {len(frames)} frames")
    if not np.isfinite(matrix).all():
        bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise ValueError(f"smooth_predictions: row {bad} holds NaN or Inf; smooth only rows with predictions")
    if sigma <= 0 or len(matrix) < 2:
        return values.copy()

    _, video_codes = np.unique(video_ids, return_inverse=True)  # integer codes: object arrays cannot be lexsorted
    video_codes = video_codes.reshape(-1)
    order = np.lexsort((frames, video_codes))
    sorted_videos, sorted_frames, sorted_values = video_codes[order], frames[order], matrix[order]
    segment = np.cumsum(segment_starts(sorted_videos, sorted_frames, max_gap))
    radius = smoothing_radius(sigma)
    total = np.zeros_like(sorted_values)
    weight_sum = np.zeros(len(sorted_values))
    # Distinct frames of a run are >= 1 apart, so neighbours within `radius` frames are within `radius` rows.
    reach = min(radius, len(sorted_values) - 1)
    for offset in range(-reach, reach + 1):
        if offset >= 0:
            here, there = slice(0, len(sorted_values) - offset), slice(offset, len(sorted_values))
        else:
            here, there = slice(-offset, len(sorted_values)), slice(0, len(sorted_values) + offset)
        distance = (sorted_frames[there] - sorted_frames[here]).astype(np.float64)
        usable = (segment[there] == segment[here]) & (np.abs(distance) <= radius)
        weight = np.where(usable, np.exp(-0.5 * (distance / sigma) ** 2), 0.0)
        total[here] += weight[:, None] * sorted_values[there]
        weight_sum[here] += weight
    smoothed_sorted = total / weight_sum[:, None]  # offset 0 always contributes weight 1
    smoothed = np.empty_like(smoothed_sorted)
    smoothed[order] = smoothed_sorted
    smoothed = smoothed.astype(values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64)
    return smoothed.reshape(values.shape) if squeeze else smoothed


def smooth_frame_predictions(predictions, video_ids, frames, *, sigma: float, max_gap: int | None = None):
    """:func:`smooth_predictions` on every task's arrays of a `abaw_hf.evaluation.FramePredictions`."""
    if sigma <= 0:
        return predictions
    return predictions.replace(
        **{
            name: smooth_predictions(values, video_ids, frames, sigma=sigma, max_gap=max_gap)
            for name, values in predictions.values.items()
        },
    )


# ----- decisions and AU thresholds ---------------------------------------------------------------------------


def _check_thresholds(thresholds: Sequence[float], num_aus: int) -> np.ndarray:
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.shape != (num_aus,):
        raise ValueError(f"need {num_aus} AU thresholds (one per AU), got {thresholds.shape[0]}")
    if not np.all((thresholds > 0) & (thresholds < 1)):
        raise ValueError(f"AU thresholds must lie strictly between 0 and 1, got {thresholds.tolist()}")
    return thresholds


def decide(
    expression: np.ndarray, aus: np.ndarray, au_thresholds: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities -> (expression index int64 [N], AU decisions int8 [N, A]); AU i is on when p_i >= threshold_i."""
    expression = np.asarray(expression)
    aus = np.asarray(aus)
    if expression.ndim != 2 or aus.ndim != 2 or len(expression) != len(aus):
        raise ValueError(f"decide: expected [N, E] and [N, A] arrays, got {expression.shape} and {aus.shape}")
    if au_thresholds is None:
        au_thresholds = [NEUTRAL_THRESHOLD] * aus.shape[1]
    thresholds = _check_thresholds(au_thresholds, aus.shape[1])
    return expression.argmax(axis=1).astype(np.int64), (aus >= thresholds).astype(np.int8)


def _f1_per_threshold(probs: np.ndarray, target: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Binary F1 of ``probs >= t`` for every t of ``grid`` (labelled rows only)."""
    positives = probs[target == 1]
    negatives = probs[target == 0]
    tp = (positives[None, :] >= grid[:, None]).sum(1)
    fp = (negatives[None, :] >= grid[:, None]).sum(1)
    fn = len(positives) - tp
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def tune_au_thresholds(
    probabilities: np.ndarray, au_true: np.ndarray, *, grid: Sequence[float] | None = None
) -> list[float]:
    """Per-AU threshold with the best F1 on these (validation) frames; -1 labels are ignored.

    0.5 is always a candidate and wins ties, so the tuned thresholds never score below 0.5 on these frames.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    au_true = np.asarray(au_true).astype(np.int64)
    if probabilities.shape != au_true.shape or probabilities.ndim != 2:
        raise ValueError(f"tune_au_thresholds: expected two [N, A] arrays, got {probabilities.shape} and {au_true.shape}")
    grid = np.asarray(THRESHOLD_GRID if grid is None else grid, dtype=np.float64)
    grid = np.unique(np.append(grid, NEUTRAL_THRESHOLD))
    # prefer the candidate closest to 0.5 among equal scores: visit candidates in that order
    preference = np.argsort(np.abs(grid - NEUTRAL_THRESHOLD), kind="stable")
    thresholds = []
    for au in range(probabilities.shape[1]):
        scores = _f1_per_threshold(probabilities[:, au], au_true[:, au], grid[preference])
        thresholds.append(float(grid[preference][int(np.argmax(scores))]))
    return thresholds


def apply_au_thresholds(model_or_config: Any, thresholds: Sequence[float]):
    """Store per-AU thresholds in an ``AbawFusionConfig`` (or a model's config); returns the config."""
    config = getattr(model_or_config, "config", model_or_config)
    config.au_thresholds = [float(t) for t in _check_thresholds(thresholds, config.num_aus)]
    return config


# ----- choosing on validation --------------------------------------------------------------------------------


def score_frame_predictions(predictions, labels: dict[str, np.ndarray], au_thresholds=None) -> dict[str, float]:
    """ABAW metrics of a ``FramePredictions``-like object against label arrays of the same rows
    (``va [N,2]``, ``expression [N]``, ``au [N,12]``: `abaw_hf.evaluation.dataset_labels`' keys, the task names),
    decided by :func:`decide`."""
    expression, aus = decide(predictions.of("expression"), predictions.of("au"), au_thresholds)
    return compute_abaw_metrics(
        va_pred=predictions.of("va"),
        va_true=labels["va"],
        expr_pred=expression,
        expr_true=labels["expression"],
        au_pred=aus,
        au_true=labels["au"],
    )


@dataclass
class PostprocessChoice:
    """What :func:`choose_smoothing` picked, and the validation score of every candidate width."""

    smoothing_sigma: float
    au_thresholds: list[float]
    max_gap: int | None
    scores: dict[float, dict[str, float]]  # sigma -> metrics (with that sigma's tuned thresholds)

    @property
    def best(self) -> dict[str, float]:
        return self.scores[self.smoothing_sigma]

    def to_json(self) -> dict:
        return {
            "smoothing_sigma": self.smoothing_sigma,
            "max_gap": self.max_gap,
            "au_thresholds": self.au_thresholds,
            "validation": {str(sigma): metrics for sigma, metrics in self.scores.items()},
        }


def choose_smoothing(
    predictions,
    labels: dict[str, np.ndarray],
    video_ids,
    frames,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    max_gap: int | None = None,
    tune_thresholds: bool = True,
) -> PostprocessChoice:
    """Try each smoothing width on validation predictions; keep the one with the best P_MTL.

    With ``tune_thresholds`` the AU thresholds are tuned for each width on the smoothed probabilities (smoothing
    shifts the probability distribution, so thresholds tuned without it would be stale); otherwise 0.5.
    Ties go to the smaller width.
    """
    scores, thresholds_by_sigma = {}, {}
    for sigma in sorted(float(s) for s in sigmas):
        smoothed = smooth_frame_predictions(predictions, video_ids, frames, sigma=sigma, max_gap=max_gap)
        thresholds = (
            tune_au_thresholds(smoothed.of("au"), labels["au"])
            if tune_thresholds
            else [NEUTRAL_THRESHOLD] * smoothed.of("au").shape[1]
        )
        thresholds_by_sigma[sigma] = thresholds
        scores[sigma] = score_frame_predictions(smoothed, labels, thresholds)
    best = max(scores, key=lambda sigma: (scores[sigma]["p_mtl"], -sigma))
    return PostprocessChoice(best, thresholds_by_sigma[best], max_gap, scores)


def cross_fit_score(
    predictions,
    labels: dict[str, np.ndarray],
    video_ids,
    frames,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    tune_thresholds: bool = True,
    max_gap: int | None = None,
    folds: int = 2,
) -> tuple[dict[str, float], list[PostprocessChoice]]:
    """An honest score of choosing post-processing on validation: split the videos into ``folds`` groups, choose
    width and thresholds on the other groups, apply them to each group, and score all rows together.

    Scoring on the very frames the thresholds were tuned on overstates the gain; this does not.
    """
    video_ids = np.asarray(video_ids)
    frames = np.asarray(frames)
    videos = np.unique(video_ids)
    if len(videos) < folds:
        raise ValueError(f"cross_fit_score needs at least {folds} videos, got {len(videos)}")
    group = {video: index % folds for index, video in enumerate(videos.tolist())}
    row_group = np.array([group[video] for video in video_ids.tolist()])
    va = np.empty_like(np.asarray(predictions.of("va"), dtype=np.float64))
    expression = np.empty(len(row_group), dtype=np.int64)
    aus = np.empty(np.shape(predictions.of("au")), dtype=np.int8)
    choices = []
    for held_out in range(folds):
        fit, apply = np.flatnonzero(row_group != held_out), np.flatnonzero(row_group == held_out)
        choice = choose_smoothing(
            predictions.take(fit), {key: labels[key][fit] for key in ("va", "expression", "au")},
            video_ids[fit], frames[fit], sigmas=sigmas, max_gap=max_gap, tune_thresholds=tune_thresholds,
        )
        choices.append(choice)
        smoothed = smooth_frame_predictions(
            predictions.take(apply), video_ids[apply], frames[apply], sigma=choice.smoothing_sigma, max_gap=max_gap
        )
        va[apply] = smoothed.of("va")
        expression[apply], aus[apply] = decide(smoothed.of("expression"), smoothed.of("au"), choice.au_thresholds)
    metrics = compute_abaw_metrics(va, labels["va"], expression, labels["expression"], aus, labels["au"])
    return metrics, choices


# ----- model folders -----------------------------------------------------------------------------------------


def read_postprocessing(model_dir: str | Path) -> dict:
    """The tuned choice saved next to a model's config.json ({} when the folder has none)."""
    return read_model_record(model_dir, POSTPROCESSING_FILE)


def save_postprocessing(model_dir: str | Path, choice: PostprocessChoice) -> None:
    """Write the AU thresholds into ``config.json`` and the whole choice into ``postprocessing.json``."""
    from transformers import AutoConfig

    from . import modeling  # noqa: F401  registers the abaw_fusion config class

    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(str(model_dir))
    apply_au_thresholds(config, choice.au_thresholds)
    config.save_pretrained(str(model_dir))
    (model_dir / POSTPROCESSING_FILE).write_text(json.dumps(choice.to_json(), indent=2) + "\n")


def hub_cache_links(model_dir: str | Path) -> list[str]:
    """The files of a model folder that are links (a Hub-cache snapshot links every file to a shared blob)."""
    folder = Path(model_dir)
    return sorted(path.name for path in folder.iterdir() if path.is_symlink()) if folder.is_dir() else []


def copy_model_folder(model_id: str | Path, target: Path) -> Path:
    """A real copy (links followed) of a model folder or a cached Hub model into ``target`` (a claimed output)."""
    import shutil

    from .model_files import model_file

    config = model_file(model_id, "config.json")
    if config is None:
        raise UserError(f"--model {model_id}: no config.json to copy")
    source = config.parent
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or relative.name.startswith(outputs.MARKER):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / relative)  # follows links: the blob's content, never the link
    return target
