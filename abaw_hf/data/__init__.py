"""Feature datasets: ABAW annotation readers, the sharded builder, converters, temporal windows, synthetic data.

Lazy: a name loads its submodule on first use, so `abaw-hf build --help` imports no datasets or torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".annotations": ["AnnotationError", "Annotations", "merge_annotations", "read_mtl_annotations", "read_mtl_test_list", "read_single_task_folder"],
    ".builder": ["FeatureError", "build_from_arrays", "write_sharded_dataset"],
    ".columns": ["column_array", "column_chunks"],
    ".schema": ["KNOWN_FEATURE_DIMS", "MISSING_AU", "MISSING_EXPRESSION", "MISSING_VA", "dataset_features", "feature_dims_of", "read_metadata"],
    ".synthetic": ["make_synthetic_dataset", "synthetic_oracle_predictions", "synthetic_oracle_score"],
    ".windows": ["FeatureWindows", "WindowBatch", "WindowCollator", "build_window_index", "rows_from_windows", "window_dataloader"],
})
