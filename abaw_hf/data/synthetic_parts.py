"""The parts both synthetic generators share (`abaw_hf.data.synthetic`, the calibrated default, and
`abaw_hf.data.synthetic_easy`, the previous one): the paper's extractors and their dims, the latent layout, the
expression prototypes, OpenFace's intensities, `SyntheticConfig` and the noise helpers. Below both, so neither
generator imports the other's module back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .schema import NUM_AUS, NUM_EXPRESSIONS

# The paper's five extractors, in its feature order; dims come from the extractor registry.
PAPER_EXTRACTORS = ("resnet18", "poster2", "poster", "eac", "fau")


def _registry_dims(names) -> dict[str, int]:
    from ..extractors import get_extractor_class

    return {name: int(get_extractor_class(name).dim) for name in names}


SYNTHETIC_FEATURE_DIMS = _registry_dims(PAPER_EXTRACTORS)
NETWORK_EXTRACTORS = tuple(name for name in PAPER_EXTRACTORS if name != "fau")

# P(AU on | expression) before the per-AU base-rate offsets: rows Neutral, Anger, Disgust, Fear, Happiness,
# Sadness, Surprise, Other; columns AU1 AU2 AU4 AU6 AU7 AU10 AU12 AU15 AU23 AU24 AU25 AU26 (FACS prototypes).
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
# (valence, arousal) prototype of each expression (circumplex placement)
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
SYNTHETIC_KINDS = ("abaw", "easy")


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated data (stored in the dataset's metadata)."""

    num_videos: int = 60
    frames_per_video: int = 320  # kind "abaw": median kept rows per video; "easy": mean timeline length
    seed: int = 0
    validation_every: int = 5
    va_label_noise: float = 0.06
    boundary_jitter: float = 0.12
    label_flip_rate: float = 0.01
    missing_label_rate: dict = field(default_factory=lambda: {"va": 0.25, "expression": 0.3, "au": 0.25})  # easy
    missing_vector_rate: float = 0.01
    fau_missing_rate: float = 0.05
    generator_version: int = 1
    kind: str = "abaw"  # "abaw" (calibrated) or "easy" (the previous generator)
    extractor_noise: dict | None = None  # kind "abaw": overrides of EXTRACTOR_NOISE (calibration)


def _openface_columns(
    rng: np.random.Generator, au_read: np.ndarray, expression_read: np.ndarray, *, missing_rate: float,
    au_scale: float, au_offset: float, expression_scale: float, expression_offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """OpenFace's 17 AU intensities (0..5) read off noisy AU and expression signals, blinks unrelated to affect,
    and OpenFace's failures (a few frames at a time): (float16 intensities, present mask)."""
    n = len(au_read)
    intensities = np.empty((n, len(_OPENFACE_AUS)))
    for column, openface_name in enumerate(_OPENFACE_AUS):
        if openface_name in _OPENFACE_FROM_AU:
            intensities[:, column] = au_scale * (au_offset + au_read[:, _OPENFACE_FROM_AU[openface_name]])
        elif openface_name in _OPENFACE_FROM_EXPRESSION:
            summed = expression_read[:, list(_OPENFACE_FROM_EXPRESSION[openface_name])].sum(1)
            intensities[:, column] = expression_scale * (expression_offset + summed)
        else:  # blinks: unrelated to affect
            intensities[:, column] = 3.0 * (rng.random(n) < 0.05) + 0.3 * rng.standard_normal(n)
    bursts = np.zeros(n, dtype=bool)
    for start in np.flatnonzero(rng.random(n) < missing_rate / 6):
        bursts[start : start + int(rng.integers(2, 10))] = True
    return np.clip(intensities, 0.0, 5.0).astype(np.float16), ~bursts


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
