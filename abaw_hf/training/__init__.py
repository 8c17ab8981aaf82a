"""Training the fusion model with 🤗 Accelerate: ``train(config) -> result`` is the entry point of
``scripts/train.py``, ``abaw-hf train``, the ablation, the benchmarks and the tests.

- ``config``: ``TrainConfig`` (YAML + settings, type-checked: ``load_train_config``) and the model config it implies
  (the flags: `abaw_hf.cli.train`)
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
    ".config": ["MODEL_SETTINGS", "PAPER_TABLE1_FEATURES", "SettingError", "TrainConfig", "load_train_config",
                "model_config_from_train_config", "read_train_config_file", "save_train_config"],
    ".data": ["au_loss_weights_from_labels", "fold_of_videos", "load_training_data", "select_fold"],
    ".loop": ["train"],
    ".runs": ["latest_checkpoint", "training_outputs"],
})
