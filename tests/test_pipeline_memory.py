"""A long video streams through the pipeline: memory stays flat as the video grows (measured, not timed)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image
from skimage import data

from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.faces import write_video
from abaw_hf.pipeline import AffectPipeline

WIDTH, HEIGHT = 640, 360
SHORT, LONG = 32, 160


def moving_face_frames(count: int):
    """640x360 frames with the astronaut's face drifting sideways, generated one at a time."""
    face = np.asarray(Image.fromarray(data.astronaut()).resize((HEIGHT, HEIGHT)))
    for index in range(count):
        frame = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        x = 40 + (index * 3) % (WIDTH - HEIGHT - 80)
        frame[:, x : x + HEIGHT] = face
        yield frame


def traced_peak(pipeline: AffectPipeline, video):
    tracemalloc.start()
    try:
        table = pipeline(video)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, table


@pytest.fixture(scope="module")
def pipeline():
    config = AbawFusionConfig(
        feature_dims={"fau": 17}, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, max_window=64,
        extractors={"fau": {"name": "fau", "variant": "mediapipe", "dim": 17}},
    )
    pipe = AffectPipeline(AbawFusionModel(config).eval(), window=8, batch_size=16)
    yield pipe
    pipe.close()


def test_memory_stays_flat_on_a_long_video(pipeline, tmp_path):
    short = write_video(tmp_path / "short.mp4", moving_face_frames(SHORT), fps=25)
    long = write_video(tmp_path / "long.mp4", moving_face_frames(LONG), fps=25)
    pipeline(short)  # warm-up: MediaPipe graphs, torch kernels
    short_peak, short_table = traced_peak(pipeline, short)
    long_peak, long_table = traced_peak(pipeline, long)
    assert (len(short_table), len(long_table)) == (SHORT, LONG)
    assert long_table["face_found"].mean() > 0.5  # the frames really went through faces, extractors and fusion
    frame_bytes = WIDTH * HEIGHT * 3
    extra_frames = LONG - SHORT
    growth = long_peak - short_peak
    print(f"traced peak: {short_peak / 1e6:.1f} MB for {SHORT} frames, {long_peak / 1e6:.1f} MB for {LONG} frames")
    # Holding the extra frames would add extra_frames * frame_bytes (110 MB); the per-frame table adds ~1 KB a frame.
    assert growth < 4096 * extra_frames, f"peak grew by {growth} bytes over {extra_frames} extra frames"
    assert long_peak < 16 * frame_bytes, f"peak {long_peak} bytes: more than 16 decoded frames' worth"
