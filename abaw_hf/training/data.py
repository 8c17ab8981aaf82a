"""The data a run trains on: the DatasetDict and its checks, video folds, AU loss weights from the labels, and
the window order."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .config import TrainConfig

def au_loss_weights_from_labels(aus: np.ndarray) -> list[float]:
    """w_i ∝ 1 / (positive rate of AU i among its labelled frames), normalised to mean 1 (README: Decisions, Losses)."""
    aus = np.asarray(aus)
    labelled = aus != -1
    positives = (aus == 1).sum(0).astype(np.float64)
    counts = labelled.sum(0).astype(np.float64)
    rate = np.where(counts > 0, positives / np.maximum(counts, 1), 0.0)
    # an AU that never occurs gets the weight of the rarest observed rate, not infinity
    floor = rate[rate > 0].min() if (rate > 0).any() else 1.0
    inverse = 1.0 / np.maximum(rate, floor)
    return (inverse / inverse.mean()).round(6).tolist()


def check_eval_split(split, name: str) -> None:
    """An empty or label-less validation split is an error before training starts (the same rule as evaluate)."""
    from ..data.storage import DatasetLayoutError
    from ..evaluation import dataset_labels, require_labels

    if split is None or len(split) == 0:
        raise DatasetLayoutError(f"evaluation split {name!r} is empty: training needs labelled validation frames")
    require_labels(dataset_labels(split), f"evaluation split {name!r}", "training")


def check_feature_columns(split, features: list[str], split_name: str) -> dict[str, int]:
    """The dataset must carry every requested extractor column; returns name -> dim."""
    from datasets import List, Sequence

    from ..data.storage import DatasetLayoutError

    missing = [name for name in features if name not in split.column_names]
    if missing:
        from ..data.schema import label_columns

        available = [c for c in split.column_names if c not in label_columns()]
        raise ConfigError(
            f"--features: split {split_name!r} lacks feature column(s) {missing}; it has {available}. "
            "Pick --features from those, or extract the missing ones."
        )
    dims = {}
    for name in features:
        feature = split.features[name]
        length = getattr(feature, "length", -1)
        if not isinstance(feature, (List, Sequence)) or length is None or length <= 0:
            raise DatasetLayoutError(f"column {name!r} of split {split_name!r} is not a fixed-length float list: {feature}")
        dims[name] = int(length)
    return dims


def load_training_data(config: TrainConfig):
    """The DatasetDict named by ``config.dataset`` ('synthetic', a feature-set folder or a Parquet folder),
    with the training split reduced to this run's fold, and the extractor provenance of its features."""
    import datasets

    from ..data.schema import read_metadata
    from ..data.storage import DatasetLayoutError, load_feature_data

    try:
        data = load_feature_data(config.dataset, synthetic_size=config.synthetic_size, synthetic_seed=config.synthetic_seed)
    except DatasetLayoutError as error:
        raise DatasetLayoutError(f"--dataset {error}") from error
    if isinstance(data, datasets.Dataset):
        raise DatasetLayoutError(
            f"dataset {config.dataset!r} is a single split; training needs a feature set with "
            f"{config.train_split!r} and {config.eval_split!r} splits (abaw-hf extract --output DIR --split NAME)"
        )
    for split in (config.train_split, config.eval_split):
        if split not in data:
            raise DatasetLayoutError(f"dataset {config.dataset!r} has no split {split!r}; it has {list(data)}")
    if config.fold is not None:
        data[config.train_split] = select_fold(data[config.train_split], config.folds, config.fold)
    provenance = read_metadata(data[config.train_split]).get("extractors", {})
    provenance = {name: provenance[name] for name in config.features if name in provenance}
    if config.dataset == "synthetic":
        # no network made these features: say so, and name the registry extractor with the column's meaning
        for name in config.features:
            provenance.setdefault(name, {"name": name, "variant": None, "checkpoint": None, "sha256": None,
                                         "source": "abaw_hf.data.synthetic (generated features, no extractor ran)"})
    return data, provenance


def fold_of_videos(videos: list[str], folds: int) -> dict[str, int]:
    """Video -> fold, balanced and stable (sorted order, round robin), so folds are video-disjoint."""
    return {video: index % folds for index, video in enumerate(sorted(set(videos)))}


def select_fold(split, folds: int, fold: int):
    """The training videos of fold ``fold``: every video except those assigned to it (K-fold ensembling)."""
    videos = split.with_format(None)["video"]
    assignment = fold_of_videos(videos, folds)
    keep = [i for i, video in enumerate(videos) if assignment[video] != fold]
    return split.select(keep).flatten_indices()  # windows read the Arrow buffers, which need contiguous rows



