"""The embedded default data: a deterministic, ABAW-like feature dataset generated from smooth latent affect.

Each video has a timeline of latent states:

* expression episodes (40-160 frames, classes drawn from a softened s-Aff-Wild2 prior), the episode's
  one-hot vector smoothed over time -> ``expression`` latent (8);
* action units switched on or off per episode with FACS-style probabilities for that expression, plus a
  slow per-AU drift -> ``au`` latent (12, label = latent > 0);
* valence/arousal around the expression's prototype, a per-episode offset and a slow residual -> ``va`` (2).

The noise-free label function is ``argmax(expression latent)``, ``au latent > 0`` and ``va`` itself; the
stored labels add annotator noise (jittered boundaries, a few random flips, VA noise) that this function
ignores, so :func:`synthetic_oracle_score` (the label function scored against the stored labels) is the ceiling
a model can hope for. Frames are dropped in gaps like s-Aff-Wild2, labels go missing in spans at ABAW-like
rates, and each extractor column (real names and dims) is a different noisy, partial view of the latents:
per-frame noise in latent space (so averaging over time and across extractors both help), a random
nonlinear projection to the extractor's dim, per-video identity and a slow head-pose nuisance. ``fau`` is
OpenFace-like: 17 non-negative AU intensities, missing in bursts where "OpenFace failed".

Videos are generated independently from ``(seed, video index)``: the same seed gives the same dataset, and a
larger ``scale`` only adds videos. Every 5th video is in the validation split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets
import numpy as np

from .annotations import Annotations
from .builder import rows_to_table
from .schema import METADATA_KEY, MISSING_AU, MISSING_EXPRESSION, MISSING_VA, NUM_AUS, NUM_EXPRESSIONS, make_info

SYNTHETIC_FEATURE_DIMS = {"resnet18": 512, "poster2": 768, "poster": 512, "eac": 2048, "fau": 17}
# s-Aff-Wild2 train expression counts, square-rooted so the rare classes keep a few episodes per split.
_ABAW_EXPRESSION_COUNTS = np.array([23976, 4555, 3168, 3122, 18135, 7609, 5228, 24852], dtype=np.float64)
EXPRESSION_PRIOR = np.sqrt(_ABAW_EXPRESSION_COUNTS) / np.sqrt(_ABAW_EXPRESSION_COUNTS).sum()

# P(AU on | expression): rows Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise, Other;
# columns AU1 AU2 AU4 AU6 AU7 AU10 AU12 AU15 AU23 AU24 AU25 AU26 (FACS prototypes, softened).
AU_GIVEN_EXPRESSION = np.array(
    [
        [0.10, 0.08, 0.10, 0.10, 0.20, 0.15, 0.10, 0.05, 0.05, 0.05, 0.35, 0.10],
        [0.10, 0.05, 0.85, 0.20, 0.75, 0.40, 0.05, 0.10, 0.60, 0.50, 0.40, 0.20],
        [0.10, 0.05, 0.70, 0.40, 0.50, 0.85, 0.05, 0.40, 0.10, 0.20, 0.50, 0.15],
        [0.85, 0.60, 0.75, 0.10, 0.50, 0.20, 0.05, 0.20, 0.10, 0.10, 0.80, 0.50],
        [0.10, 0.10, 0.05, 0.90, 0.60, 0.50, 0.95, 0.02, 0.02, 0.02, 0.70, 0.25],
        [0.80, 0.15, 0.75, 0.10, 0.30, 0.10, 0.02, 0.75, 0.10, 0.20, 0.20, 0.05],
        [0.90, 0.85, 0.05, 0.05, 0.10, 0.10, 0.10, 0.02, 0.02, 0.02, 0.90, 0.85],
        [0.20, 0.15, 0.30, 0.30, 0.50, 0.40, 0.30, 0.10, 0.15, 0.15, 0.50, 0.20],
    ]
)
# (valence, arousal) prototype of each expression
VA_PROTOTYPES = np.array(
    [[0.0, 0.0], [-0.55, 0.6], [-0.6, 0.3], [-0.5, 0.7], [0.65, 0.4], [-0.6, -0.35], [0.2, 0.7], [0.05, 0.15]]
)
# OpenFace's 17 intensities: index into our 12 AUs, or an expression that drives it, or None (blinks).
_OPENFACE_AUS = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
                 "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"]  # fmt: skip
_OPENFACE_FROM_AU = {"AU01": 0, "AU02": 1, "AU04": 2, "AU06": 3, "AU07": 4, "AU10": 5, "AU12": 6, "AU15": 7,
                     "AU23": 8, "AU25": 10, "AU26": 11}  # fmt: skip  (AU24 has no OpenFace column)
_OPENFACE_FROM_EXPRESSION = {"AU05": (3, 6), "AU09": (2,), "AU14": (7,), "AU17": (1, 5), "AU20": (3,)}

NUM_LATENTS = NUM_EXPRESSIONS + NUM_AUS + 2
_EXPR, _AU, _VA = slice(0, 8), slice(8, 20), slice(20, 22)


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


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated data (stored in the dataset's metadata)."""

    num_videos: int = 60
    frames_per_video: int = 320
    seed: int = 0
    validation_every: int = 5
    va_label_noise: float = 0.06
    boundary_jitter: float = 0.12
    label_flip_rate: float = 0.01
    missing_label_rate: dict = field(default_factory=lambda: {"va": 0.25, "expression": 0.3, "au": 0.25})
    missing_vector_rate: float = 0.01
    fau_missing_rate: float = 0.05
    generator_version: int = 1


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (edge-padded)."""
    if sigma <= 0:
        return values
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, [(radius, radius)] + [(0, 0)] * (values.ndim - 1), mode="edge")
    out = np.empty_like(values, dtype=np.float64)
    flat_in = padded.reshape(len(padded), -1)
    flat_out = out.reshape(len(values), -1)
    for column in range(flat_in.shape[1]):
        flat_out[:, column] = np.convolve(flat_in[:, column], kernel, mode="valid")
    return out


def _slow_noise(rng: np.random.Generator, length: int, dims: int, sigma: float) -> np.ndarray:
    """Smooth unit-variance noise with time scale ~sigma frames."""
    noise = _smooth(rng.standard_normal((length, dims)), sigma)
    return noise / max(1e-8, float(noise.std()))


def _rng(seed: int, video_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, video_index, stream]))


@dataclass
class _Video:
    name: str
    frames: np.ndarray  # kept frame numbers (1-based)
    latents: np.ndarray  # [n, 22] expression(8), au(12), va(2) at kept frames
    timeline: int


def _video_latents(config: SyntheticConfig, index: int) -> _Video:
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


def oracle_labels(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The noise-free label function: (va [n,2], expression [n], aus [n,12]) from latents [n,22]."""
    return latents[:, _VA].astype(np.float32), latents[:, _EXPR].argmax(1), (latents[:, _AU] > 0).astype(np.int64)


def _missing_spans(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    missing = np.zeros(n, dtype=bool)
    start = 0
    while start < n:
        span = int(rng.integers(40, 200))
        missing[start : start + span] = rng.random() < rate
        start += span
    return missing


def _observed_labels(config: SyntheticConfig, index: int, video: _Video):
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


def _projections(config: SyntheticConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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


def _video_features(config: SyntheticConfig, index: int, video: _Video, projections) -> dict[str, tuple]:
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
    intensities = np.empty((n, len(_OPENFACE_AUS)))
    for column, openface_name in enumerate(_OPENFACE_AUS):
        if openface_name in _OPENFACE_FROM_AU:
            intensities[:, column] = 1.2 * (1.0 + au_noisy[:, _OPENFACE_FROM_AU[openface_name]])
        elif openface_name in _OPENFACE_FROM_EXPRESSION:
            intensities[:, column] = 2.5 * expression_noisy[:, list(_OPENFACE_FROM_EXPRESSION[openface_name])].sum(1)
        else:  # blinks: unrelated to affect
            intensities[:, column] = 3.0 * (rng.random(n) < 0.05) + 0.3 * rng.standard_normal(n)
    bursts = np.zeros(n, dtype=bool)
    for start in np.flatnonzero(rng.random(n) < config.fau_missing_rate / 6):  # OpenFace fails a few frames at a time
        bursts[start : start + int(rng.integers(2, 10))] = True
    out["fau"] = (np.clip(intensities, 0.0, 5.0).astype(np.float16), ~bursts)
    return out


def _split_indices(config: SyntheticConfig) -> dict[str, list[int]]:
    every = config.validation_every
    if config.num_videos < every:
        raise ValueError(
            f"the synthetic dataset needs at least {every} videos for a validation split, got {config.num_videos} "
            f"(raise scale or num_videos)"
        )
    indices = range(config.num_videos)
    return {
        "train": [i for i in indices if i % every != every - 1],
        "validation": [i for i in indices if i % every == every - 1],
    }


def _build_split(config: SyntheticConfig, indices: list[int], split: str) -> datasets.Dataset:
    projections = _projections(config)
    parts: dict[str, list] = {key: [] for key in ("video", "frame", "va", "expression", "aus")}
    vectors: dict[str, list] = {name: [] for name in SYNTHETIC_FEATURE_DIMS}
    present: dict[str, list] = {name: [] for name in SYNTHETIC_FEATURE_DIMS}
    for index in indices:
        video = _video_latents(config, index)
        va, expression, aus = _observed_labels(config, index, video)
        parts["video"].append(np.full(len(video.frames), video.name))
        parts["frame"].append(video.frames)
        parts["va"].append(va)
        parts["expression"].append(expression)
        parts["aus"].append(aus)
        for name, (values, mask) in _video_features(config, index, video, projections).items():
            vectors[name].append(values)
            present[name].append(mask)
    rows = Annotations(
        video=np.concatenate(parts["video"]),
        frame=np.concatenate(parts["frame"]),
        valence=np.concatenate(parts["va"])[:, 0],
        arousal=np.concatenate(parts["va"])[:, 1],
        expression=np.concatenate(parts["expression"]),
        aus=np.concatenate(parts["aus"]),
    )
    assert rows.is_sorted(), "synthetic videos are generated in (video, frame) order"
    info = make_info(SYNTHETIC_FEATURE_DIMS, extra={"synthetic": asdict(config)})
    features = {name: (np.concatenate(vectors[name]), np.concatenate(present[name])) for name in SYNTHETIC_FEATURE_DIMS}
    table = rows_to_table(rows, features, SYNTHETIC_FEATURE_DIMS, info.features.arrow_schema)
    fingerprint = hashlib.sha256(json.dumps([asdict(config), split]).encode()).hexdigest()[:16]
    return datasets.Dataset(
        datasets.table.InMemoryTable(table), info=info, split=datasets.Split(split), fingerprint=fingerprint
    )


SYNTHETIC_PRESETS = {  # keyword arguments of make_synthetic_dataset
    "tiny": {"num_videos": 10, "frames_per_video": 120},
    "small": {},  # the generator's default: ~15k train / ~4k validation frames
    "full": {"scale": 9.0},  # about s-Aff-Wild2's 170k frames
}


def synthetic_preset(name: str) -> dict:
    if name not in SYNTHETIC_PRESETS:
        raise ValueError(f"synthetic preset must be one of {list(SYNTHETIC_PRESETS)}, got {name!r}")
    return dict(SYNTHETIC_PRESETS[name])


def make_synthetic_dataset(
    num_videos: int | None = None,
    frames_per_video: int = 320,
    seed: int = 0,
    scale: float = 1.0,
    **overrides: Any,
) -> datasets.DatasetDict:
    """The embedded default: `train`/`validation` splits (every 5th video validates), deterministic for a seed.

    Defaults give 60 videos of ~290 kept frames (~13.8k train / ~3.6k validation frames). `scale` multiplies
    the number of videos: `scale=10` gives ~174k frames, about s-Aff-Wild2's 170k. Other `SyntheticConfig`
    fields may be overridden by keyword.
    """
    videos = num_videos if num_videos is not None else 60
    config = SyntheticConfig(
        num_videos=max(2, int(round(videos * scale))), frames_per_video=frames_per_video, seed=seed, **overrides
    )
    return datasets.DatasetDict(
        {split: _build_split(config, indices, split) for split, indices in _split_indices(config).items()}
    )


def synthetic_config_of(split: datasets.Dataset) -> SyntheticConfig:
    """The generator settings stored in a synthetic split's metadata."""
    try:
        stored = json.loads(split.info.description)[METADATA_KEY]["synthetic"]
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ValueError("this dataset was not made by make_synthetic_dataset (no synthetic settings in its info)")
    return SyntheticConfig(**stored)


def synthetic_oracle_predictions(split: datasets.Dataset) -> dict[str, np.ndarray]:
    """The noise-free label function applied to the true latents of every row of a synthetic split.

    Returns `valence_arousal [N,2]`, `expression [N]`, `aus [N,12]` aligned with the split's rows.
    """
    config = synthetic_config_of(split)
    columns = split.with_format("numpy", columns=["video", "frame"])[:]
    videos, frames = columns["video"], columns["frame"]
    va = np.empty((len(frames), 2), np.float32)
    expression = np.empty(len(frames), np.int64)
    aus = np.empty((len(frames), NUM_AUS), np.int64)
    names, starts = np.unique(videos, return_index=True)
    for name, start in zip(names, starts):
        video = _video_latents(config, int(str(name).rsplit("_", 1)[1]))
        rows = np.flatnonzero(videos == name)
        position = np.searchsorted(video.frames, frames[rows])
        if np.any(video.frames[np.minimum(position, len(video.frames) - 1)] != frames[rows]):
            raise ValueError(f"video {name}: frames do not match the generator's (was the split modified?)")
        va[rows], expression[rows], aus[rows] = oracle_labels(video.latents[position])
    return {"valence_arousal": va, "expression": expression, "aus": aus}


def synthetic_oracle_score(split: datasets.Dataset) -> dict[str, float]:
    """P_MTL (and its terms) of the noise-free label function on the true latents, against the split's labels."""
    from ..metrics import compute_abaw_metrics

    predictions = synthetic_oracle_predictions(split)
    labels = split.with_format("numpy", columns=["valence", "arousal", "expression", "aus"])[:]
    return compute_abaw_metrics(
        predictions["valence_arousal"],
        np.stack([labels["valence"], labels["arousal"]], axis=1),
        predictions["expression"],
        labels["expression"],
        predictions["aus"],
        labels["aus"],
    )
