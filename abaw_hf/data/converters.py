"""Converters for features users already have: the authors' `.npy` `{video: {frame: vector}}` dicts and
OpenFace 2.0 CSVs. Both give a :class:`FeatureTable` that :func:`join_features` aligns with the annotations.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..errors import UserError
from ..safe_pickle import UnsafePickleError, load_npy
from .annotations import Annotations
from ..openface import OPENFACE_INTENSITY_COLUMNS
from ..openface import read_openface_csv as read_openface_frames

OPENFACE_AU_COLUMNS = list(OPENFACE_INTENSITY_COLUMNS)
_SHOWN = 20


class FeatureFileError(UserError, ValueError):
    """A feature file (authors' .npy, OpenFace CSV) that cannot be read as features."""



@dataclass
class FeatureTable:
    """Feature vectors keyed by (video, frame): vectors [M, D] float32, present [M] (False: missing vector)."""

    name: str
    video: np.ndarray
    frame: np.ndarray
    vectors: np.ndarray
    present: np.ndarray
    source: str = ""

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@dataclass
class JoinReport:
    """Frames present in one source but not the other, per feature: (video, frame) lists and counts."""

    missing_in_features: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    unannotated_in_features: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for name, frames in self.missing_in_features.items():
            if frames:
                shown = ", ".join(f"{v}/{f:05d}" for v, f in frames[:_SHOWN])
                lines.append(f"{name}: {len(frames)} annotated frames have no vector (e.g. {shown})")
        for name, count in self.unannotated_in_features.items():
            if count:
                lines.append(f"{name}: {count} frames have a vector but no annotation row (ignored)")
        return "\n".join(lines) or "every annotated frame has a vector in every feature source"


def _frame_number(key, path: Path, video: str) -> int:
    if isinstance(key, (int, np.integer)):
        number = int(key)
    else:
        text = str(key).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if not text.isdigit():
            raise FeatureFileError(f"{path}: video {video!r} has a frame key {key!r} that is not a frame number")
        number = int(text)
    if not 0 <= number < 2**63:
        raise FeatureFileError(f"{path}: video {video!r} has a frame key {key!r} outside 0..2^63-1")
    return number


def read_feature_dict_npy(path: str | os.PathLike, name: str | None = None, *, allow_pickle: bool = False) -> FeatureTable:
    """Read one of the authors' `.npy` files holding a pickled `{video: {frame: vector}}` dict.

    The pickle is read by `abaw_hf.safe_pickle` (numpy arrays and plain containers only), so a hostile file runs
    nothing; `allow_pickle=True` unpickles anything, for trusted files that need other classes. Frame keys may
    be ints, `"00012"` or `"00012.jpg"`. NaN/Inf raise, naming video and frame; all vectors must share one dim.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such feature file" if not path.exists() else f"{path}: is a folder, not a .npy file")
    try:
        loaded = load_npy(path, allow_pickle=allow_pickle)
        mapping = loaded.item() if isinstance(loaded, np.ndarray) and loaded.dtype == object else loaded
    except UnsafePickleError:
        raise
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise FeatureFileError(f"{path}: not a readable .npy feature dict ({error})") from None
    if not isinstance(mapping, Mapping):
        raise FeatureFileError(f"{path}: expected a {{video: {{frame: vector}}}} dict, found {type(mapping).__name__}")
    videos, frames, vectors = [], [], []
    dim = None
    for video, per_frame in mapping.items():
        if not isinstance(per_frame, Mapping):
            raise FeatureFileError(f"{path}: video {video!r} maps to {type(per_frame).__name__}, not a {{frame: vector}} dict")
        for key, vector in per_frame.items():
            frame = _frame_number(key, path, str(video))
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)
            if len(vector) == 0:
                raise FeatureFileError(f"{path}: video {video!r} frame {frame} has an empty (0-length) vector")
            if dim is None:
                dim = len(vector)
            if len(vector) != dim:
                raise FeatureFileError(f"{path}: video {video!r} frame {frame} has dim {len(vector)}, others have {dim}")
            if not np.isfinite(vector).all():
                raise FeatureFileError(f"{path}: NaN or Inf in video {video!r} frame {frame}")
            videos.append(str(video))
            frames.append(frame)
            vectors.append(vector)
    if dim is None:
        raise FeatureFileError(f"{path}: the feature dict is empty")
    return FeatureTable(
        name=name or path.stem,
        video=np.asarray(videos, dtype=str),
        frame=np.asarray(frames, dtype=np.int64),
        vectors=np.stack(vectors),
        present=np.ones(len(frames), dtype=bool),
        source=str(path),
    )


def read_openface_csv(path: str | os.PathLike, video: str | None = None, name: str = "fau") -> FeatureTable:
    """An OpenFace 2.0 `FeatureExtraction` CSV (the one reader: `abaw_hf.openface`) as a feature table: the 17
    `AUxx_r` intensities per frame, rows with `success == 0` missing. The video name defaults to the file stem."""
    path = Path(path)
    frames = read_openface_frames(path)
    return FeatureTable(
        name=name,
        video=np.full(len(frames), video or path.stem),
        frame=frames.frames,
        vectors=frames.features,
        present=frames.present,
        source=str(path),
    )


def read_openface_folder(folder: str | os.PathLike, name: str = "fau") -> FeatureTable:
    """Every `<video>.csv` in a folder (OpenFace's output directory), concatenated."""
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no OpenFace <video>.csv files in {folder}")
    return concatenate_tables([read_openface_csv(f, name=name) for f in files], source=str(folder))


def concatenate_tables(tables: Iterable[FeatureTable], source: str = "") -> FeatureTable:
    tables = list(tables)
    return FeatureTable(
        name=tables[0].name,
        video=np.concatenate([t.video for t in tables]),
        frame=np.concatenate([t.frame for t in tables]),
        vectors=np.concatenate([t.vectors for t in tables]),
        present=np.concatenate([t.present for t in tables]),
        source=source or tables[0].source,
    )


_KEY = np.dtype([("video", np.int64), ("frame", np.int64)])


def _keys(video: np.ndarray, frame: np.ndarray, codes: dict[str, int]) -> np.ndarray:
    """(video, frame) as a pair (a structured array that sorts by video, then frame): never packed into one
    integer, where a large frame number would spill into the next video's code."""
    keys = np.empty(len(frame), dtype=_KEY)
    keys["video"] = [codes.setdefault(v, len(codes)) for v in np.asarray(video).tolist()]
    keys["frame"] = np.asarray(frame, dtype=np.int64)
    return keys


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of `keys`, whether it is one of `sorted_keys` (sorted pairs)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), bool)
    position = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    return sorted_keys[position] == keys


def join_features(
    rows: Annotations, tables: Iterable[FeatureTable], *, allow_missing: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], JoinReport]:
    """Align feature tables with annotation rows on (video, frame).

    Returns (vectors {name: [N, D]}, present {name: [N]}, report). Annotated frames without a vector raise,
    listed together for every source, unless `allow_missing` (they become missing vectors). Vectors of frames
    that are not annotated are counted in the report and ignored. Duplicate (video, frame) in a table raises.
    """
    codes: dict[str, int] = {}
    row_keys = _keys(rows.video, rows.frame, codes)
    vectors, present, report = {}, {}, JoinReport()
    for table in tables:
        if table.name in vectors:
            raise FeatureFileError(f"two feature sources are named {table.name!r}")
        keys = _keys(table.video, table.frame, codes)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        duplicate = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if len(duplicate):
            first = order[duplicate[0]]
            raise FeatureFileError(
                f"{table.source}: {len(duplicate)} duplicate (video, frame) entries, e.g. "
                f"{table.video[first]}/{int(table.frame[first]):05d}"
            )
        position = np.clip(np.searchsorted(sorted_keys, row_keys), 0, max(0, len(keys) - 1))
        found = (sorted_keys[position] == row_keys) if len(keys) else np.zeros(len(row_keys), bool)
        source_rows = order[position]
        vectors[table.name] = np.where(found[:, None], table.vectors[source_rows], 0).astype(np.float32)
        present[table.name] = found & table.present[source_rows]
        report.missing_in_features[table.name] = [
            (str(v), int(f)) for v, f in zip(rows.video[~found].tolist(), rows.frame[~found].tolist())
        ]
        report.unannotated_in_features[table.name] = int(len(keys) - _contains(np.sort(row_keys), keys).sum())
    if not allow_missing and any(report.missing_in_features.values()):
        raise FeatureFileError(
            "annotated frames without feature entries (pass allow_missing=True / --allow-missing-features "
            "to store them as missing vectors):\n" + report.summary()
        )
    return vectors, present, report
