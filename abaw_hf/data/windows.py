"""Temporal windows over a feature dataset: the window index, a torch Dataset of windows, the collator.

A window is a run of consecutive *available* rows of one video (rows are sorted by (video, frame), so a
window is a slice). A jump in frame numbers larger than `max_gap` starts a new run. Training windows have
`window_size` rows and start every `stride` rows (the last one of a run is aligned to its end); evaluation
windows tile every run without overlap, so every row is in exactly one window.

Batches are dicts of tensors, padded to `window_size`:
`features {name: float32 [B,T,D]}`, `feature_mask {name: bool [B,T]}` (False: missing vector, zeros stored),
`attention_mask bool [B,T]`, `frame_index long [B,T]` (frame number minus the window's first frame),
`valence_arousal_labels float [B,T,2]` (-5 missing), `expression_labels long [B,T]` (-1 missing),
`au_labels long [B,T,12]` (-1 missing) and `row_index long [B,T]` (dataset row, -1 on padding), which maps
predictions back to (video, frame) after `accelerator.gather_for_metrics`.
"""

from __future__ import annotations

from typing import Any, Sequence

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .columns import column_chunks, require_contiguous
from .schema import MISSING_AU, MISSING_EXPRESSION, MISSING_VA, NUM_AUS, feature_dims_of

DEFAULT_WINDOW_SIZE = 32
DEFAULT_MAX_GAP = 30
WINDOW_MODES = ("train", "eval")


def build_window_index(
    videos: np.ndarray,
    frames: np.ndarray,
    window_size: int = DEFAULT_WINDOW_SIZE,
    stride: int | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    mode: str = "train",
    max_span: int | None = None,
) -> np.ndarray:
    """Windows as an int64 array [W, 2] of (first row, number of rows), for rows sorted by (video, frame).

    `stride` (train mode; default window_size // 2) is ignored in eval mode, which tiles every run exactly once.
    `max_span` also ends a window before its frame offset (frame - first frame) reaches `max_span`: set it to the
    model's `max_window` so that `frame_index` always fits the positional table.
    """
    if mode not in WINDOW_MODES:
        raise ValueError(f"mode must be one of {WINDOW_MODES}, got {mode!r}")
    if window_size < 1 or max_gap < 1 or (max_span is not None and max_span < 1):
        raise ValueError(f"window_size, max_gap and max_span must be >= 1, got {window_size}, {max_gap}, {max_span}")
    stride = max(1, window_size // 2) if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    videos, frames = np.asarray(videos), np.asarray(frames, dtype=np.int64)
    if len(frames) == 0:
        return np.zeros((0, 2), np.int64)
    same_video = videos[1:] == videos[:-1]
    step = np.diff(frames)
    if np.any(same_video & (step <= 0)) or np.any(videos[1:][~same_video] < videos[:-1][~same_video]):
        raise ValueError("rows must be sorted by (video, frame) with no duplicates (sort the dataset first)")
    if max_span is not None:
        max_gap = min(max_gap, max_span - 1) if max_span > 1 else 0
    breaks = np.flatnonzero(~same_video | (step > max_gap)) + 1
    run_starts = np.concatenate([[0], breaks])
    run_stops = np.concatenate([breaks, [len(frames)]])
    windows: list[tuple[int, int]] = []
    for start, stop in zip(run_starts.tolist(), run_stops.tolist()):
        # ends[i]: one past the last row of the longest window starting at row start + i
        ends = np.minimum(np.arange(start, stop) + window_size, stop)
        if max_span is not None:
            run_frames = frames[start:stop]
            ends = np.minimum(ends, start + np.searchsorted(run_frames, run_frames + max_span, side="left"))
        if mode == "eval":
            row = start
            while row < stop:
                end = int(ends[row - start])
                windows.append((row, end - row))
                row = end
            continue
        for row in range(start, stop, stride):
            end = int(ends[row - start])
            if end == stop:  # the last window of a run: the earliest start that still reaches the end
                row = start + int(np.searchsorted(ends, stop, side="left"))
                windows.append((row, stop - row))
                break
            windows.append((row, end - row))
    return np.asarray(windows, dtype=np.int64).reshape(-1, 2)


class FeatureWindows(Dataset):
    """Windows of a feature dataset; item i is a dict of numpy views of window i (see the module docstring).

    Reads the Arrow buffers directly (zero-copy float16 views of the memory-mapped files); labels, frames and
    videos are loaded once (a few bytes a row). Items are collated by :class:`WindowCollator`.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        *,
        window_size: int = DEFAULT_WINDOW_SIZE,
        stride: int | None = None,
        max_gap: int = DEFAULT_MAX_GAP,
        mode: str = "train",
        feature_names: Sequence[str] | None = None,
        max_span: int | None = None,
    ):
        require_contiguous(dataset)
        self.dataset = dataset
        dims = feature_dims_of(dataset.features)
        self.feature_names = list(feature_names) if feature_names is not None else list(dims)
        unknown = sorted(set(self.feature_names) - set(dims))
        if unknown:
            raise ValueError(f"feature columns {unknown} are not in the dataset (it has {list(dims)})")
        self.feature_dims = {name: dims[name] for name in self.feature_names}
        self.window_size, self.mode = int(window_size), mode
        labels = dataset.with_format("numpy", columns=["video", "frame", "valence", "arousal", "expression"])[:]
        self.videos = np.asarray(labels["video"])
        self.frames = np.asarray(labels["frame"], dtype=np.int64)
        self.valence_arousal = np.stack([labels["valence"], labels["arousal"]], 1).astype(np.float32)
        self.expression = np.asarray(labels["expression"], dtype=np.int64)
        self.aus = np.asarray(dataset.data.column("aus").combine_chunks().flatten().to_numpy(), np.int64).reshape(
            -1, NUM_AUS
        )
        self.windows = build_window_index(self.videos, self.frames, self.window_size, stride, max_gap, mode, max_span)
        self._chunks: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_chunks"] = None  # views of Arrow buffers are rebuilt in each worker, never pickled
        return state

    def _column_views(self) -> dict[str, Any]:
        if self._chunks is None:
            chunks = {}
            for name in self.feature_names:
                parts = column_chunks(self.dataset, name)
                chunks[name] = (np.array([p.start for p in parts]), parts)
            self._chunks = chunks
        return self._chunks

    def _rows(self, name: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        starts, parts = self._column_views()[name]
        first = int(np.searchsorted(starts, start, side="right")) - 1
        part = parts[first]
        if stop <= part.start + len(part.values):
            return part.values[start - part.start : stop - part.start], part.present[start - part.start : stop - part.start]
        pieces, masks, position = [], [], start
        while position < stop:  # the window crosses a chunk boundary: stitch the pieces
            part = parts[first]
            upper = min(stop, part.start + len(part.values))
            pieces.append(part.values[position - part.start : upper - part.start])
            masks.append(part.present[position - part.start : upper - part.start])
            position, first = upper, first + 1
        return np.concatenate(pieces), np.concatenate(masks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        start, length = (int(v) for v in self.windows[index])
        stop = start + length
        features, present = {}, {}
        for name in self.feature_names:
            features[name], present[name] = self._rows(name, start, stop)
        return {
            "row_start": start,
            "video": self.videos[start],
            "frames": self.frames[start:stop],
            "features": features,
            "present": present,
            "valence_arousal": self.valence_arousal[start:stop],
            "expression": self.expression[start:stop],
            "aus": self.aus[start:stop],
        }


class WindowCollator:
    """Pads window items to `window_size` and returns the batch dict of tensors (module docstring)."""

    def __init__(self, feature_dims: dict[str, int], window_size: int = DEFAULT_WINDOW_SIZE):
        self.feature_dims = dict(feature_dims)
        self.window_size = int(window_size)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch, length = len(items), self.window_size
        attention = np.zeros((batch, length), dtype=bool)
        frame_index = np.zeros((batch, length), dtype=np.int64)
        row_index = np.full((batch, length), -1, dtype=np.int64)
        va = np.full((batch, length, 2), MISSING_VA, dtype=np.float32)
        expression = np.full((batch, length), MISSING_EXPRESSION, dtype=np.int64)
        aus = np.full((batch, length, NUM_AUS), MISSING_AU, dtype=np.int64)
        features = {name: np.zeros((batch, length, dim), np.float32) for name, dim in self.feature_dims.items()}
        masks = {name: np.zeros((batch, length), dtype=bool) for name in self.feature_dims}
        for b, item in enumerate(items):
            n = len(item["frames"])
            if n > length:
                raise ValueError(f"window of {n} frames is longer than the collator's window_size {length}")
            attention[b, :n] = True
            frame_index[b, :n] = item["frames"] - item["frames"][0]
            row_index[b, :n] = np.arange(item["row_start"], item["row_start"] + n)
            va[b, :n] = item["valence_arousal"]
            expression[b, :n] = item["expression"]
            aus[b, :n] = item["aus"]
            for name in self.feature_dims:
                features[name][b, :n] = item["features"][name]
                masks[name][b, :n] = item["present"][name]
        for name, values in features.items():
            if not np.isfinite(values.sum()):  # one cheap reduction; locate the culprit only when it fails
                b, t = np.argwhere(~np.isfinite(values).all(axis=2))[0]
                item = items[b]
                raise ValueError(
                    f"feature {name!r} has NaN or Inf at video {str(item['video'])!r} frame {int(item['frames'][t])} "
                    f"(dataset row {item['row_start'] + t})"
                )
        return {
            "features": {name: torch.from_numpy(values) for name, values in features.items()},
            "feature_mask": {name: torch.from_numpy(mask) for name, mask in masks.items()},
            "attention_mask": torch.from_numpy(attention),
            "frame_index": torch.from_numpy(frame_index),
            "valence_arousal_labels": torch.from_numpy(va),
            "expression_labels": torch.from_numpy(expression),
            "au_labels": torch.from_numpy(aus),
            "row_index": torch.from_numpy(row_index),
        }


def window_dataloader(
    dataset: datasets.Dataset,
    *,
    window_size: int = DEFAULT_WINDOW_SIZE,
    stride: int | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    mode: str = "train",
    batch_size: int = 64,
    shuffle: bool | None = None,
    seed: int = 0,
    num_workers: int = 0,
    feature_names: Sequence[str] | None = None,
    max_span: int | None = None,
) -> DataLoader:
    """A DataLoader of window batches; shuffled (seeded) in train mode, in dataset order in eval mode."""
    windows = FeatureWindows(
        dataset, window_size=window_size, stride=stride, max_gap=max_gap, mode=mode, feature_names=feature_names,
        max_span=max_span,
    )  # fmt: skip
    shuffle = (mode == "train") if shuffle is None else shuffle
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        windows,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        collate_fn=WindowCollator(windows.feature_dims, windows.window_size),
        persistent_workers=num_workers > 0,
    )


def rows_from_windows(row_index: np.ndarray, values: np.ndarray, num_rows: int) -> np.ndarray:
    """Per-row values from per-window outputs: `row_index [W,T]`, `values [W,T,...]` -> `[num_rows, ...]`.

    Every row must appear exactly once (eval-mode windows, gathered with `gather_for_metrics`); a row seen
    twice or never raises, naming how many.
    """
    row_index = np.asarray(row_index).reshape(-1)
    values = np.asarray(values)
    values = values.reshape(len(row_index), *values.shape[2:])
    valid = row_index >= 0
    rows = row_index[valid]
    counts = np.bincount(rows, minlength=num_rows)
    if len(counts) > num_rows or (counts != 1).any():
        raise ValueError(
            f"windows cover rows unevenly: {int((counts[:num_rows] == 0).sum())} rows never predicted, "
            f"{int((counts > 1).sum())} predicted more than once (out of {num_rows})"
        )
    out = np.empty((num_rows, *values.shape[1:]), dtype=values.dtype)
    out[rows] = values[valid]
    return out
