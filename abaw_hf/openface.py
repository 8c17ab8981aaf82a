"""OpenFace 2.0 ``FeatureExtraction`` CSVs: the one reader (light: csv and numpy).

`abaw_hf.extractors.fau` (the ``fau`` extractor's ``openface`` variant) and `abaw_hf.data.converters`
(``abaw-hf build --openface-dir``) both read them here. OpenFace's 17 intensity outputs are
``OPENFACE_AU_NAMES``, not to be confused with the 12 ABAW action units the model predicts
(`abaw_hf.modeling.labels_abaw_fusion.AU_NAMES`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError, read_text_file

# OpenFace 2.0's intensity outputs, in the order of its CSV columns.
OPENFACE_AU_NAMES = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip
OPENFACE_INTENSITY_COLUMNS = tuple(f"{name}_r" for name in OPENFACE_AU_NAMES)
AU_INTENSITY_MAX = 5.0


class OpenFaceError(UserError, RuntimeError, ValueError):
    """OpenFace could not be run or its output could not be read."""


@dataclass
class AUFrames:
    """AU intensities of a sequence of frames; ``present[i]`` is False where no face was tracked."""

    features: np.ndarray  # float32 [N, 17], 0..5, zeros where missing
    present: np.ndarray  # bool [N]
    frames: np.ndarray  # int64 [N], OpenFace's frame numbers (1-based) or positions
    timestamps: np.ndarray | None = None  # float64 [N] seconds
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)


def read_openface_csv(path: str | os.PathLike) -> AUFrames:
    """Read the 17 ``AUxx_r`` columns of an OpenFace ``FeatureExtraction`` CSV.

    Header names may carry OpenFace's leading space (``" AU01_r"``). Rows with ``success == 0``
    become missing vectors (zeros). A malformed file raises ``OpenFaceError`` naming the file and line.
    """
    path = Path(path)
    try:  # a missing, folder or non-UTF-8 path is a message naming it
        text = read_text_file(path, "OpenFace CSV")
    except UserError as error:
        raise OpenFaceError(str(error)) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise OpenFaceError(f"{path}: empty file, expected an OpenFace CSV header")
    columns = {name.strip(): position for position, name in enumerate(header)}
    required = ("frame", "success", *OPENFACE_INTENSITY_COLUMNS)
    absent = [name for name in required if name not in columns]
    if absent:
        raise OpenFaceError(f"{path}:1: not an OpenFace AU CSV, missing columns {absent} (run FeatureExtraction with -aus)")
    au_positions = [columns[name] for name in OPENFACE_INTENSITY_COLUMNS]
    timestamp_position = columns.get("timestamp")
    frames, timestamps, present, features = [], [], [], []
    for line_number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise OpenFaceError(f"{path}, line {line_number}: {len(row)} fields, the header has {len(header)}")
        try:
            frame = int(float(row[columns["frame"]]))
            success = float(row[columns["success"]]) != 0
            values = [float(row[position]) for position in au_positions]
            timestamp = float(row[timestamp_position]) if timestamp_position is not None else np.nan
        except ValueError as error:
            raise OpenFaceError(f"{path}, line {line_number}: not a number ({error})") from None
        values = np.asarray(values, dtype=np.float32)
        if not np.isfinite(values).all():
            raise OpenFaceError(f"{path}, line {line_number}: NaN or Inf AU intensity")
        if success and ((values < 0).any() or (values > AU_INTENSITY_MAX).any()):
            raise OpenFaceError(f"{path}, line {line_number}: AU intensities outside 0..5: {values.tolist()}")
        frames.append(frame)
        timestamps.append(timestamp)
        present.append(success)
        features.append(values if success else np.zeros(len(OPENFACE_AU_NAMES), np.float32))
    frames_array = np.asarray(frames, dtype=np.int64)
    unique_frames, counts = np.unique(frames_array, return_counts=True)
    if (counts > 1).any():
        raise OpenFaceError(
            f"{path}: frames {unique_frames[counts > 1][:10].tolist()} appear more than once; expected "
            "FeatureExtraction's one row per frame (multi-face CSVs from FaceLandmarkVidMulti are not supported)"
        )
    return AUFrames(
        features=np.stack(features) if features else np.zeros((0, len(OPENFACE_AU_NAMES)), np.float32),
        present=np.asarray(present, dtype=bool),
        frames=frames_array,
        timestamps=None if timestamp_position is None else np.asarray(timestamps, dtype=np.float64),
        provenance={"backend": "openface_csv", "file": path.name},
    )
