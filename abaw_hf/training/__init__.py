"""Training the fusion model with 🤗 Accelerate: ``train(config) -> result`` is the entry point of
``scripts/train.py``, ``abaw-hf train``, the ablation, the benchmarks and the tests.

- ``config``: ``TrainConfig`` (YAML + flags, type-checked) and the model config it implies
- ``data``: the DatasetDict and its checks, video folds, AU loss weights, the window order
- ``steps``: per-step seeds, feature perturbation, the learning-rate schedule
- ``runs``: the run folder (``--overwrite``, ``--resume``), checkpoints, the saved best model
- ``reporting``: curves, throughput, the per-process summary
- ``loop``: ``train`` itself; ``ablation``: the paper's Table 1
"""

from .._lazy import lazy_exports

# names load from their modules on first use, so `abaw-hf train --help` imports no torch or datasets
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "..data.synthetic": ["SYNTHETIC_PRESETS"],
    ".config": ["PAPER_TABLE1_FEATURES", "SettingError", "TrainConfig", "model_config_from_train_config",
                "parse_train_config", "read_train_config_file", "save_train_config", "train_config_from_args"],
    ".data": ["au_loss_weights_from_labels", "fold_of_videos", "load_training_data", "select_fold"],
    ".loop": ["train"],
    ".runs": ["latest_checkpoint", "training_outputs"],
})
