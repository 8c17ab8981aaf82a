"""Build the feature dataset: annotation rows + one fixed-length float16 column per extractor, shard by shard.

The output folder has the `save_to_disk` layout (`data-XXXXX-of-NNNNN.arrow`, `state.json`,
`dataset_info.json`), written directly so that peak memory is one shard, not the table. Each shard is
written to a `.tmp` file and renamed when complete: a rerun with the same inputs skips finished shards, and a
half-written shard is never taken as finished. `build_manifest.json` records what the shards were built from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping

import datasets
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from .. import outputs
from ..errors import UserError
from .annotations import Annotations
from .schema import NUM_AUS, make_info

MANIFEST_NAME = "build_manifest.json"
DEFAULT_SHARD_SIZE = 50_000
_FLOAT16_MAX = float(np.finfo(np.float16).max)

# A shard's features: name -> (vectors [n, D] (any float dtype), present [n] bool)
ShardFeatures = Mapping[str, tuple[np.ndarray, np.ndarray]]


class FeatureError(UserError, ValueError):
    """Bad feature values (NaN, Inf, out of float16 range, wrong shape); the message names video and frame."""


def _fixed_size_list(values: np.ndarray, present: np.ndarray | None = None) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values)
    mask = None if present is None or present.all() else pa.array(~present)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1], mask=mask)


def _checked_float16(name: str, vectors: np.ndarray, present: np.ndarray, video: np.ndarray, frame: np.ndarray):
    """float16 vectors with zeros in missing rows; NaN/Inf or values beyond float16 raise FeatureError."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) != len(present) or vectors.shape[1] == 0:
        raise FeatureError(f"feature {name!r}: expected [{len(present)}, D] vectors with D >= 1, got shape {vectors.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, naming the row
        half = vectors.astype(np.float16, copy=False)  # no copy when the caller already has float16
    missing = ~present
    if missing.any() and half[missing].any():
        half = half.copy()
        half[missing] = 0
    # a row sum in float32 is finite exactly when every float16 value is (no overflow possible): N floats, not N*D
    finite = np.isfinite(half.sum(axis=1, dtype=np.float32))
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        source_finite = bool(np.isfinite(np.asarray(vectors[row], dtype=np.float64)).all())
        reason = f"a value beyond float16's range (±{_FLOAT16_MAX:g})" if source_finite else "NaN or Inf"
        raise FeatureError(
            f"feature {name!r} has {reason} at video {str(video[row])!r} frame {int(frame[row])} "
            f"({int((~finite).sum())} such rows in this shard); NaN is never a way to say 'missing': use a null"
        )
    return half


def rows_to_table(
    rows: Annotations, features: ShardFeatures, feature_dims: Mapping[str, int], schema: pa.Schema | None = None
) -> pa.Table:
    """One Arrow table in the dataset schema: label columns from `rows`, then each feature (vectors, present)."""
    schema = schema if schema is not None else make_info(feature_dims).features.arrow_schema
    columns = [
        pa.array(rows.video.tolist(), type=pa.string()),
        pa.array(rows.frame, type=pa.int32()),
        pa.array(rows.valence, type=pa.float32()),
        pa.array(rows.arousal, type=pa.float32()),
        pa.array(rows.expression, type=pa.int8()),
        _fixed_size_list(rows.aus.astype(np.int8).reshape(-1, NUM_AUS)),
    ]
    for name, dim in feature_dims.items():
        if name not in features:
            raise FeatureError(f"no vectors given for feature column {name!r}")
        vectors, present = features[name]
        present = np.asarray(present, dtype=bool)
        half = _checked_float16(name, vectors, present, rows.video, rows.frame)
        if half.shape[1] != dim:
            raise FeatureError(f"feature {name!r}: expected dim {dim}, got {half.shape[1]}")
        columns.append(_fixed_size_list(half, present))
    return pa.Table.from_arrays(columns, schema=schema)


def _fingerprint(rows: Annotations, feature_dims: Mapping[str, int], shard_size: int, source: str) -> str:
    digest = hashlib.sha256()
    for array in (rows.frame, rows.valence, rows.arousal, rows.expression, rows.aus):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update("\n".join(rows.video.tolist()).encode())
    digest.update(json.dumps([dict(feature_dims), shard_size, source]).encode())
    return digest.hexdigest()[:32]


def _read_manifest(path: Path) -> dict | None:
    """The build manifest of an earlier build in this folder; None when there is none or it is unreadable."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _shard_name(index: int, num_shards: int) -> str:
    return f"data-{index:05d}-of-{num_shards:05d}.arrow"


def _count_rows(path: Path) -> int:
    """Rows in a finished shard file; -1 when it cannot be read (then it is written again)."""
    try:
        with pa.memory_map(str(path)) as source:
            return sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    except (pa.ArrowInvalid, OSError):
        return -1


def write_sharded_dataset(
    rows: Annotations,
    feature_dims: Mapping[str, int],
    compute_shard: Callable[[Annotations, np.ndarray], ShardFeatures],
    output_dir: str | os.PathLike,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
    source: str = "",
    split: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    flag: str = "--output",
) -> datasets.Dataset:
    """Write `rows` (sorted here by (video, frame)) with features from `compute_shard(shard_rows, row_index)`.

    `row_index` holds the positions of the shard's rows in `rows` as given (before sorting), so array-backed
    callers can gather their vectors. `source` names the inputs (e.g. file paths) and is part of the resume
    fingerprint. Returns the dataset loaded back with `datasets.load_from_disk`.
    """
    order = rows.sort_order()
    ordered = rows.take(order)
    output_dir = Path(output_dir)
    feature_dims = {str(k): int(v) for k, v in feature_dims.items()}
    num_shards = max(1, -(-len(ordered) // shard_size))
    fingerprint = _fingerprint(ordered, feature_dims, shard_size, source)
    manifest_path = output_dir / MANIFEST_NAME
    outputs.check_claimable(output_dir, flag)  # a folder abaw_hf did not write is never written into or replaced
    if outputs.entries(output_dir):
        previous = _read_manifest(manifest_path)
        if overwrite:
            outputs.clear(output_dir)
        elif previous is None or previous.get("fingerprint") != fingerprint:
            raise outputs.OutputFolderError(
                f"{flag} {output_dir} is not empty and was not built from these inputs; pass --overwrite "
                "(overwrite=True) to replace it, or choose another output folder"
            )
    outputs.claim(output_dir, flag)
    manifest = {"fingerprint": fingerprint, "num_shards": num_shards, "num_rows": len(ordered), "complete": False}
    manifest_path.write_text(json.dumps(manifest, indent=2))

    info = make_info(feature_dims, provenance)
    schema = info.features.arrow_schema
    bar = tqdm(total=len(ordered), unit="rows", unit_scale=True, desc="build", disable=not progress)
    for index in range(num_shards):
        start, stop = index * shard_size, min(len(ordered), (index + 1) * shard_size)
        path = output_dir / _shard_name(index, num_shards)
        if path.is_file() and _count_rows(path) == stop - start:
            bar.update(stop - start)
            continue
        shard_rows = ordered.take(np.arange(start, stop))
        table = rows_to_table(shard_rows, compute_shard(shard_rows, order[start:stop]), feature_dims, schema)
        partial = path.with_name(path.name + ".tmp")
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table, max_chunksize=shard_size)
        os.replace(partial, path)
        bar.update(stop - start)
    bar.close()

    state = {
        "_data_files": [{"filename": _shard_name(i, num_shards)} for i in range(num_shards)],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": split,
    }
    (output_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    info_dict = asdict(info)
    (output_dir / "dataset_info.json").write_text(json.dumps({k: info_dict[k] for k in sorted(info_dict)}, indent=2))
    manifest["complete"] = True
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return datasets.load_from_disk(str(output_dir))


def build_from_arrays(
    rows: Annotations,
    vectors: Mapping[str, np.ndarray],
    output_dir: str | os.PathLike,
    *,
    present: Mapping[str, np.ndarray] | None = None,
    **kwargs: Any,
) -> datasets.Dataset:
    """The fast path: `vectors[name]` is a float array [N, D] aligned with `rows`; `present[name]` a bool [N]
    (False = missing vector; default all present). Keyword arguments go to `write_sharded_dataset`."""
    present = dict(present or {})
    for name, array in vectors.items():
        if len(array) != len(rows):
            raise FeatureError(f"feature {name!r} has {len(array)} vectors for {len(rows)} annotation rows")
        present.setdefault(name, np.ones(len(rows), dtype=bool))

    def compute_shard(_: Annotations, index: np.ndarray) -> ShardFeatures:
        if len(index) and index[-1] - index[0] + 1 == len(index) and np.all(np.diff(index) == 1):
            index = slice(int(index[0]), int(index[-1]) + 1)  # rows already sorted: views, no copy
        return {name: (array[index], np.asarray(present[name])[index]) for name, array in vectors.items()}

    dims = {name: int(np.shape(array)[1]) for name, array in vectors.items()}
    return write_sharded_dataset(rows, dims, compute_shard, output_dir, **kwargs)


def image_paths(rows: Annotations, image_root: str | os.PathLike, pattern: str = "{video}/{frame:05d}.jpg") -> list[Path]:
    """The image file of every row; raises listing every missing image at once (before any work starts)."""
    root = Path(image_root)
    paths = [root / pattern.format(video=v, frame=int(f)) for v, f in zip(rows.video.tolist(), rows.frame.tolist())]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = "\n  ".join(missing[:20])
        raise FileNotFoundError(f"{len(missing)} annotated frames have no image under {root}:\n  {shown}")
    return paths
