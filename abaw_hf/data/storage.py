"""Where feature datasets live on disk, and the one reader that every command uses.

A feature set is a folder `<root>` with one `save_to_disk` dataset per split (`<root>/<split>/`) and a
`dataset_dict.json` naming the splits, so `datasets.load_from_disk(root)` returns a `DatasetDict`.
`abaw-hf extract --output <root> --split <name>` and `abaw-hf build` both write this layout; training,
`evaluate`, `tune` and `submit` read it through `load_feature_data` / `load_feature_split`, which also accept
a single-split folder, a Parquet folder (`datasets.load_dataset`) and the name ``synthetic``.

Splits of one feature set must agree: the same extractor columns with the same dims, and the same extractor
provenance (registry name, variant, layout, preprocessing, checkpoint sha256). Features from different networks
in one model would be silently wrong, so a disagreement is refused naming both splits.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import UserError, require_path

DATASET_DICT_FILE = "dataset_dict.json"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# provenance fields that say what a feature means; the checkpoint's path on one machine does not
_PROVENANCE_KEYS = ("name", "variant", "dim", "layout", "preprocessing", "sha256", "random_init")


class DatasetLayoutError(UserError, ValueError):
    """A folder that is not a feature dataset, a missing split, or splits that disagree."""


def check_split_name(name: str, flag: str = "--split") -> str:
    """A split name is a plain word (it becomes a folder name): letters, digits, '_', '-', '.', not '..'."""
    if not isinstance(name, str) or not _SPLIT_NAME.match(name) or ".." in name:
        raise DatasetLayoutError(f"{flag} {name!r} is not a split name; use letters, digits, '_' or '-' (e.g. train)")
    return name


def check_feature_name(name: str, flag: str = "--features") -> str:
    """A feature column name is a plain word too: the model's config (feature_dims) refuses anything else, so a
    dataset column it could never train on is refused when the dataset is built."""
    if not isinstance(name, str) or not _SPLIT_NAME.match(name) or ".." in name:
        raise DatasetLayoutError(
            f"{flag} {name!r} is not a feature name a model can use; use letters, digits, '_', '-' or '.' (e.g. resnet18)"
        )
    return name


def _is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _read_splits(root: Path) -> list[str]:
    try:
        splits = json.loads((root / DATASET_DICT_FILE).read_text()).get("splits")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        splits = None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise DatasetLayoutError(f"{root / DATASET_DICT_FILE}: not a dataset_dict.json (expected {{\"splits\": [...]}})")
    for split in splits:
        check_split_name(split, f"{root / DATASET_DICT_FILE}: split")
    return splits


def split_signature(dataset) -> dict[str, Any]:
    """What must agree between the splits of one feature set: columns, dims and extractor provenance."""
    from .schema import read_metadata

    metadata = read_metadata(dataset)
    provenance = metadata.get("extractors", {})
    return {
        "feature_dims": dict(metadata["feature_dims"]),
        "extractors": {
            name: {key: (provenance.get(name) or {}).get(key) for key in _PROVENANCE_KEYS}
            for name in metadata["feature_dims"]
            if provenance.get(name)
        },
    }


def signature_difference(first: Mapping[str, Any], second: Mapping[str, Any]) -> str | None:
    """A short description of how two split signatures differ, or None when they agree."""
    if list(first["feature_dims"].items()) != list(second["feature_dims"].items()):
        describe = lambda dims: ", ".join(f"{k}({v})" for k, v in dims.items()) or "none"  # noqa: E731
        return f"feature columns differ: {describe(first['feature_dims'])} vs {describe(second['feature_dims'])}"
    for name in first["feature_dims"]:
        a, b = first["extractors"].get(name), second["extractors"].get(name)
        if a is None or b is None:
            continue  # a split without provenance (e.g. built from feature files) cannot be compared
        for key in _PROVENANCE_KEYS:
            if a.get(key) != b.get(key):
                return f"extractor {name!r} differs in {key}: {a.get(key)!r} vs {b.get(key)!r}"
    return None


def check_splits_agree(splits: Mapping[str, Any], where: str) -> None:
    """Every split must carry the same features from the same extractors as the first one."""
    names = list(splits)
    if len(names) < 2:
        return
    reference = split_signature(splits[names[0]])
    for name in names[1:]:
        difference = signature_difference(reference, split_signature(splits[name]))
        if difference:
            raise DatasetLayoutError(
                f"{where}: splits {names[0]!r} and {name!r} disagree ({difference}); "
                "extract every split with the same --extractor options and checkpoints"
            )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on `<root>/.dataset_dict.lock` while dataset_dict.json is read and rewritten
    (several extractions may finish into one root at once)."""
    from filelock import FileLock  # the lock the ONNX cache takes too (abaw_hf.onnx.runtime)

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".dataset_dict.lock")):
        yield


def register_split(root: str | os.PathLike, split: str) -> list[str]:
    """Add `split` (already saved in `<root>/<split>`) to `<root>/dataset_dict.json`, atomically; returns the
    splits. Refuses a split whose features disagree with the splits already there."""
    import datasets

    root, split = Path(root), check_split_name(split)
    with _locked(root):
        splits = _read_splits(root) if (root / DATASET_DICT_FILE).is_file() else []
        others = [s for s in splits if s != split and _is_saved_dataset(root / s)]
        if others:
            check_splits_agree({s: datasets.load_from_disk(str(root / s)) for s in [others[0], split]}, str(root))
        splits = [s for s in splits if s != split and _is_saved_dataset(root / s)] + [split]
        temporary = root / f".{DATASET_DICT_FILE}.tmp"
        temporary.write_text(json.dumps({"splits": splits}))
        os.replace(temporary, root / DATASET_DICT_FILE)
    return splits


def check_new_split(root: str | os.PathLike, split: str, feature_dims: Mapping[str, int], provenance: Mapping) -> None:
    """Before extracting `split` into `root`: refuse at once when the splits already there hold other features."""
    import datasets

    root, split = Path(root), check_split_name(split)
    if root.exists() and not root.is_dir():
        raise DatasetLayoutError(f"--output {root} is a file; give the feature set's folder")
    existing = [s for s in (_read_splits(root) if (root / DATASET_DICT_FILE).is_file() else []) if s != split]
    existing = [s for s in existing if _is_saved_dataset(root / s)]
    if not existing:
        return
    new = {
        "feature_dims": {str(k): int(v) for k, v in feature_dims.items()},
        "extractors": {
            name: {key: (provenance.get(name) or {}).get(key) for key in _PROVENANCE_KEYS} for name in feature_dims
        },
    }
    other = existing[0]
    difference = signature_difference(split_signature(datasets.load_from_disk(str(root / other))), new)
    if difference:
        raise DatasetLayoutError(
            f"{root}: split {split!r} would disagree with split {other!r} ({difference}); use the same "
            f"--extractor options and checkpoints as for {other!r}, or another --output"
        )


def load_feature_data(data: str | os.PathLike, *, synthetic_size: str = "small", synthetic_seed: int = 0):
    """The feature set named by `data` as a `DatasetDict` (a single-split folder gives a plain `Dataset`).

    `data` is ``synthetic`` (the embedded default), a folder written by `abaw-hf extract --split` or
    `abaw-hf build` (`dataset_dict.json`), a single `save_to_disk` split, a folder of split folders, or a
    Parquet folder with a dataset card. Errors name the folder and say what was expected.
    """
    import datasets

    if str(data) == "synthetic":
        from .synthetic import make_synthetic_dataset, synthetic_preset

        return make_synthetic_dataset(**synthetic_preset(synthetic_size), seed=synthetic_seed)
    path = require_path(data, "--data")  # '' is no dataset (Path('') would be the current folder)
    if not path.exists():
        raise DatasetLayoutError(f"{path}: no such dataset folder (give a folder from `abaw-hf extract`, or 'synthetic')")
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}: is a file; a feature dataset is a folder (from `abaw-hf extract`)")
    if (path / DATASET_DICT_FILE).is_file():
        splits = _read_splits(path)
        missing = [s for s in splits if not _is_saved_dataset(path / s)]
        if missing:
            raise DatasetLayoutError(f"{path}: dataset_dict.json names split(s) {missing} that have no saved dataset")
        loaded = datasets.DatasetDict({s: datasets.load_from_disk(str(path / s)) for s in splits})
    elif _is_saved_dataset(path):
        return datasets.load_from_disk(str(path))
    elif subfolders := sorted(p.name for p in path.iterdir() if p.is_dir() and _is_saved_dataset(p)):
        loaded = datasets.DatasetDict({s: datasets.load_from_disk(str(path / s)) for s in subfolders})
    elif any(path.rglob("*.parquet")):
        try:
            loaded = datasets.load_dataset(str(path))
        except Exception as error:  # datasets raises many kinds for a folder it cannot read
            raise DatasetLayoutError(f"{path}: not a readable Parquet dataset ({type(error).__name__}: {error})") from error
    else:
        raise DatasetLayoutError(
            f"{path}: not a feature dataset (no dataset_dict.json, no saved split, no Parquet files); "
            "make one with `abaw-hf extract ... --output DIR --split NAME` or `abaw-hf build`"
        )
    check_splits_agree(loaded, str(path))
    return loaded


def load_feature_split(data: str | os.PathLike, split: str, **synthetic):
    """One split of `load_feature_data(data)`; a single-split folder is that split whatever its name."""
    import datasets

    loaded = load_feature_data(data, **synthetic)
    if isinstance(loaded, datasets.Dataset):
        return loaded
    if split not in loaded:
        raise DatasetLayoutError(f"{data}: no split {split!r}; it has {list(loaded)} (choose one with --split)")
    return loaded[split]
