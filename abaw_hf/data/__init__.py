"""Feature datasets: ABAW annotation readers, the sharded builder, converters, temporal windows, synthetic data.

`abaw_hf` itself imports torch (the model), so nothing here is lazy.
"""

from __future__ import annotations

from .annotations import (
    AnnotationError,
    Annotations,
    merge_annotations,
    read_mtl_annotations,
    read_mtl_test_list,
    read_single_task_folder,
)
from .builder import FeatureError, build_from_arrays, build_from_extractors, write_sharded_dataset
from .columns import column_array, column_chunks
from .schema import (
    KNOWN_FEATURE_DIMS,
    MISSING_AU,
    MISSING_EXPRESSION,
    MISSING_VA,
    dataset_features,
    feature_dims_of,
    read_metadata,
)
from .synthetic import make_synthetic_dataset, synthetic_oracle_predictions, synthetic_oracle_score
from .windows import (
    FeatureWindows,
    WindowBatch,
    WindowCollator,
    build_window_index,
    rows_from_windows,
    window_dataloader,
)

__all__ = [
    "AnnotationError",
    "Annotations",
    "FeatureError",
    "FeatureWindows",
    "KNOWN_FEATURE_DIMS",
    "MISSING_AU",
    "MISSING_EXPRESSION",
    "MISSING_VA",
    "WindowBatch",
    "WindowCollator",
    "build_from_arrays",
    "build_from_extractors",
    "build_window_index",
    "column_array",
    "column_chunks",
    "dataset_features",
    "feature_dims_of",
    "make_synthetic_dataset",
    "merge_annotations",
    "read_metadata",
    "read_mtl_annotations",
    "read_mtl_test_list",
    "read_single_task_folder",
    "rows_from_windows",
    "synthetic_oracle_predictions",
    "synthetic_oracle_score",
    "window_dataloader",
    "write_sharded_dataset",
]
