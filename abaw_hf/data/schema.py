"""The feature dataset's schema: column names, label markers, and the metadata stored beside the columns."""

from __future__ import annotations

import json
from typing import Any, Mapping

import datasets

# re-exported: the dataset keeps ABAW's names and missing markers as the model defines them
from .._lazy import lazy_exports
from ..modeling.labels_abaw_fusion import AU_NAMES, EXPRESSION_NAMES, NUM_AUS, NUM_EXPRESSIONS  # noqa: F401
from ..modeling.labels_abaw_fusion import MISSING_AU, MISSING_EXPRESSION, MISSING_VA  # noqa: F401
from ..modeling.tasks_abaw_fusion import TASKS

LABEL_COLUMNS = ("video", "frame", "valence", "arousal", "expression", "aus")  # the ABAW tasks' columns on disk


def label_columns() -> tuple[str, ...]:
    """The columns that are not features: ``video``, ``frame`` and every registered task's label columns."""
    return (*LABEL_COLUMNS, *(name for task in TASKS for name in task.label_columns if name not in LABEL_COLUMNS))



# ``KNOWN_FEATURE_DIMS``: each named extractor's output width, read from the extractor registry at each access
# (`abaw_hf.extractors.registry.named_extractor_dims`; POSTER V1 is 512 in its official code).
__getattr__, _, _ = lazy_exports(__name__, {}, computed={
    "KNOWN_FEATURE_DIMS": ("abaw_hf.extractors.registry", "named_extractor_dims"),
})

METADATA_KEY = "abaw_hf"


def dataset_features(feature_dims: Mapping[str, int]) -> datasets.Features:
    """The `datasets.Features` of a feature dataset with the given extractor columns (in that order)."""
    columns: dict[str, Any] = {
        "video": datasets.Value("string"),
        "frame": datasets.Value("int32"),
        "valence": datasets.Value("float32"),
        "arousal": datasets.Value("float32"),
        "expression": datasets.Value("int8"),
        "aus": datasets.List(datasets.Value("int8"), length=NUM_AUS),
    }
    for name, dim in feature_dims.items():
        if name in columns:
            raise ValueError(f"feature column name {name!r} collides with a label column")
        if int(dim) <= 0:
            raise ValueError(f"feature {name!r} needs a positive dim, got {dim}")
        columns[name] = datasets.List(datasets.Value("float16"), length=int(dim))
    return datasets.Features(columns)


def feature_dims_of(features: datasets.Features) -> dict[str, int]:
    """Extractor columns (every column that is not a label column) and their dims, in column order."""
    dims = {}
    for name, feature in features.items():
        if name in label_columns():
            continue
        length = getattr(feature, "length", -1)
        if not isinstance(feature, datasets.List) or length is None or length <= 0:
            raise ValueError(f"column {name!r} is not a fixed-length feature list: {feature}")
        dims[name] = int(length)
    return dims


def make_info(
    feature_dims: Mapping[str, int],
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> datasets.DatasetInfo:
    """A DatasetInfo whose description is JSON: `{"abaw_hf": {"feature_dims", "extractors", ...}}`."""
    metadata = {"feature_dims": dict(feature_dims), "extractors": {k: dict(v) for k, v in (provenance or {}).items()}}
    metadata.update(extra or {})
    return datasets.DatasetInfo(
        description=json.dumps({METADATA_KEY: metadata}),
        features=dataset_features(feature_dims),
    )


def read_metadata(dataset: datasets.Dataset) -> dict[str, Any]:
    """The dataset's abaw_hf metadata; feature dims fall back to the columns when the description lacks them."""
    metadata: dict[str, Any] = {}
    try:
        metadata = dict(json.loads(dataset.info.description or "{}").get(METADATA_KEY, {}))
    except (json.JSONDecodeError, AttributeError):
        metadata = {}
    metadata["feature_dims"] = feature_dims_of(dataset.features)
    metadata.setdefault("extractors", {})
    return metadata
