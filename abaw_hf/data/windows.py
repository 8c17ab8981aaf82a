"""Temporal windows over a feature dataset: the window index, a torch Dataset of windows, the collator.

A window is a run of consecutive *available* rows of one video (rows are sorted by (video, frame), so a
window is a slice) inside one segment (`abaw_hf.segments`: a jump in frame numbers larger than `max_gap` starts
a new one). Training windows have `window_size` rows and start every `stride` rows (the last one of a segment is
aligned to its end); evaluation windows tile every segment without overlap (`tile_segment`, as the inference
pipeline does), so every row is in exactly one window.

Batches are dicts of tensors, padded to `window_size`:
`features {name: float32 [B,T,D]}`, `feature_mask {name: bool [B,T]}` (False: missing vector, zeros stored),
`attention_mask bool [B,T]`, `frame_index long [B,T]` (frame number minus the window's first frame), the labels
of every task of the table the dataset has label columns for, under the model's keyword for them (`Task.labels`:
VA float [B,T,2] (-5 missing), expression long [B,T] (-1 missing), AUs long [B,T,12] (-1 missing)), and
`row_index long [B,T]` (dataset row, -1 on padding), which maps predictions back to (video, frame) after
`accelerator.gather_for_metrics`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Sequence

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..segments import DEFAULT_MAX_GAP, DEFAULT_WINDOW, default_stride, segment_bounds, tile_segment, window_ends
from .columns import ColumnChunk, column_chunks, label_array, require_contiguous
from ..modeling.tasks_abaw_fusion import TASKS
from .schema import feature_dims_of

WINDOW_MODES = ("train", "eval")


def build_window_index(
    videos: np.ndarray,
    frames: np.ndarray,
    window_size: int = DEFAULT_WINDOW,
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
    stride = default_stride(window_size) if stride is None else int(stride)
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
    windows: list[tuple[int, int]] = []
    for start, stop in zip(*(bounds.tolist() for bounds in segment_bounds(videos, frames, max_gap))):
        if mode == "eval":
            windows += [(start + first, count) for first, count in tile_segment(frames[start:stop], window_size, max_span)]
            continue
        # ends[i]: one past the last row of the longest window starting at row start + i
        ends = start + window_ends(frames[start:stop], window_size, max_span)
        for row in range(start, stop, stride):
            end = int(ends[row - start])
            if end == stop:  # the last window of a run: the earliest start that still reaches the end
                row = start + int(np.searchsorted(ends, stop, side="left"))
                windows.append((row, stop - row))
                break
            windows.append((row, end - row))
    return np.asarray(windows, dtype=np.int64).reshape(-1, 2)


@dataclass
class WindowBatch:
    """Some windows of a :class:`FeatureWindows`: `windows [B, 2]` rows of (first row, number of rows)."""

    source: "FeatureWindows"
    windows: np.ndarray


class FeatureWindows(Dataset):
    """Windows of a feature dataset. Indexing gives a :class:`WindowBatch` (a reference, no data); the
    DataLoader fetches a whole batch at once through `__getitems__` and :class:`WindowCollator` gathers it.

    Features are read from the Arrow buffers directly (zero-copy float16 views of the memory-mapped files);
    labels, frames, videos and presence masks are loaded once (a few bytes a row). NaN/Inf are looked for once,
    here (`check_finite`), and raise naming video and frame.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        *,
        window_size: int = DEFAULT_WINDOW,
        stride: int | None = None,
        max_gap: int = DEFAULT_MAX_GAP,
        mode: str = "train",
        feature_names: Sequence[str] | None = None,
        max_span: int | None = None,
        check_finite: bool = True,
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
        labels = dataset.with_format("numpy", columns=["video", "frame"])[:]
        self.videos = np.asarray(labels["video"])
        self.frames = np.asarray(labels["frame"], dtype=np.int64)
        # each task's labels (the task table's label columns), for the tasks the dataset has columns for
        self.tasks = [task for task in TASKS if set(task.label_columns) <= set(dataset.column_names)]
        self.labels = {task.name: label_array(dataset, task.label_columns).astype(
            np.float32 if isinstance(task.missing, float) else np.int64) for task in self.tasks}
        self.windows = build_window_index(self.videos, self.frames, self.window_size, stride, max_gap, mode, max_span)
        self._chunks: dict[str, list[ColumnChunk]] | None = None
        self.present = {name: np.concatenate([c.present for c in self.column_chunks(name)]) for name in self.feature_names}
        if check_finite:
            self._check_finite()

    def _check_finite(self, block_rows: int = 16_384) -> None:
        """One pass over every feature: NaN/Inf (float16 exponent bits all set) raise, naming video and frame."""
        for name in self.feature_names:
            for chunk in self.column_chunks(name):
                for low in range(0, len(chunk.values), block_rows):
                    block = chunk.values[low : low + block_rows]
                    if block.size and np.max(block.view(np.uint16) & 0x7FFF) >= 0x7C00:
                        row = chunk.start + low + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                        from .builder import FeatureError  # a UserError: a message naming the row, exit 2

                        raise FeatureError(
                            f"feature {name!r} has NaN or Inf at video {str(self.videos[row])!r} frame "
                            f"{int(self.frames[row])} (dataset row {row}); rebuild the dataset with `abaw-hf build` "
                            "or `extract` (they refuse NaN; a missing vector is a null)"
                        )

    def __len__(self) -> int:
        return len(self.windows)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_chunks"] = None  # views of Arrow buffers are rebuilt in each worker, never pickled
        return state

    def column_chunks(self, name: str) -> list[ColumnChunk]:
        """The feature column's Arrow chunks as numpy views (built once per process)."""
        if self._chunks is None:
            self._chunks = {feature: column_chunks(self.dataset, feature) for feature in self.feature_names}
        return self._chunks[name]

    def __getitem__(self, index: int) -> WindowBatch:
        return WindowBatch(self, self.windows[[index]])

    def __getitems__(self, indices: Sequence[int]) -> WindowBatch:
        return WindowBatch(self, self.windows[np.asarray(indices, dtype=np.int64)])


class WindowCollator:
    """Gathers a :class:`WindowBatch` (or a list of them) into the batch dict of tensors, padded to `window_size`.

    `feature_dims` names the features to serve (e.g. `windows.feature_dims`, or the model's subset of them).
    """

    def __init__(self, feature_dims: dict[str, int], window_size: int = DEFAULT_WINDOW):
        self.feature_dims = {str(k): int(v) for k, v in feature_dims.items()}
        self.window_size = int(window_size)

    def __call__(self, batch: WindowBatch | list[WindowBatch]) -> dict[str, Any]:
        if isinstance(batch, list):
            batch = WindowBatch(batch[0].source, np.concatenate([b.windows for b in batch]))
        source, length = batch.source, self.window_size
        first, count = batch.windows[:, 0], batch.windows[:, 1]
        if len(count) and count.max() > length:
            raise ValueError(f"a window of {int(count.max())} frames is longer than the collator's window_size {length}")
        offsets = np.arange(length)
        valid = offsets[None, :] < count[:, None]
        rows = np.where(valid, first[:, None] + offsets[None, :], first[:, None])  # padding repeats the first row
        frame_index = np.where(valid, source.frames[rows] - source.frames[first][:, None], 0)
        labels = {}
        for task in source.tasks:  # padding is marked missing
            values = source.labels[task.name]
            present = valid if values.ndim == 1 else valid[..., None]
            labels[task.labels] = torch.from_numpy(np.where(present, values[rows], values.dtype.type(task.missing)))
        features, masks = {}, {}
        for name, dim in self.feature_dims.items():
            if source.feature_dims.get(name) != dim:
                raise ValueError(f"feature {name!r} (dim {dim}) is not among the windows' {source.feature_dims}")
            chunks = source.column_chunks(name)
            starts = [chunk.start for chunk in chunks]
            values = np.empty((*rows.shape, dim), np.float16)
            for b, (row, n) in enumerate(zip(first.tolist(), count.tolist())):
                chunk = chunks[bisect.bisect_right(starts, row) - 1]
                local = row - chunk.start
                if local + n <= len(chunk.values):  # the common case: one contiguous slice, a memcpy
                    values[b, :n] = chunk.values[local : local + n]
                else:  # the window crosses a shard boundary
                    values[b, :n] = np.concatenate([c.values for c in chunks])[row : row + n]
                if n < length:
                    values[b, n:] = 0
            features[name], masks[name] = values, source.present[name][rows] & valid
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a memory-bound cast: extra threads only contend with the training loop
        try:  # torch's float16 -> float32 cast is vectorised, about 4x numpy's
            tensors = {name: torch.from_numpy(values).to(torch.float32) for name, values in features.items()}
        finally:
            torch.set_num_threads(threads)
        return {
            "features": tensors,
            "feature_mask": {name: torch.from_numpy(mask) for name, mask in masks.items()},
            "attention_mask": torch.from_numpy(valid),
            "frame_index": torch.from_numpy(frame_index.astype(np.int64)),
            **labels,
            "row_index": torch.from_numpy(np.where(valid, rows, -1).astype(np.int64)),
        }


def window_dataloader(
    dataset: datasets.Dataset,
    *,
    window_size: int = DEFAULT_WINDOW,
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
    """The window loader of training, evaluation and the tests: batches of windows, shuffled in train mode by an
    `EpochShuffleSampler` (``loader.sampler.set_epoch(epoch)``: the same order on every process and after a resume),
    in dataset order in eval mode (windows that tile every frame once)."""
    windows = FeatureWindows(
        dataset, window_size=window_size, stride=stride, max_gap=max_gap, mode=mode, feature_names=feature_names,
        max_span=max_span,
    )  # fmt: skip
    shuffle = (mode == "train") if shuffle is None else shuffle
    return DataLoader(
        windows,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(windows), seed) if shuffle else None,
        num_workers=num_workers,
        collate_fn=WindowCollator(windows.feature_dims, windows.window_size),
        persistent_workers=num_workers > 0,
    )


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation that depends only on (seed, epoch): the same on every process and after a resume."""

    def __init__(self, num_items: int, seed: int):
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items).tolist())

    def __len__(self) -> int:
        return self.num_items


def rows_from_windows(row_index: np.ndarray, values: np.ndarray, num_rows: int, *, repeats: str = "error") -> np.ndarray:
    """Per-row values from per-window outputs: `row_index [W,T]`, `values [W,T,...]` -> `[num_rows, ...]`.

    Every row must be predicted; a row never seen raises. A row seen twice raises too, unless
    ``repeats="first"`` — for outputs gathered across processes, where DDP's even-batch padding repeats
    whole windows (identical values), and the first copy is kept.
    """
    if repeats not in ("error", "first"):
        raise ValueError(f"repeats must be 'error' or 'first', got {repeats!r}")
    row_index, values = np.asarray(row_index), np.asarray(values)
    # the leading dims of values are row_index's ([W, T] windows, or [N] rows already flat)
    values = values.reshape(row_index.size, *values.shape[row_index.ndim :])
    row_index = row_index.reshape(-1)
    valid = row_index >= 0
    rows, kept = row_index[valid], values[valid]
    if repeats == "first":
        rows, first = np.unique(rows, return_index=True)
        kept = kept[first]
    counts = np.bincount(rows, minlength=num_rows)
    if len(counts) > num_rows or (counts != 1).any():
        raise ValueError(
            f"windows cover rows unevenly: {int((counts[:num_rows] == 0).sum())} rows never predicted, "
            f"{int((counts > 1).sum())} predicted more than once (out of {num_rows})"
        )
    out = np.empty((num_rows, *kept.shape[1:]), dtype=kept.dtype)
    out[rows] = kept
    return out
