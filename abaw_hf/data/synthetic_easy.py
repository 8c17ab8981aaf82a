"""The previous, easy synthetic generator (``kind="easy"``; presets ``easy``, ``easy-tiny``, ``easy-full``).

A quick learnable signal for tests and demos of the tooling: moderate per-frame noise that a temporal model
averages away, no subject shift, so a small model reaches ~0.96 x the oracle (P_MTL ~2.78 on ``easy``). It is
NOT calibrated to s-Aff-Wild2; the default generator (``kind="abaw"``, :mod:`abaw_hf.data.synthetic`) is.

Each video has a timeline of latent states: expression episodes (40-160 frames, classes drawn from a softened
s-Aff-Wild2 prior), action units switched per episode with FACS-style probabilities plus a slow drift, and
valence/arousal around the expression's prototype. Each extractor column is a noisy, partial view of the latents
(per-frame noise in latent space, a random nonlinear projection, per-video identity and a slow head-pose
nuisance); ``fau`` is OpenFace-like (17 non-negative AU intensities, missing in bursts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema import MISSING_AU, MISSING_EXPRESSION, MISSING_VA, NUM_AUS, NUM_EXPRESSIONS
from .synthetic_parts import (
    _AU,
    _EXPR,
    _openface_columns,
    _VA,
    AU_GIVEN_EXPRESSION,
    NUM_LATENTS,
    SYNTHETIC_FEATURE_DIMS,
    VA_PROTOTYPES,
    SyntheticConfig,
    _rng,
    _slow_noise,
    _smooth,
    _Video,
)

# s-Aff-Wild2 train expression counts, square-rooted so the rare classes keep a few episodes per split.
_COUNTS = np.array([23976, 4555, 3168, 3122, 18135, 7609, 5228, 24852], dtype=np.float64)
EXPRESSION_PRIOR = np.sqrt(_COUNTS) / np.sqrt(_COUNTS).sum()


@dataclass(frozen=True)
class ViewSpec:
    """How one extractor sees the latents: a gain per latent group, per-frame latent noise, nuisance gain."""

    expression: float
    au: tuple[float, float]  # gain on AU1..AU15, on AU23..AU26
    va: tuple[float, float]  # gain on valence, on arousal
    noise: float
    nuisance: float = 0.6


VIEWS = {
    "resnet18": ViewSpec(expression=1.0, au=(0.3, 0.15), va=(0.45, 0.15), noise=0.5, nuisance=0.9),
    "poster2": ViewSpec(expression=1.2, au=(0.25, 0.15), va=(1.0, 0.25), noise=0.5),
    "poster": ViewSpec(expression=0.8, au=(0.2, 0.15), va=(0.3, 1.0), noise=0.6),
    "eac": ViewSpec(expression=0.5, au=(1.0, 0.7), va=(0.2, 0.2), noise=0.5, nuisance=0.8),
}
FAU_NOISE = 0.7


def video_latents(config: SyntheticConfig, index: int) -> _Video:
    """Latent trajectory of one video and the frames s-Aff-Wild2-style subsampling keeps."""
    rng = _rng(config.seed, index, 0)
    length = int(config.frames_per_video * rng.uniform(0.6, 1.4) / 0.85)
    classes, bounds, previous = [], [0], -1
    while bounds[-1] < length:
        choice = previous
        while choice == previous:
            choice = int(rng.choice(NUM_EXPRESSIONS, p=EXPRESSION_PRIOR))
        classes.append(choice)
        bounds.append(bounds[-1] + int(rng.integers(40, 161)))
        previous = choice
    episode = np.repeat(np.arange(len(classes)), np.diff(bounds))[:length]
    onehot = np.eye(NUM_EXPRESSIONS)[np.asarray(classes)[episode]]
    expression = _smooth(onehot, 4.0)
    au_switch = np.where(rng.random((len(classes), NUM_AUS)) < AU_GIVEN_EXPRESSION[classes], 1.0, -1.0)
    au = _smooth(au_switch[episode], 3.0) + 0.35 * _slow_noise(rng, length, NUM_AUS, 12.0)
    va_offset = rng.uniform(-0.25, 0.25, (len(classes), 2))
    va = _smooth(VA_PROTOTYPES[classes][episode] + va_offset[episode], 6.0) + 0.15 * _slow_noise(rng, length, 2, 20.0)
    va = np.clip(va, -1.0, 1.0)
    keep = np.ones(length, dtype=bool)
    position = int(rng.integers(5, 40))
    while position < length:  # short gaps every few dozen frames, now and then a long one
        gap = int(rng.integers(60, 200)) if rng.random() < 0.08 else int(rng.geometric(0.15))
        keep[position : position + gap] = False
        position += gap + int(rng.integers(10, 80))
    keep[:2] = True
    latents = np.concatenate([expression, au, va], axis=1)[keep]
    return _Video(name=f"synthetic_{index:04d}", frames=np.flatnonzero(keep) + 1, latents=latents, timeline=length)


def _missing_spans(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    missing = np.zeros(n, dtype=bool)
    start = 0
    while start < n:
        span = int(rng.integers(40, 200))
        missing[start : start + span] = rng.random() < rate
        start += span
    return missing


def observed_labels(config: SyntheticConfig, index: int, video: _Video, split: str | None = None):
    """Stored labels: the label function on jittered latents, a few flips, VA noise, missing spans."""
    rng = _rng(config.seed, index, 2)
    n = len(video.frames)
    latents = video.latents
    jitter = config.boundary_jitter * rng.standard_normal((n, NUM_EXPRESSIONS + NUM_AUS))
    expression = (latents[:, _EXPR] + jitter[:, :NUM_EXPRESSIONS]).argmax(1)
    flip = rng.random(n) < config.label_flip_rate
    expression[flip] = rng.integers(0, NUM_EXPRESSIONS, int(flip.sum()))
    aus = (latents[:, _AU] + 3 * jitter[:, NUM_EXPRESSIONS:] > 0).astype(np.int64)
    au_flip = rng.random((n, NUM_AUS)) < config.label_flip_rate
    aus[au_flip] = 1 - aus[au_flip]
    va = np.clip(latents[:, _VA] + config.va_label_noise * rng.standard_normal((n, 2)), -1, 1)
    rates = config.missing_label_rate
    va[_missing_spans(rng, n, rates["va"])] = MISSING_VA
    expression[_missing_spans(rng, n, rates["expression"])] = MISSING_EXPRESSION
    aus[_missing_spans(rng, n, rates["au"])] = MISSING_AU
    return va.astype(np.float32), expression.astype(np.int8), aus.astype(np.int8)


def projections(config: SyntheticConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per extractor: a random projection (latent view + nuisance -> dim) and a bias."""
    out = {}
    for number, (name, dim) in enumerate(SYNTHETIC_FEATURE_DIMS.items()):
        if name == "fau":
            continue
        rng = _rng(config.seed, 1_000_000 + number, 0)
        inputs = NUM_LATENTS + 6 + 3
        out[name] = (rng.standard_normal((inputs, dim)) / np.sqrt(4.0), 0.3 * rng.standard_normal(dim))
    return out


def _view_gains(spec: ViewSpec) -> np.ndarray:
    gains = np.empty(NUM_LATENTS)
    gains[_EXPR] = spec.expression * 2.0  # expression latents live in [0, 1]: stretch to the ±1 range of the others
    gains[8:16] = spec.au[0]
    gains[16:20] = spec.au[1]
    gains[20:22] = np.asarray(spec.va) * 2.0  # VA spread is ~0.4: stretch
    return gains


def video_features(config: SyntheticConfig, index: int, video: _Video, projections) -> dict[str, tuple]:
    """Every extractor's vectors (float16) and presence for one video."""
    rng = _rng(config.seed, index, 1)
    n = len(video.frames)
    identity = np.broadcast_to(rng.standard_normal(6), (n, 6))
    pose = _slow_noise(rng, video.timeline, 3, 25.0)[video.frames - 1]
    centred = video.latents.copy()
    centred[:, _EXPR] -= 1.0 / NUM_EXPRESSIONS
    out = {}
    for name, (weights, bias) in projections.items():
        spec = VIEWS[name]
        view = _view_gains(spec) * (centred + spec.noise * rng.standard_normal(centred.shape))
        inputs = np.concatenate([view, spec.nuisance * identity, spec.nuisance * pose], axis=1)
        vectors = np.tanh(inputs @ weights + bias) + 0.2 * rng.standard_normal((n, len(bias)))
        present = rng.random(n) >= config.missing_vector_rate
        out[name] = (vectors.astype(np.float16), present)
    au_noisy = video.latents[:, _AU] + FAU_NOISE * rng.standard_normal((n, NUM_AUS))
    expression_noisy = video.latents[:, _EXPR] + 0.5 * FAU_NOISE * rng.standard_normal((n, NUM_EXPRESSIONS))
    out["fau"] = _openface_columns(rng, au_noisy, expression_noisy, missing_rate=config.fau_missing_rate,
                                   au_scale=1.2, au_offset=1.0, expression_scale=2.5, expression_offset=0.0)
    return out
