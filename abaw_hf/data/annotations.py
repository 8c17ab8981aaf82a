"""Readers for ABAW annotation files: the MTL challenge files, the MTL test list, and the single-task folders.

Every reader returns an :class:`Annotations` table (one row per frame, ABAW missing markers kept) that the
builder turns into a dataset. Malformed rows raise :class:`AnnotationError` naming file and line, or, with
``skip_bad_rows=True``, are dropped and counted in ``Annotations.skipped``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import UserError, read_text_file
from ..modeling.labels_abaw_fusion import AU_NAMES, MISSING_AU, MISSING_EXPRESSION, MISSING_VA, NUM_AUS, NUM_EXPRESSIONS

MTL_HEADER = ["image", "valence", "arousal", "expression", *AU_NAMES]
TEST_LIST_HEADER = ["image", "valence", "arousal", "expression", "aus"]
SINGLE_TASKS = ("va", "expr", "au")
_SHOWN_BAD_ROWS = 10


class AnnotationError(UserError, ValueError):
    """A malformed annotation file or row; the message names the file and line."""


@dataclass
class Annotations:
    """Per-frame labels as parallel arrays. `line` is the 1-based source line of each row (0 when unknown)."""

    video: np.ndarray  # str
    frame: np.ndarray  # int32
    valence: np.ndarray  # float32, -5 missing
    arousal: np.ndarray  # float32, -5 missing
    expression: np.ndarray  # int8, -1 missing
    aus: np.ndarray  # int8 [N, 12], -1 missing
    source: str = ""
    line: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" of rows dropped by skip_bad_rows
    num_skipped: int = 0

    def __post_init__(self) -> None:
        self.video = np.asarray(self.video, dtype=str)
        self.frame = np.asarray(self.frame, dtype=np.int32)
        self.valence = np.asarray(self.valence, dtype=np.float32)
        self.arousal = np.asarray(self.arousal, dtype=np.float32)
        self.expression = np.asarray(self.expression, dtype=np.int8)
        self.aus = np.asarray(self.aus, dtype=np.int8).reshape(-1, NUM_AUS)
        if self.line is None:
            self.line = np.zeros(len(self.frame), dtype=np.int64)
        lengths = {len(a) for a in (self.video, self.frame, self.valence, self.arousal, self.expression, self.aus)}
        if len(lengths) != 1:
            raise ValueError(f"annotation columns differ in length: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def unlabelled(cls, video: Sequence[str], frame: Sequence[int], source: str = "") -> "Annotations":
        """Rows with every label missing (a test list, or frames to extract features for)."""
        n = len(frame)
        return cls(
            video=np.asarray(video, dtype=str),
            frame=np.asarray(frame, dtype=np.int32),
            valence=np.full(n, MISSING_VA, np.float32),
            arousal=np.full(n, MISSING_VA, np.float32),
            expression=np.full(n, MISSING_EXPRESSION, np.int8),
            aus=np.full((n, NUM_AUS), MISSING_AU, np.int8),
            source=source,
        )

    def take(self, index: np.ndarray) -> "Annotations":
        return Annotations(
            video=self.video[index],
            frame=self.frame[index],
            valence=self.valence[index],
            arousal=self.arousal[index],
            expression=self.expression[index],
            aus=self.aus[index],
            source=self.source,
            line=self.line[index],
            skipped=list(self.skipped),
            num_skipped=self.num_skipped,
        )

    def sort_order(self) -> np.ndarray:
        """Row order sorted by (video, frame); raises on duplicate (video, frame) rows."""
        order = np.lexsort((self.frame, self.video))
        video, frame = self.video[order], self.frame[order]
        same = (video[1:] == video[:-1]) & (frame[1:] == frame[:-1])
        if same.any():
            shown = []
            for position in np.flatnonzero(same)[:_SHOWN_BAD_ROWS]:
                first, second = order[position], order[position + 1]
                shown.append(
                    f"{video[position]}/{frame[position]:05d} (lines {self.line[first]} and {self.line[second]})"
                )
            raise AnnotationError(
                f"{self.source or 'annotations'}: {int(same.sum())} duplicate (video, frame) rows, e.g. "
                + "; ".join(shown)
            )
        return order

    def sorted(self) -> "Annotations":
        """A copy sorted by (video, frame) (a no-op copy when already sorted)."""
        return self.take(self.sort_order())

    def is_sorted(self) -> bool:
        if len(self) < 2:
            return True
        video, frame = self.video, self.frame
        later_video = video[1:] > video[:-1]
        same_video = video[1:] == video[:-1]
        return bool(np.all(later_video | (same_video & (frame[1:] > frame[:-1]))))

    def label_counts(self) -> dict[str, int]:
        """How many rows carry each task's label (VA: both dims present; AU: all 12 present)."""
        return {
            "rows": len(self),
            "va": int(((self.valence != MISSING_VA) & (self.arousal != MISSING_VA)).sum()),
            "expression": int((self.expression != MISSING_EXPRESSION).sum()),
            "au": int((self.aus != MISSING_AU).all(axis=1).sum()),
        }


MAX_FRAME = 2**31 - 1  # frame numbers are stored as int32


def parse_image_name(image: str) -> tuple[str, int]:
    """`"116/01399.jpg"` -> `("116", 1399)`. The video becomes a folder name, so it must be a plain name."""
    video, sep, name = image.strip().replace("\\", "/").rpartition("/")
    stem = name.rsplit(".", 1)[0]
    if not sep or not video or not stem.isdigit():
        raise ValueError(f"image name {image!r} is not '<video>/<frame number>.jpg'")
    if "/" in video or video in (".", "..") or ":" in video:
        raise ValueError(f"video name {video!r} is not a plain folder name (no '/', '..' or drive)")
    if int(stem) > MAX_FRAME:
        raise ValueError(f"frame number {stem} is out of range (at most {MAX_FRAME})")
    return video, int(stem)


class _RowCollector:
    """Collects parsed rows, and bad rows as errors or (with skip_bad_rows) as a count."""

    def __init__(self, path: Path, skip_bad_rows: bool):
        self.path, self.skip_bad_rows = path, skip_bad_rows
        self.rows: list[tuple] = []
        self.lines: list[int] = []
        self.skipped: list[str] = []
        self.num_skipped = 0

    def bad(self, line_number: int, reason: str, text: str) -> None:
        message = f"{self.path}:{line_number}: {reason}: {text.strip()[:120]!r}"
        if not self.skip_bad_rows:
            raise AnnotationError(message)
        self.num_skipped += 1
        if len(self.skipped) < _SHOWN_BAD_ROWS:
            self.skipped.append(message)

    def annotations(self) -> Annotations:
        n = len(self.rows)
        columns = list(zip(*self.rows)) if n else [[], [], [], [], [], []]
        aus = np.asarray(columns[5], dtype=np.int8).reshape(n, NUM_AUS)
        table = Annotations(
            video=np.asarray(columns[0], dtype=str),
            frame=np.asarray(columns[1], dtype=np.int32),
            valence=np.asarray(columns[2], dtype=np.float32),
            arousal=np.asarray(columns[3], dtype=np.float32),
            expression=np.asarray(columns[4], dtype=np.int8),
            aus=aus,
            source=str(self.path),
            line=np.asarray(self.lines, dtype=np.int64),
            skipped=self.skipped,
            num_skipped=self.num_skipped,
        )
        if self.num_skipped:
            import warnings

            warnings.warn(
                f"{self.path}: skipped {self.num_skipped} malformed rows; first: " + " | ".join(self.skipped[:3]),
                stacklevel=3,
            )
        return table


def _check_va(value: float) -> None:
    if value != MISSING_VA and not -1.0 <= value <= 1.0:
        raise ValueError(f"valence/arousal {value} outside [-1, 1] (and not the missing marker -5)")


def _check_expression(value: int) -> None:
    if value != MISSING_EXPRESSION and not 0 <= value < NUM_EXPRESSIONS:
        raise ValueError(f"expression {value} is not 0..{NUM_EXPRESSIONS - 1} or -1")


def _check_au(value: int) -> None:
    if value not in (0, 1, MISSING_AU):
        raise ValueError(f"AU value {value} is not 0, 1 or -1")


def _parse_int(text: str) -> int:
    value = float(text)
    if value != int(value):
        raise ValueError(f"{text!r} is not an integer")
    return int(value)


def _read_lines(path: Path) -> list[str]:
    return read_text_file(path, "annotation file").splitlines()


def read_mtl_annotations(path: str | os.PathLike, *, skip_bad_rows: bool = False) -> Annotations:
    """Read `training_set_annotations.txt` / `validation_set_annotations.txt` (16 columns, one header line)."""
    path = Path(path)
    lines = _read_lines(path)
    if not lines or [c.strip() for c in lines[0].split(",")] != MTL_HEADER:
        raise AnnotationError(f"{path}:1: expected the header {','.join(MTL_HEADER)}")
    collector = _RowCollector(path, skip_bad_rows)
    for line_number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        cells = text.split(",")
        if len(cells) != len(MTL_HEADER):
            collector.bad(line_number, f"expected {len(MTL_HEADER)} columns, found {len(cells)}", text)
            continue
        try:
            video, frame = parse_image_name(cells[0])
            valence, arousal = float(cells[1]), float(cells[2])
            _check_va(valence)
            _check_va(arousal)
            expression = _parse_int(cells[3])
            _check_expression(expression)
            aus = [_parse_int(c) for c in cells[4:]]
            for value in aus:
                _check_au(value)
        except ValueError as error:
            collector.bad(line_number, str(error), text)
            continue
        collector.rows.append((video, frame, valence, arousal, expression, aus))
        collector.lines.append(line_number)
    return collector.annotations()


def read_mtl_test_list(path: str | os.PathLike) -> Annotations:
    """Read the `MTL.txt` test list (header `image,valence,arousal,expression,aus`, lines `video/frame.jpg,`)."""
    path = Path(path)
    lines = _read_lines(path)
    if not lines or [c.strip() for c in lines[0].split(",")] != TEST_LIST_HEADER:
        raise AnnotationError(f"{path}:1: expected the header {','.join(TEST_LIST_HEADER)}")
    videos, frames, line_numbers = [], [], []
    for line_number, text in enumerate(lines[1:], start=2):
        image = text.split(",", 1)[0].strip()
        if not image:
            continue
        try:
            video, frame = parse_image_name(image)
        except ValueError as error:
            raise AnnotationError(f"{path}:{line_number}: {error}") from None
        videos.append(video)
        frames.append(frame)
        line_numbers.append(line_number)
    table = Annotations.unlabelled(videos, frames, source=str(path))
    table.line = np.asarray(line_numbers, dtype=np.int64)
    return table


def _parse_single_task_row(task: str, cells: list[str]) -> tuple:
    if task == "va":
        if len(cells) != 2:
            raise ValueError(f"expected 2 columns (valence,arousal), found {len(cells)}")
        valence, arousal = float(cells[0]), float(cells[1])
        _check_va(valence)
        _check_va(arousal)
        return valence, arousal
    if task == "expr":
        if len(cells) != 1:
            raise ValueError(f"expected 1 column (expression index), found {len(cells)}")
        expression = _parse_int(cells[0])
        _check_expression(expression)
        return (expression,)
    if len(cells) != NUM_AUS:
        raise ValueError(f"expected {NUM_AUS} AU columns, found {len(cells)}")
    aus = tuple(_parse_int(c) for c in cells)
    for value in aus:
        _check_au(value)
    return aus


def read_single_task_folder(
    folder: str | os.PathLike, task: str, *, skip_bad_rows: bool = False, keep_unlabelled: bool = False
) -> Annotations:
    """Read a single-task ABAW annotation folder: one `<video>.txt` per video, a header, line N+1 = frame N.

    `task` is `"va"` (valence,arousal), `"expr"` (one index) or `"au"` (12 columns). Frames whose label is the
    missing marker are dropped unless `keep_unlabelled`; the other tasks' columns are missing.
    """
    if task not in SINGLE_TASKS:
        raise ValueError(f"task must be one of {SINGLE_TASKS}, got {task!r}")
    folder = Path(folder)
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no <video>.txt annotation files in {folder}")
    videos, frames, labels, line_numbers = [], [], [], []
    skipped: list[str] = []
    num_skipped = 0
    for path in files:
        lines = _read_lines(path)
        collector = _RowCollector(path, skip_bad_rows)
        for line_number, text in enumerate(lines[1:], start=2):
            if not text.strip():
                continue
            try:
                label = _parse_single_task_row(task, text.split(","))
            except ValueError as error:
                collector.bad(line_number, str(error), text)
                continue
            missing = (
                label[0] == MISSING_VA or label[1] == MISSING_VA
                if task == "va"
                else label[0] == MISSING_EXPRESSION
                if task == "expr"
                else all(v == MISSING_AU for v in label)
            )
            if missing and not keep_unlabelled:
                continue
            videos.append(path.stem)
            frames.append(line_number - 1)
            labels.append(label)
            line_numbers.append(line_number)
        skipped.extend(collector.skipped)
        num_skipped += collector.num_skipped
    table = Annotations.unlabelled(videos, frames, source=str(folder))
    table.line = np.asarray(line_numbers, dtype=np.int64)
    table.skipped, table.num_skipped = skipped[:_SHOWN_BAD_ROWS], num_skipped
    if labels:
        values = np.asarray(labels)
        if task == "va":
            table.valence, table.arousal = values[:, 0].astype(np.float32), values[:, 1].astype(np.float32)
        elif task == "expr":
            table.expression = values[:, 0].astype(np.int8)
        else:
            table.aus = values.astype(np.int8)
    return table


def merge_annotations(tables: Iterable[Annotations]) -> Annotations:
    """Outer-join tables (e.g. the VA, EXPR and AU tracks) on (video, frame); a task labelled twice is an error."""
    tables = list(tables)
    if not tables:
        raise ValueError("nothing to merge")
    video = np.concatenate([t.video for t in tables])
    frame = np.concatenate([t.frame for t in tables])
    order = np.lexsort((frame, video))
    video, frame = video[order], frame[order]
    starts = np.concatenate([[True], (video[1:] != video[:-1]) | (frame[1:] != frame[:-1])]) if len(order) else []
    group = np.cumsum(starts) - 1
    merged = Annotations.unlabelled(video[starts], frame[starts], source=" + ".join(t.source for t in tables))

    def fill(target: np.ndarray, values: np.ndarray, present: np.ndarray, task: str) -> None:
        values, present = values[order], present[order]
        counts = np.bincount(group[present], minlength=len(merged))
        if (counts > 1).any():
            first = int(np.flatnonzero(counts > 1)[0])
            raise AnnotationError(
                f"{task} is labelled twice for {merged.video[first]}/{merged.frame[first]:05d} in {merged.source}"
            )
        target[group[present]] = values[present]

    va = np.concatenate([np.stack([t.valence, t.arousal], 1) for t in tables])
    va_present = (va != MISSING_VA).all(axis=1)
    va_target = np.full((len(merged), 2), MISSING_VA, np.float32)
    fill(va_target, va, va_present, "valence/arousal")
    merged.valence, merged.arousal = va_target[:, 0].copy(), va_target[:, 1].copy()
    expression = np.concatenate([t.expression for t in tables])
    fill(merged.expression, expression, expression != MISSING_EXPRESSION, "expression")
    aus = np.concatenate([t.aus for t in tables])
    fill(merged.aus, aus, (aus != MISSING_AU).any(axis=1), "AU")
    return merged
