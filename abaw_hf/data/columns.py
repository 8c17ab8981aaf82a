"""Zero-copy numpy views of a dataset's fixed-length list columns (features and AUs), chunk by chunk.

`with_format("numpy")` turns a column with nulls into an object array; these helpers read the Arrow buffers
directly instead: the values of every row (zeros where a vector is missing) and a presence mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa


@dataclass
class ColumnChunk:
    """Rows `start .. start + len(values)` of a column: values [n, D] (a view when possible) and present [n]."""

    start: int
    values: np.ndarray
    present: np.ndarray


def require_contiguous(dataset: datasets.Dataset) -> pa.Table:
    """The dataset's Arrow table; raises when an indices mapping makes rows non-contiguous."""
    if dataset._indices is not None:
        raise ValueError(
            "this dataset has an indices mapping (after select/shuffle/filter); call dataset.flatten_indices() "
            "first so that its rows are contiguous on disk"
        )
    return dataset.data.table


def _chunk_values(chunk: pa.FixedSizeListArray) -> tuple[np.ndarray, np.ndarray]:
    width = chunk.type.list_size
    child = chunk.values.slice(chunk.offset * width, len(chunk) * width)
    if child.null_count:
        child = child.fill_null(0)
    values = child.to_numpy(zero_copy_only=False).reshape(len(chunk), width)
    if chunk.null_count:
        present = np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    else:
        present = np.ones(len(chunk), dtype=bool)
    return values, present


def column_chunks(dataset: datasets.Dataset, name: str) -> list[ColumnChunk]:
    """The Arrow chunks of a fixed-length list column as numpy views (no copy of float16 values)."""
    column = require_contiguous(dataset).column(name)
    if not pa.types.is_fixed_size_list(column.type):
        raise ValueError(f"column {name!r} is {column.type}, not a fixed-length list")
    chunks, start = [], 0
    for chunk in column.chunks:
        values, present = _chunk_values(chunk)
        chunks.append(ColumnChunk(start, values, present))
        start += len(chunk)
    return chunks


def column_array(dataset: datasets.Dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole column: values [N, D] (zeros where missing; a view when there is one chunk) and present [N]."""
    chunks = column_chunks(dataset, name)
    if len(chunks) == 1:
        values, present = chunks[0].values, chunks[0].present
    elif chunks:
        values = np.concatenate([c.values for c in chunks])
        present = np.concatenate([c.present for c in chunks])
    else:
        width = dataset.features[name].length
        return np.zeros((0, width), np.float16), np.zeros(0, bool)
    if not present.all():
        values = np.where(present[:, None], values, 0).astype(values.dtype)
    return values, present


def label_array(dataset: datasets.Dataset, names) -> np.ndarray:
    """One task's label columns (`Task.label_columns`) of every row, as stored: ``[N]`` for one scalar column,
    ``[N, k]`` for k scalar columns side by side or for one fixed-length list column (e.g. ``aus``). Label
    columns have no nulls (missing labels are markers), so the numpy format reads them; selected rows too."""
    column = dataset.features[names[0]] if len(names) == 1 else None
    if dataset._indices is None and isinstance(column, datasets.List) and column.length and column.length > 0:
        # a fixed-length list of contiguous rows: its Arrow values, about 10x faster than the numpy format
        values = dataset.data.column(names[0]).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return np.asarray(values, np.int64 if np.issubdtype(values.dtype, np.integer) else values.dtype).reshape(
            len(dataset), column.length)
    table = dataset.with_format("numpy", columns=list(names))[:]
    columns = [np.asarray(table[name]) for name in names]
    return columns[0] if len(columns) == 1 else np.stack(columns, axis=1)
