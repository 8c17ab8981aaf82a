"""ABAW MTL test submissions: write the file from one or several models, and check an existing file.

The file (ABAW7 MTL format)::

    image,valence,arousal,expression,aus
    116/01399.jpg,0.123456,-0.500000,4,0,0,1,0,1,0,0,0,0,0,1,0

One row per frame of the test list (``MTL.txt``), in the listed order, with the image name exactly as listed.
Valence and arousal are written with 6 decimals (``%.6f``, clipped to [-1, 1], no negative zero), the expression
is an integer 0..7 and each of the 12 AUs is 0 or 1; lines end with ``\\n``, including the last.

    abaw-hf submit --model outputs/fold-0 outputs/fold-1 --data test_features --test-list MTL.txt -o predictions.txt
    abaw-hf submit --check predictions.txt --test-list MTL.txt
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import UserError, read_text_file
from .data.annotations import TEST_LIST_HEADER, read_mtl_test_list
from .modeling.labels_abaw_fusion import NUM_AUS, NUM_EXPRESSIONS
from .postprocess import decide, smooth_frame_predictions

SUBMISSION_HEADER = ",".join(TEST_LIST_HEADER)
SHOWN_PROBLEMS = 10


class SubmissionError(UserError, ValueError):
    """A submission that cannot be written, or a file that is not a valid submission (the message says where)."""


@dataclass
class TestList:
    """The frames of ``MTL.txt`` in listed order, with each image name exactly as written there."""

    path: str
    images: list[str]
    video: np.ndarray
    frame: np.ndarray
    line: np.ndarray  # 1-based line number of each listed frame

    def __len__(self) -> int:
        return len(self.images)


def read_test_list(path: str | Path) -> TestList:
    """Read ``MTL.txt`` (header checked by the data reader) and keep the listed image names verbatim."""
    table = read_mtl_test_list(path)
    table.sort_order()  # a frame listed twice would be written twice: refused, naming the lines (as `build` does)
    lines = read_text_file(path, "test list").splitlines()
    images = [lines[number - 1].split(",", 1)[0].strip() for number in table.line.tolist()]
    return TestList(str(path), images, table.video, table.frame, table.line)


def _format_value(value: float) -> str:
    value = min(1.0, max(-1.0, float(value)))
    return f"{round(value, 6) + 0.0:.6f}"  # + 0.0 turns -0.0 into 0.0


def format_submission(images: Sequence[str], va, expression, aus) -> str:
    """The whole submission text: header, then one row per image, ``\\n`` line ends."""
    va = np.asarray(va, dtype=np.float64)
    expression = np.asarray(expression)
    aus = np.asarray(aus)
    if not (len(images) == len(va) == len(expression) == len(aus)):
        raise SubmissionError(
            f"{len(images)} images but {len(va)} VA, {len(expression)} expression and {len(aus)} AU rows"
        )
    if not np.isfinite(va).all():
        raise SubmissionError("valence/arousal predictions hold NaN or Inf")
    if expression.size and not ((expression >= 0) & (expression < NUM_EXPRESSIONS)).all():
        raise SubmissionError(f"expressions must be integers 0..{NUM_EXPRESSIONS - 1}")
    if aus.shape[1:] != (NUM_AUS,) or not np.isin(aus, (0, 1)).all():
        raise SubmissionError(f"AUs must be a [N, {NUM_AUS}] array of 0/1 decisions, got shape {aus.shape}")
    lines = [SUBMISSION_HEADER]
    for image, (valence, arousal), label, decisions in zip(images, va, expression, aus):
        au_text = ",".join(str(int(a)) for a in decisions)
        lines.append(f"{image},{_format_value(valence)},{_format_value(arousal)},{int(label)},{au_text}")
    return "\n".join(lines) + "\n"


def listed_rows(test_list: TestList, video, frame, present: np.ndarray | None = None) -> np.ndarray:
    """Dataset row of each listed frame, in listed order. A listed frame the dataset lacks, or whose every
    feature vector is missing (``present`` False), is an error that lists them."""
    where = {(str(v), int(f)): row for row, (v, f) in enumerate(zip(np.asarray(video).tolist(), np.asarray(frame).tolist()))}
    rows = np.array([where.get((str(v), int(f)), -1) for v, f in zip(test_list.video.tolist(), test_list.frame.tolist())],
                    dtype=np.int64)
    lacking = rows < 0
    if present is not None:
        lacking |= (rows >= 0) & ~np.asarray(present, dtype=bool)[np.maximum(rows, 0)]
    if lacking.any():
        positions = np.flatnonzero(lacking)
        shown = ", ".join(f"{test_list.images[i]} (line {test_list.line[i]})" for i in positions[:SHOWN_PROBLEMS])
        more = f" and {len(positions) - SHOWN_PROBLEMS} more" if len(positions) > SHOWN_PROBLEMS else ""
        raise SubmissionError(
            f"{test_list.path}: {len(positions)} listed frame(s) have no features in the dataset: {shown}{more}. "
            "Extract features for every listed frame (abaw-hf extract / build) before writing a submission."
        )
    return rows


def submission_text(
    test_list: TestList,
    predictions,
    video,
    frame,
    *,
    au_thresholds: Sequence[float] | None = None,
    smoothing_sigma: float = 0.0,
    max_gap: int | None = None,
    present: np.ndarray | None = None,
) -> str:
    """Per-row predictions of a dataset (a `abaw_hf.evaluation.FramePredictions`, ``row_index`` into ``video``/``frame``) ->
    the submission text: smoothed within videos over all predicted rows, decided, taken in listed order."""
    row_video = np.asarray(video)[predictions.row_index]
    row_frame = np.asarray(frame)[predictions.row_index]
    smoothed = smooth_frame_predictions(predictions, row_video, row_frame, sigma=smoothing_sigma, max_gap=max_gap)
    row_present = None if present is None else np.asarray(present, dtype=bool)[predictions.row_index]
    rows = listed_rows(test_list, row_video, row_frame, row_present)
    expression, aus = decide(smoothed.of("expression")[rows], smoothed.of("au")[rows], au_thresholds)
    return format_submission(test_list.images, smoothed.of("va")[rows], expression, aus)


# ----- checking ------------------------------------------------------------------------------------------------

_INTEGER = re.compile(r"^-?\d+$")


def _row_problems(cells: list[str], expected_image: str | None) -> list[str]:
    if len(cells) != 4 + NUM_AUS:
        return [f"expected {4 + NUM_AUS} comma-separated values, found {len(cells)}"]
    problems = []
    if expected_image is not None and cells[0] != expected_image:
        problems.append(f"image {cells[0]!r}, but the test list has {expected_image!r} here (missing row or wrong order)")
    for name, text in (("valence", cells[1]), ("arousal", cells[2])):
        try:
            value = float(text)
        except ValueError:
            problems.append(f"{name} {text!r} is not a number")
            continue
        if not math.isfinite(value) or not -1.0 <= value <= 1.0:
            problems.append(f"{name} {text} is outside [-1, 1]")
    if not _INTEGER.match(cells[3]) or not 0 <= int(cells[3]) < NUM_EXPRESSIONS:
        problems.append(f"expression {cells[3]!r} is not an integer 0..{NUM_EXPRESSIONS - 1}")
    bad_aus = [f"AU{i + 1}={text!r}" for i, text in enumerate(cells[4:]) if text not in ("0", "1")]
    if bad_aus:
        problems.append(f"AU values must be 0 or 1: {', '.join(bad_aus)} (by column position)")
    return problems


def check_submission(path: str | Path, test_list: str | Path | TestList) -> int:
    """Validate a submission file against the test list: header, row count, order, value ranges.

    Returns the number of rows; raises :class:`SubmissionError` naming the file, line and problem.
    """
    listed = test_list if isinstance(test_list, TestList) else read_test_list(test_list)
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file")
    lines = read_text_file(path, "submission file").splitlines()  # not UTF-8: a message naming the file and line
    problems = []
    if not lines or lines[0].strip() != SUBMISSION_HEADER:
        problems.append(f"{path}:1: header must be {SUBMISSION_HEADER!r}, found {lines[0] if lines else ''!r}")
    rows = lines[1:]
    if len(rows) != len(listed):
        problems.append(f"{path}: {len(rows)} rows, but {listed.path} lists {len(listed)} frames")
    for index, text in enumerate(rows):
        expected = listed.images[index] if index < len(listed) else None
        for problem in _row_problems(text.split(","), expected):
            problems.append(f"{path}:{index + 2}: {problem}")
        if expected is None:
            problems.append(f"{path}:{index + 2}: extra row beyond the {len(listed)} listed frames")
            break
        if len(problems) > SHOWN_PROBLEMS:
            break
    if problems:
        shown = problems[:SHOWN_PROBLEMS]
        more = "\n  ... (stopped after the first problems)" if len(problems) > SHOWN_PROBLEMS else ""
        raise SubmissionError(f"{path} is not a valid ABAW MTL submission:\n  " + "\n  ".join(shown) + more)
    return len(rows)
