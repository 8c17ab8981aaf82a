"""Training the fusion model with 🤗 Accelerate: ``train(config) -> result`` is the entry point of
``scripts/train.py``, ``abaw-hf train``, the ablation, the benchmarks and the tests.

- ``config``: ``TrainConfig`` (YAML + flags, type-checked) and the model config it implies
- ``data``: the DatasetDict and its checks, video folds, AU loss weights, the window order
- ``steps``: per-step seeds, feature perturbation, the learning-rate schedule
- ``runs``: the run folder (``--overwrite``, ``--resume``), checkpoints, the saved best model
- ``reporting``: curves, throughput, the per-process summary
- ``loop``: ``train`` itself; ``cli``: the command line; ``ablation``: the paper's Table 1
"""

from ..data.synthetic import SYNTHETIC_PRESETS
from .config import (
    PAPER_TABLE1_FEATURES,
    SettingError,
    TrainConfig,
    model_config_from_train_config,
    parse_train_config,
    read_train_config_file,
    save_train_config,
    train_config_from_args,
)
from .data import au_loss_weights_from_labels, fold_of_videos, load_training_data, select_fold
from .loop import train
from .runs import latest_checkpoint, training_outputs

__all__ = [
    "PAPER_TABLE1_FEATURES", "SYNTHETIC_PRESETS", "SettingError", "TrainConfig", "au_loss_weights_from_labels",
    "fold_of_videos", "latest_checkpoint", "load_training_data", "model_config_from_train_config",
    "parse_train_config", "read_train_config_file", "save_train_config", "select_fold",
    "train", "train_config_from_args", "training_outputs",
]
