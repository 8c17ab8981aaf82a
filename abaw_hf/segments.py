"""Segments and windows of frames: the one rule, and the one set of defaults, for training, evaluation and inference.

A *segment* is a run of rows of one video whose frame numbers never jump by more than ``max_gap``; a longer jump
(or a new video) starts a new segment. Windows never cross a segment, and neither does temporal smoothing.
Inside a segment, evaluation and inference *tile* the rows into windows of at most ``window`` rows whose frame
offsets (frame - first frame) stay below ``max_span`` (the model's ``max_window``), so every row is predicted once.

Numpy only: the dataset windows (`abaw_hf.data.windows`), the streaming pipeline and post-processing import it.
"""

from __future__ import annotations

import numpy as np

# Training's window, stride and gap; a trained model records its own (AbawFusionConfig.window / .max_gap).
DEFAULT_WINDOW = 16
DEFAULT_MAX_GAP = 8


def default_stride(window: int) -> int:
    """Training windows start every half window unless told otherwise."""
    return max(1, int(window) // 2)


def segment_starts(videos, frames, max_gap: int | None) -> np.ndarray:
    """bool [N]: True where a row starts a segment (rows sorted by (video, frame)): the first row, a new video,
    or a frame jump above ``max_gap`` (``None``: only videos split)."""
    videos, frames = np.asarray(videos), np.asarray(frames, dtype=np.int64)
    starts = np.ones(len(frames), dtype=bool)
    if len(frames) > 1:
        same_video = videos[1:] == videos[:-1]
        within_gap = np.ones(len(frames) - 1, dtype=bool) if max_gap is None else np.diff(frames) <= max_gap
        starts[1:] = ~(same_video & within_gap)
    return starts


def segment_bounds(videos, frames, max_gap: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(first row, one past the last row) of every segment, as two int64 arrays."""
    starts = np.flatnonzero(segment_starts(videos, frames, max_gap))
    return starts, np.append(starts[1:], len(frames)).astype(np.int64)


def window_ends(frames, window: int, max_span: int | None = None) -> np.ndarray:
    """For the rows of one segment: one past the last row of the longest window starting at each row."""
    frames = np.asarray(frames, dtype=np.int64)
    ends = np.minimum(np.arange(len(frames)) + int(window), len(frames))
    if max_span is not None:
        ends = np.minimum(ends, np.searchsorted(frames, frames + int(max_span), side="left"))
    return ends


def tile_segment(frames, window: int, max_span: int | None = None) -> list[tuple[int, int]]:
    """The rows of one segment tiled into windows: (first row, number of rows), relative to the segment.

    Greedy from the first row, so a prefix of a segment tiles as the whole segment does, up to its last window:
    a stream can emit every window but the last as frames arrive.
    """
    ends = window_ends(frames, window, max_span)
    windows, row = [], 0
    while row < len(ends):
        end = int(ends[row])
        windows.append((row, end - row))
        row = end
    return windows
