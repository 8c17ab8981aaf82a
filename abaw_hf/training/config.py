"""Training settings: the typed ``TrainConfig`` (one type engine for YAML values, flags and in-process callers), its
YAML file (``load_train_config``), and the fusion model config it implies (``MODEL_SETTINGS``, the one mapping from
training settings to `AbawFusionConfig` fields). The flags are built from the fields by `abaw_hf.cli.train`."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from typing import TYPE_CHECKING
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import FALSE_WORDS, TRUE_WORDS, ConfigError, UserError, read_text_file
from ..modeling.labels_abaw_fusion import FUSION_MODES, MODEL_DEFAULTS, POSITION_ENCODINGS
from ..segments import DEFAULT_MAX_GAP, DEFAULT_WINDOW, default_stride

if TYPE_CHECKING:
    from ..modeling import AbawFusionConfig

PAPER_TABLE1_FEATURES = ["resnet18", "poster2", "fau"]


class SettingError(ConfigError):
    """A bad value of one setting; ``key`` lets the message say where it came from (YAML file or flag)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# The one mapping from training settings to the fusion model's config: TrainConfig field -> AbawFusionConfig field.
# The YAML key and flag keep the training name; the default of each is the model's own, MODEL_DEFAULTS (window and
# max_gap aside: training sets those), so each model setting has one name in config.json and one default.
MODEL_SETTINGS = {
    "window": "window", "max_gap": "max_gap",
    "fusion": "fusion", "hidden_size": "hidden_size", "concat_projection": "concat_projection",
    "position_encoding": "position_encoding", "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads", "mlp_ratio": "mlp_ratio", "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_dropout_prob", "va_loss_weight": "va_loss_weight",
    "expression_loss_weight": "expression_loss_weight", "au_loss_weight": "au_loss_weight",
}
TRAINING_SET_MODEL_SETTINGS = ("window", "max_gap")  # recorded by training, unset (None) in a bare model config


def _model_default(key: str):
    """The default of training setting ``key``: its AbawFusionConfig field's (`MODEL_DEFAULTS`)."""
    return MODEL_DEFAULTS[MODEL_SETTINGS[key]]


@dataclass
class TrainConfig:
    """Every training setting; YAML keys and ``--flags`` share these names (an unknown key is an error).

    Values are checked against the field types (see ``checked_config_value``): a YAML value is read as the
    same ``--flag`` would be, so ``1e-4`` (a string to YAML) is a number, while an integer setting refuses
    ``1.0`` just as ``--epochs 1.0`` is refused.
    """

    # data
    dataset: str = field(default="synthetic", metadata={"help": "'synthetic' or a saved DatasetDict / Parquet folder"})
    synthetic_size: str = field(default="small", metadata={"help": "synthetic preset: tiny, small or full (s-Aff-Wild2 scale), calibrated to s-Aff-Wild2; easy-tiny, easy, easy-full: the previous easy generator"})
    synthetic_seed: int = 0
    train_split: str = "train"
    eval_split: str = "validation"
    features: list[str] = field(default_factory=lambda: list(PAPER_TABLE1_FEATURES))
    # temporal windows
    window: int = field(default=DEFAULT_WINDOW, metadata={"help": "frames per window (T); 1 = per-frame model"})
    train_stride: int = field(default=default_stride(DEFAULT_WINDOW), metadata={"help": "step between training windows"})
    max_gap: int = field(default=DEFAULT_MAX_GAP, metadata={"help": "a frame-number gap larger than this starts a new window"})
    # model (`MODEL_SETTINGS` maps each to its AbawFusionConfig field; same defaults)
    fusion: str = field(default=_model_default("fusion"),
                        metadata={"help": "concat (paper eq. 2, temporal) or tokens (released code)"})
    hidden_size: int = _model_default("hidden_size")
    concat_projection: int | None = _model_default("concat_projection")
    position_encoding: str = _model_default("position_encoding")
    num_hidden_layers: int = _model_default("num_hidden_layers")
    num_attention_heads: int = _model_default("num_attention_heads")
    mlp_ratio: float = _model_default("mlp_ratio")
    dropout: float = _model_default("dropout")
    attention_dropout: float = _model_default("attention_dropout")
    # losses
    va_loss_weight: float = _model_default("va_loss_weight")
    expression_loss_weight: float = _model_default("expression_loss_weight")
    au_loss_weight: float = _model_default("au_loss_weight")
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
            "synthetic_size": ("tiny", "small", "full", "easy-tiny", "easy", "easy-full"),  # data.synthetic.SYNTHETIC_PRESETS
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
        # the words a boolean setting accepts, in YAML and as a flag value alike (errors.TRUE_WORDS, FALSE_WORDS)
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
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


def field_type(key: str):
    """The type a setting's value takes (``X`` of ``X | None``)."""
    hint = _FIELD_TYPES[key]
    if typing.get_origin(hint) in (typing.Union, _UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def load_train_config(path: str | os.PathLike | None = None, /, **settings) -> TrainConfig:
    """The TrainConfig of a YAML file (``path``; None: the defaults) with ``settings`` over it: the one way from
    settings to a TrainConfig (``abaw-hf train``, ``scripts/train.py``, the ablation and the calibration use it).
    A bad value is a ConfigError naming the file when it came from there and not from ``settings``."""
    if path is not None and not os.fspath(path):
        raise ConfigError("--config needs a YAML file")
    from_file = read_train_config_file(os.fspath(path)) if path is not None else {}
    try:
        return TrainConfig(**{**from_file, **settings})
    except SettingError as error:
        if error.key in from_file and error.key not in settings:
            raise SettingError(error.key, f"--config {path}: {error}") from None
        raise


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


def save_train_config(config: TrainConfig, path: str | Path) -> None:
    # --overwrite acts on the folder, it is no setting: a saved config reused as --config must not delete a run
    settings = {key: value for key, value in dataclasses.asdict(config).items() if key != "overwrite"}
    Path(path).write_text(yaml.safe_dump(settings, sort_keys=False))


def model_config_from_train_config(
    config: TrainConfig, feature_dims: dict[str, int], au_weights: list[float], extractors: dict | None = None
) -> AbawFusionConfig:
    gaps = config.max_gap if config.window > 1 else 0
    from huggingface_hub.errors import StrictDataclassError

    from ..modeling.configuration_abaw_fusion import config_problem

    try:
        return _fusion_config(config, feature_dims, au_weights, extractors or {}, gaps)
    except (ValueError, StrictDataclassError) as error:  # e.g. an encoder width the number of heads does not divide
        raise ConfigError(f"model settings: {config_problem(error)}") from None


def _fusion_config(config: TrainConfig, feature_dims, au_weights, extractors, gaps: int) -> AbawFusionConfig:
    from ..modeling import AbawFusionConfig  # transformers loads here, not for --help

    return AbawFusionConfig(
        feature_dims=feature_dims,
        feature_names=list(feature_dims),
        max_window=max(64, config.window * max(gaps, 1) + 1),
        au_loss_weights=au_weights,
        extractors=extractors or {},
        # window and max_gap too: inference runs the model as it was trained
        **{model_key: getattr(config, key) for key, model_key in MODEL_SETTINGS.items()},
    )
