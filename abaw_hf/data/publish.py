"""Publish a feature dataset the Hub way: a Parquet folder with a dataset card, then `abaw_hf.hub.upload`.

The staged folder is exactly a Hub dataset repo (`data/<split>-XXXXX-of-NNNNN.parquet` + `README.md` whose
YAML names the configs, features and splits), so `datasets.load_dataset(<folder>)` reads it offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from .. import outputs
from ..hub.repo import StagedRepo
from ..hub.upload import upload_folder
from .schema import AU_NAMES, EXPRESSION_NAMES, read_metadata

DEFAULT_SHARD_ROWS = 50_000

_CARD_BODY = """
# {title}

Per-frame features for multi-task facial affect recognition (ABAW MTL: valence/arousal, 8 expressions,
12 action units), built with [abaw_hf](https://github.com/). One row per frame, sorted by (video, frame).

**Weights:** {status}

| column | type | meaning |
| --- | --- | --- |
| `video`, `frame` | string, int32 | the frame `cropped_aligned/<video>/<frame:05d>.jpg` |
| `valence`, `arousal` | float32 | in [-1, 1]; -5 = missing |
| `expression` | int8 | {expressions}; -1 = missing |
| `aus` | 12 × int8 | {aus}; -1 = missing |
{feature_rows}

A null feature value is a missing vector (e.g. OpenFace found no face); NaN never appears.

## Splits

{split_rows}

## Provenance

```json
{provenance}
```

## Use

```python
from datasets import load_dataset
from abaw_hf.data import window_dataloader

splits = load_dataset("{repo_id}")
loader = window_dataloader(splits["train"], window_size=16, batch_size=64)  # the training default
```
"""


def _split_map(splits: datasets.DatasetDict | Mapping[str, datasets.Dataset]) -> dict[str, datasets.Dataset]:
    splits = dict(splits)
    if not splits:
        raise ValueError("no splits to stage")
    features = {name: split.features for name, split in splits.items()}
    if len({json.dumps(f.to_dict(), sort_keys=True) for f in features.values()}) != 1:
        raise ValueError(f"splits have different features: {features}")
    return splits


def stage_parquet_folder(
    splits: datasets.DatasetDict | Mapping[str, datasets.Dataset],
    folder: str | os.PathLike,
    *,
    repo_id: str = "<org>/<dataset>",
    title: str = "ABAW feature dataset",
    max_shard_rows: int = DEFAULT_SHARD_ROWS,
    license: str | None = None,
) -> Path:
    """Write `data/<split>-XXXXX-of-NNNNN.parquet` and a dataset card `README.md` into `folder`: a new or empty
    folder, or one abaw_hf staged before (its marker; `abaw_hf.outputs`), whose old Parquet files are replaced."""
    splits = _split_map(splits)
    folder = outputs.claim(folder, "--parquet-dir")  # a folder abaw_hf did not write is refused, never emptied
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob("*.parquet"):
        stale.unlink()
    first = next(iter(splits.values()))
    metadata = read_metadata(first)
    info = DatasetInfo(features=first.features, splits=datasets.SplitDict())
    configs = []
    for name, split in splits.items():
        num_shards = max(1, -(-len(split) // max_shard_rows))
        for index in range(num_shards):
            shard = split.shard(num_shards=num_shards, index=index, contiguous=True)
            shard.to_parquet(str(data_dir / f"{name}-{index:05d}-of-{num_shards:05d}.parquet"))
        info.splits.add(datasets.SplitInfo(name=name, num_examples=len(split)))
        configs.append({"split": name, "path": f"data/{name}-*"})

    card_data = DatasetCardData(
        license=license,
        task_categories=["video-classification"],
        tags=["affective-computing", "abaw", "facial-expression", "action-units", "valence-arousal"],
        pretty_name=title,
        abaw_hf=metadata,
    )
    MetadataConfigs({"default": {"data_files": configs}}).to_dataset_card_data(card_data)
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    feature_rows = "\n".join(
        f"| `{name}` | {dim} × float16 (nullable) | extractor `{name}` |" for name, dim in metadata["feature_dims"].items()
    )
    split_rows = "\n".join(f"- `{name}`: {len(split):,} frames" for name, split in splits.items())
    body = _CARD_BODY.format(
        title=title,
        expressions=", ".join(f"{i} {n}" for i, n in enumerate(EXPRESSION_NAMES)),
        aus=", ".join(AU_NAMES),
        feature_rows=feature_rows,
        split_rows=split_rows,
        provenance=json.dumps(metadata, indent=2),
        repo_id=repo_id,
        status=features_status(metadata),
    )
    card = DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}")
    card.save(str(folder / "README.md"))
    return folder


def features_status(metadata: Mapping[str, Any]) -> str:
    """What the features are, in the words of every output (`abaw_hf.status.weights_status`): synthetic demo data,
    and the extractors that ran with random weights, from the dataset's metadata."""
    from ..status import weights_status

    extractors = metadata.get("extractors") or {}
    random_features = [name for name, provenance in extractors.items() if (provenance or {}).get("random_init")]
    synthetic = True if metadata.get("synthetic") else (False if extractors else None)
    return weights_status(synthetic, random_features)


def read_card_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The `abaw_hf` block (feature dims, extractor provenance) of a staged folder's dataset card."""
    card = DatasetCard.load(str(Path(folder) / "README.md"))
    return dict(card.data.to_dict().get("abaw_hf") or {})


def push_dataset_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload ABAW feature dataset",
) -> str:
    """Create the dataset repo if needed and upload a staged folder; returns the commit URL."""
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not any((folder / "data").glob("*.parquet")):
        raise FileNotFoundError(f"{folder} is not a staged dataset folder (README.md + data/*.parquet)")
    staged = StagedRepo(folder, repo_id, "dataset", allow_patterns=["README.md", "data/*.parquet"])
    repo_url, commit_url = upload_folder(staged, token=token, private=private, revision=revision,
                                         commit_message=commit_message)
    return commit_url or repo_url
