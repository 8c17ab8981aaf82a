"""Training logic behind ``scripts/train.py``: config, data, model, loop pieces, checkpoints.

The script stays one linear ``main()`` (as in the accelerate examples); everything reusable lives here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import shutil
import sys
import typing
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .data.synthetic import SYNTHETIC_PRESETS  # noqa: F401 (re-exported)
from .errors import ConfigError, UserError, check_output_folder, read_text_file, strip_debug_flag
from .modeling import AbawFusionConfig
from .modeling.configuration_abaw_fusion import FUSION_MODES, POSITION_ENCODINGS

PAPER_TABLE1_FEATURES = ["resnet18", "poster2", "fau"]


class SettingError(ConfigError):
    """A bad value of one setting; ``key`` lets the message say where it came from (YAML file or flag)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass
class TrainConfig:
    """Every training setting; YAML keys and ``--flags`` share these names (an unknown key is an error).

    Values are checked against the field types (see ``checked_config_value``): a YAML value is read as the
    same ``--flag`` would be, so ``1e-4`` (a string to YAML) is a number, while an integer setting refuses
    ``1.0`` just as ``--epochs 1.0`` is refused.
    """

    # data
    dataset: str = field(default="synthetic", metadata={"help": "'synthetic' or a saved DatasetDict / Parquet folder"})
    synthetic_size: str = field(default="small", metadata={"help": "synthetic preset: tiny, small or full (s-Aff-Wild2 scale)"})
    synthetic_seed: int = 0
    train_split: str = "train"
    eval_split: str = "validation"
    features: list[str] = field(default_factory=lambda: list(PAPER_TABLE1_FEATURES))
    # temporal windows
    window: int = field(default=16, metadata={"help": "frames per window (T); 1 = per-frame model"})
    train_stride: int = field(default=8, metadata={"help": "step between training windows"})
    max_gap: int = field(default=8, metadata={"help": "a frame-number gap larger than this starts a new window"})
    # model
    fusion: str = field(default="concat", metadata={"help": "concat (paper eq. 2, temporal) or tokens (released code)"})
    hidden_size: int = 128
    concat_projection: int | None = None
    position_encoding: str = "sinusoidal"
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    attention_dropout: float = 0.0
    # losses
    va_loss_weight: float = 1.0
    expression_loss_weight: float = 1.0
    au_loss_weight: float = 2.0
    au_loss_weighting: str = field(default="inverse_rate", metadata={"help": "inverse_rate (from training labels) or none"})
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    lr_schedule: str = field(default="exponential", metadata={"help": "exponential (per epoch, released) or cosine"})
    lr_gamma: float = 0.9
    warmup_ratio: float = 0.0
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16"})
    seed: int = 32
    feature_noise_prob: float = field(default=0.0, metadata={"help": "probability that a frame vector is perturbed"})
    feature_noise_scale: float = field(default=0.1, metadata={"help": "std of the noise on half of the dims"})
    # run
    output_dir: str = "outputs/abaw-fusion"
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps (and save state)"})
    resume: str | None = field(default=None, metadata={"help": "checkpoint folder from save_state, or 'latest'"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace the training run already in output_dir (its checkpoints, model and logs; other files stay)"})
    folds: int = field(default=1, metadata={"help": "train K models on K video-disjoint subsets of the training split"})
    fold: int | None = field(default=None, metadata={"help": "train only this fold (0-based) of --folds"})
    eval_batch_size: int = 64
    num_workers: int = 0
    tracker: str = field(default="jsonl", metadata={"help": "jsonl, tensorboard or none"})
    progress: bool = True
    plot: bool = True

    def __post_init__(self):
        for item in dataclasses.fields(self):
            setattr(self, item.name, checked_config_value(item.name, getattr(self, item.name)))
        choices = {
            "fusion": FUSION_MODES,
            "position_encoding": POSITION_ENCODINGS,
            "lr_schedule": ("exponential", "cosine"),
            "mixed_precision": ("no", "fp16", "bf16"),
            "au_loss_weighting": ("inverse_rate", "none"),
            "tracker": ("jsonl", "tensorboard", "none"),
            "synthetic_size": ("tiny", "small", "full"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise SettingError(key, f"{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        at_least = {  # key -> smallest allowed value (None = unset, where the field allows it)
            "window": 1, "train_stride": 1, "max_gap": 0, "hidden_size": 1, "num_hidden_layers": 1,
            "num_attention_heads": 1, "epochs": 1, "batch_size": 1, "eval_batch_size": 1,
            "gradient_accumulation_steps": 1, "num_workers": 0, "max_steps": 1, "folds": 1, "concat_projection": 1,
            "weight_decay": 0, "warmup_ratio": 0, "dropout": 0, "attention_dropout": 0, "feature_noise_prob": 0,
            "feature_noise_scale": 0, "va_loss_weight": 0, "expression_loss_weight": 0, "au_loss_weight": 0,
        }
        for key, smallest in at_least.items():
            value = getattr(self, key)
            if value is not None and not value >= smallest:  # "not >=" also refuses NaN
                raise SettingError(key, f"{key} must be >= {smallest}; got {value!r}")
        for key in ("learning_rate", "lr_gamma", "mlp_ratio", "max_grad_norm"):
            value = getattr(self, key)
            if value is not None and not (0 < value < math.inf):
                raise SettingError(key, f"{key} must be a number > 0; got {value!r}")
        for key in ("dropout", "attention_dropout", "warmup_ratio", "feature_noise_prob"):
            if not getattr(self, key) <= 1:
                raise SettingError(key, f"{key} must be between 0 and 1; got {getattr(self, key)!r}")
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise SettingError("fold", f"fold {self.fold} is outside 0..{self.folds - 1} (folds is {self.folds})")
        if self.resume not in (None, "latest") and self.folds > 1 and self.fold is None:
            raise SettingError("resume", f"resume {self.resume}: with folds {self.folds} each fold has its own "
                               "checkpoints; use --resume latest, or --fold K to resume one fold")
        # "resnet18+fau", "resnet18,fau" and ["resnet18", "fau"] all mean the same
        items = [self.features] if isinstance(self.features, str) else list(self.features)
        self.features = [name for item in items for name in item.replace("+", ",").split(",") if name]
        if not self.features:
            raise SettingError("features", "features is empty; name at least one extractor column (e.g. resnet18)")


_TRUE, _FALSE = ("true", "yes", "y", "1", "on"), ("false", "no", "n", "0", "off")


def _type_description(base: type) -> str:
    if typing.get_origin(base) is list:
        return "a list of names (e.g. [resnet18, fau]) or 'resnet18+fau'"
    return {int: "an integer (e.g. 8)", float: "a number (e.g. 0.001)", bool: "true or false",
            str: "a text value"}[base]


def checked_config_value(key: str, value):
    """``value`` of setting ``key`` in its field's type, or a ConfigError naming the key and the expected type.

    Strings are read as on the command line (YAML turns ``1e-4`` into a string); numbers must already have
    the field's type, except that an integer is also a float. A bool is no number here, and an integer
    setting refuses ``1.0``.
    """
    hint = _FIELD_TYPES[key]
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    optional = type(None) in options
    base = next(option for option in options if option is not type(None))
    expected = _type_description(base) + (" or null" if optional else "")
    problem = SettingError(key, f"{key} must be {expected}; got {value!r} ({type(value).__name__})")
    if value is None:
        if optional:
            return None
        raise problem
    if typing.get_origin(base) is list:  # features: the separators are handled by __post_init__
        if isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            return value if isinstance(value, str) else list(value)
        raise problem
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise problem
    if base is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):  # in-process callers pass paths
            return os.fspath(value)
        raise SettingError(key, f"{key} must be {expected}; got {value!r} ({type(value).__name__}); quote it in YAML")
    if isinstance(value, bool):
        raise problem
    if base is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise problem
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise problem


_UnionType = type(int | None)
_FIELD_TYPES = typing.get_type_hints(TrainConfig)


def parse_train_config(argv: list[str] | None = None) -> TrainConfig:
    """``--config file.yaml`` gives defaults, every other ``--flag`` overrides them; unknown keys are errors.
    Every problem is a ConfigError naming the file, key or flag (``--debug`` is left to ``run_command``)."""
    from transformers import HfArgumentParser

    argv = strip_debug_flag(sys.argv[1:] if argv is None else argv)
    config_path = None
    for at, item in enumerate(argv):
        if item == "--config" or item.startswith("--config="):
            if item == "--config" and at + 1 >= len(argv):
                raise ConfigError("--config needs a YAML file")
            config_path = item.partition("=")[2] if "=" in item else argv[at + 1]
            del argv[at : at + (1 if "=" in item else 2)]
            break
    parser = HfArgumentParser(TrainConfig, description="--config FILE.yaml gives defaults; flags override them")

    def refuse(message: str):  # argparse would print the whole usage; one line naming the flag is enough
        raise ConfigError(f"{message} (--help lists the flags)")

    parser.error = refuse
    from_file = read_train_config_file(config_path) if config_path is not None else {}
    parser.set_defaults(**from_file)
    try:
        config, unused = parser.parse_args_into_dataclasses(
            args=argv, look_for_args_file=False, return_remaining_strings=True
        )
    except SettingError as error:
        given_as_flag = {item.split("=")[0].lstrip("-").replace("-", "_").removeprefix("no_") for item in argv
                         if item.startswith("--")}
        if error.key in from_file and error.key not in given_as_flag:
            raise SettingError(error.key, f"--config {config_path}: {error}") from None
        raise
    if unused:
        raise ConfigError(f"unknown flag(s) {' '.join(unused)}; --help lists the flags")
    return config


def read_train_config_file(path: str) -> dict:
    """The settings of a YAML config file, each checked against its TrainConfig field."""
    try:
        text = read_text_file(path, "YAML config file")
    except UserError as error:
        raise ConfigError(f"--config {error}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config {path}: not valid YAML{where} ({getattr(error, 'problem', None) or error})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected 'key: value' settings, got a YAML {type(values).__name__}")
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    unknown = sorted(str(key) for key in values if key not in known)
    if unknown:
        close = [match for key in unknown for match in difflib.get_close_matches(key, known, n=1)]
        hint = f"did you mean {', '.join(close)}?" if close else f"known keys: {', '.join(sorted(known))}"
        raise ConfigError(f"--config {path}: unknown key(s) {', '.join(unknown)}; {hint}")
    try:
        return {key: checked_config_value(key, value) for key, value in values.items()}
    except SettingError as error:
        raise SettingError(error.key, f"--config {path}: {error}") from None


def process_state():
    """accelerate's PartialState (device, process rank) before the Accelerator exists, set up as Accelerator()
    will set it up: only AcceleratorState reads ACCELERATE_USE_CPU, and a PartialState made without it would
    turn a CPU multi-process launch into independent single-process runs."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def check_accelerator_settings(config: TrainConfig, device: torch.device) -> None:
    """Settings accelerate would accept and then quietly not apply: fp16 without an accelerator (it trains in
    fp32 on a CPU) and the tensorboard tracker without its package (nothing is logged)."""
    if config.mixed_precision == "fp16" and device.type == "cpu":
        raise ConfigError("--mixed_precision fp16 needs a GPU (this run would train on the CPU, in fp32); "
                          "use --mixed_precision bf16 or no")
    if config.tracker == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise ConfigError("--tracker tensorboard needs the tensorboard package (pip install tensorboard); "
                              "or use --tracker jsonl")


def save_train_config(config: TrainConfig, path: str | Path) -> None:
    # --overwrite acts on the folder, it is no setting: a saved config reused as --config must not delete a run
    settings = {key: value for key, value in dataclasses.asdict(config).items() if key != "overwrite"}
    Path(path).write_text(yaml.safe_dump(settings, sort_keys=False))


def saved_train_config(model_dir: str | Path) -> dict:
    """The ``train_config.yaml`` that training saved beside a model's weights; {} when there is none."""
    path = Path(model_dir) / "train_config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


# ----- labels ---------------------------------------------------------------------------------------------------


def au_loss_weights_from_labels(aus: np.ndarray) -> list[float]:
    """w_i ∝ 1 / (positive rate of AU i among its labelled frames), normalised to mean 1 (ARCHITECTURE.md)."""
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
    """An empty or label-less validation split is an error before training starts."""
    from .data.storage import DatasetLayoutError

    if split is None or len(split) == 0:
        raise DatasetLayoutError(f"evaluation split {name!r} is empty: training needs labelled validation frames")
    columns = split.with_format("numpy")
    va = np.asarray(columns["valence"])
    expr = np.asarray(columns["expression"])
    aus = np.asarray(columns["aus"])
    if not ((va != -5).any() or (expr != -1).any() or (aus != -1).any()):
        raise DatasetLayoutError(f"evaluation split {name!r} has no labels (all VA -5, expression -1, AU -1)")


def check_feature_columns(split, features: list[str], split_name: str) -> dict[str, int]:
    """The dataset must carry every requested extractor column; returns name -> dim."""
    from datasets import List, Sequence

    from .data.storage import DatasetLayoutError

    missing = [name for name in features if name not in split.column_names]
    if missing:
        label_columns = {"video", "frame", "valence", "arousal", "expression", "aus"}
        available = [c for c in split.column_names if c not in label_columns]
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


def model_config_from_train_config(
    config: TrainConfig, feature_dims: dict[str, int], au_weights: list[float], extractors: dict | None = None
) -> AbawFusionConfig:
    gaps = config.max_gap if config.window > 1 else 0
    try:
        return _fusion_config(config, feature_dims, au_weights, extractors or {}, gaps)
    except ValueError as error:  # e.g. an encoder width the number of heads does not divide
        raise ConfigError(f"model settings: {error}") from None


def _fusion_config(config: TrainConfig, feature_dims, au_weights, extractors, gaps: int) -> AbawFusionConfig:
    return AbawFusionConfig(
        feature_dims=feature_dims,
        feature_names=list(feature_dims),
        hidden_size=config.hidden_size,
        fusion=config.fusion,
        concat_projection=config.concat_projection,
        position_encoding=config.position_encoding,
        max_window=max(64, config.window * max(gaps, 1) + 1),
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        mlp_ratio=config.mlp_ratio,
        hidden_dropout_prob=config.dropout,
        attention_dropout_prob=config.attention_dropout,
        va_loss_weight=config.va_loss_weight,
        expression_loss_weight=config.expression_loss_weight,
        au_loss_weight=config.au_loss_weight,
        au_loss_weights=au_weights,
        extractors=extractors or {},
    )


# ----- randomness ------------------------------------------------------------------------------------------------


def step_seed(seed: int, epoch: int, step: int, process_index: int) -> int:
    """A seed for one optimizer step: dropout and feature noise depend on (epoch, step), not on history,
    so a resumed run draws exactly what the uninterrupted run drew."""
    return zlib.crc32(f"{seed}/{epoch}/{step}/{process_index}".encode()) & 0x7FFFFFFF


def perturb_features(batch: dict[str, Any], probability: float, scale: float, generator: torch.Generator) -> None:
    """Released-code augmentation: for a random subset of frame vectors, add N(0, scale) noise to half the dims."""
    if probability <= 0:
        return
    for name, tensor in batch["features"].items():
        batch_size, length, dim = tensor.shape
        device = tensor.device
        frames = torch.rand(batch_size, length, 1, generator=generator) < probability
        dims = torch.rand(batch_size, length, dim, generator=generator) < 0.5
        noise = torch.randn(batch_size, length, dim, generator=generator) * scale
        present = batch["feature_mask"][name].unsqueeze(-1).cpu() if "feature_mask" in batch else True
        update = (frames & dims & present).to(device)
        batch["features"][name] = torch.where(update, tensor + noise.to(device, tensor.dtype), tensor)


def exponential_or_cosine_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-epoch exponential decay (released code, γ per epoch, stepped each optimizer step with γ^(1/steps)), or
    linear warm-up + cosine. Both are LambdaLR, so their state is saved with ``save_state``."""
    total = max(1, steps_per_epoch * config.epochs)
    warmup = int(config.warmup_ratio * total)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "exponential":
            return config.lr_gamma ** (step // max(1, steps_per_epoch))
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----- checkpoints -----------------------------------------------------------------------------------------------

RUN_STATE_FILE = "abaw_run_state.json"


def write_run_state(checkpoint_dir: Path, state: dict) -> None:
    (checkpoint_dir / RUN_STATE_FILE).write_text(json.dumps(state, indent=2))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoints/step-N`` of the run in ``output_dir``, or None."""
    steps = [path for path in (Path(output_dir) / "checkpoints").glob("step-*") if path.name[5:].isdigit()]
    return max(steps, key=lambda path: int(path.name[5:]), default=None)


def resolve_resume(resume: str, output_dir: Path, config: TrainConfig) -> tuple[Path, dict]:
    """Find the checkpoint to resume from and check it belongs to this run's setting."""
    path = Path(resume)
    if resume == "latest":
        path = latest_checkpoint(output_dir)
        if path is None:
            raise ConfigError(f"--resume latest: no checkpoint in {Path(output_dir) / 'checkpoints'}; "
                              "drop --resume to start a new run there")
    if not path.is_dir():
        raise ConfigError(f"--resume {resume}: no such checkpoint folder")
    state_file = path / RUN_STATE_FILE
    if not state_file.is_file():
        raise ConfigError(f"--resume {path}: not an abaw_hf training checkpoint (no {RUN_STATE_FILE})")
    try:
        state = json.loads(read_text_file(state_file, "checkpoint state file"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"--resume {path}: {RUN_STATE_FILE} is damaged ({error})") from None
    saved = state.get("train_config", {})
    for key in ("features", "fusion", "hidden_size", "num_hidden_layers", "window", "batch_size", "seed", "dataset"):
        if key in saved and saved[key] != getattr(config, key):
            raise ConfigError(
                f"--resume {path}: checkpoint was trained with {key}={saved[key]!r}, this run has {getattr(config, key)!r}"
            )
    return path, state


def run_is_finished(state: dict, config: TrainConfig) -> bool:
    """The checkpoint already completed every epoch this run asks for (``epoch`` counts completed epochs)."""
    return state["epoch"] >= config.epochs


# ----- run folders -------------------------------------------------------------------------------------------

# What scripts/train.py writes into its output_dir, and so what --overwrite removes; anything else is the user's.
RUN_FILES = (
    "train_config.yaml", "config.json", "model.safetensors", "model.safetensors.index.json", "eval_results.json",
    "README.md", "metrics.jsonl", "history.json", "train_summary.json", "training_curves.png",
)
# save_pretrained copies the modeling code beside the weights (auto_map)
MODELING_CODE_FILES = tuple(sorted(path.name for path in Path(__file__).with_name("modeling").glob("*_abaw_fusion.py")))
TENSORBOARD_FOLDER = "runs"


def training_outputs(output_dir: str | Path) -> list[Path]:
    """The files and folders an earlier training run wrote in ``output_dir`` (empty for a new folder)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [folder / name for name in RUN_FILES + MODELING_CODE_FILES if (folder / name).is_file()]
    found += sorted(folder.glob("model-*-of-*.safetensors"))  # sharded weights
    found += sorted(path for path in (folder / "checkpoints").glob("step-*") if path.is_dir())
    found += sorted((folder / TENSORBOARD_FOLDER).rglob("events.out.tfevents.*"))
    return found


def remove_training_outputs(output_dir: str | Path) -> list[Path]:
    """--overwrite: delete what ``training_outputs`` names, then the folders it leaves empty; nothing else."""
    folder = Path(output_dir)
    removed = training_outputs(folder)
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for parent in (folder / "checkpoints", *sorted((folder / TENSORBOARD_FOLDER).rglob("*"), reverse=True),
                   folder / TENSORBOARD_FOLDER):
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return removed


def check_output_dir(config: TrainConfig) -> tuple[Path, dict] | None:
    """Before any work: ``output_dir`` is a writable folder holding no other run, unless --overwrite (replace it)
    or --resume (continue from a checkpoint) says what to do with it. Returns (checkpoint, state) to resume."""
    output_dir = check_output_folder(config.output_dir, "--output_dir")
    resume = resolve_resume(config.resume, output_dir, config) if config.resume else None
    inside = resume is not None and output_dir.resolve() in resume[0].resolve().parents
    if inside and config.overwrite:
        raise ConfigError(f"--overwrite would delete the checkpoint --resume {config.resume} continues from; "
                          "pass one of them")
    existing = training_outputs(output_dir)
    if existing and not config.overwrite and not inside:
        names = sorted({path.relative_to(output_dir).parts[0] for path in existing})
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise UserError(
            f"--output_dir {output_dir} holds another training run ({shown}); pass --overwrite to replace it, "
            "--resume latest to continue it, or choose another --output_dir"
        )
    return resume


def plot_training_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [row["train_loss"] for row in history], marker="o")
    left.set(title="training loss", xlabel="epoch")
    for key in ("p_mtl", "va", "f1_expression", "f1_au"):
        right.plot(epochs, [row[f"eval_{key}"] for row in history], marker="o", label=key)
    right.set(title="validation", xlabel="epoch")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_metrics_table(metrics: dict, title: str = "") -> str:
    keys = [("ccc_valence", "CCC valence"), ("ccc_arousal", "CCC arousal"), ("f1_expression", "F1 expression"),
            ("f1_au", "F1 AU"), ("p_mtl", "P_MTL")]
    lines = [f"| {title or 'metric'} | value |", "| --- | ---: |"]
    lines += [f"| {label} | {metrics[key]:.4f} |" for key, label in keys if key in metrics]
    return "\n".join(lines)


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation that depends only on (seed, epoch): the same on every process and after a resume."""

    def __init__(self, num_items: int, seed: int):
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items).tolist())

    def __len__(self) -> int:
        return self.num_items


# ----- data ------------------------------------------------------------------------------------------------------

def load_training_data(config: TrainConfig):
    """The DatasetDict named by ``config.dataset`` ('synthetic', a feature-set folder or a Parquet folder),
    with the training split reduced to this run's fold, and the extractor provenance of its features."""
    import datasets

    from .data.schema import read_metadata
    from .data.storage import DatasetLayoutError, load_feature_data

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


def save_best_model(model, output_dir: Path, metrics: dict, config: TrainConfig) -> Path:
    """save_pretrained (safetensors + config + modeling code), the metrics JSON and a drafted model card."""
    target = output_dir  # the run folder itself loads with from_pretrained; checkpoints live below it
    model.save_pretrained(target)
    (target / "eval_results.json").write_text(json.dumps(metrics, indent=2))
    save_train_config(config, target / "train_config.yaml")
    from .hub import render_model_card

    card = render_model_card(target, metrics, synthetic=config.dataset == "synthetic")
    (target / "README.md").write_text(card)
    return target


class ThroughputMeter:
    """Training frames per second, from the end of the first step (warm-up excluded) to the last."""

    def __init__(self):
        self.start = None
        self.frames = 0
        self.last = None

    def update(self, frames: int) -> None:
        import time

        now = time.perf_counter()
        if self.start is None:
            self.start = now  # the first step pays for warm-up; count from its end
        else:
            self.frames += frames
        self.last = now

    @property
    def frames_per_second(self) -> float | None:
        if self.start is None or self.last is None or self.last <= self.start:
            return None
        return self.frames / (self.last - self.start)


def write_train_summary(accelerator, model, output_dir: Path, throughput: ThroughputMeter, **extra) -> dict:
    """Per-process facts of the run (DDP parameter checksums, throughput, peak RSS) -> train_summary.json."""
    import resource

    checksum = torch.stack([p.detach().double().abs().sum() for p in model.parameters()]).sum().reshape(1)
    fps = torch.tensor([throughput.frames_per_second or 0.0], dtype=torch.float64)
    rss = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0], dtype=torch.float64)
    gathered = {
        name: accelerator.gather(value.to(accelerator.device)).cpu().tolist()
        for name, value in (("checksum", checksum), ("fps", fps), ("rss", rss))
    }
    summary = {
        "num_processes": accelerator.num_processes,
        "parameter_checksums": gathered["checksum"],
        "train_frames_per_second": float(sum(gathered["fps"])),
        "peak_rss_mb_per_process": gathered["rss"],
        **extra,
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()
    return summary
