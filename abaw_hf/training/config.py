"""Training settings: the typed ``TrainConfig``, its YAML file and flags (one parser for ``scripts/train.py`` and
``abaw-hf train``), and the fusion model config it implies."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import sys
import typing
from typing import TYPE_CHECKING
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError, UserError, read_text_file, strip_debug_flag
from ..modeling.labels_abaw_fusion import FUSION_MODES, POSITION_ENCODINGS
from ..segments import DEFAULT_MAX_GAP, DEFAULT_WINDOW, default_stride

if TYPE_CHECKING:
    from ..modeling import AbawFusionConfig

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
    synthetic_size: str = field(default="small", metadata={"help": "synthetic preset: tiny, small or full (s-Aff-Wild2 scale), calibrated to s-Aff-Wild2; easy-tiny, easy, easy-full: the previous easy generator"})
    synthetic_seed: int = 0
    train_split: str = "train"
    eval_split: str = "validation"
    features: list[str] = field(default_factory=lambda: list(PAPER_TABLE1_FEATURES))
    # temporal windows
    window: int = field(default=DEFAULT_WINDOW, metadata={"help": "frames per window (T); 1 = per-frame model"})
    train_stride: int = field(default=default_stride(DEFAULT_WINDOW), metadata={"help": "step between training windows"})
    max_gap: int = field(default=DEFAULT_MAX_GAP, metadata={"help": "a frame-number gap larger than this starts a new window"})
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` and one ``--flag`` per TrainConfig field on ``parser`` (the flag forms of
    transformers' HfArgumentParser, built here so ``--help`` needs no transformers); a flag that is not given
    stays out of the namespace, so the YAML value (or the default) holds."""
    parser.add_argument("--config", metavar="FILE.yaml", nargs="?", const="", default=argparse.SUPPRESS,
                        help="settings file: its values are the defaults, flags override them")
    for item in dataclasses.fields(TrainConfig):
        _add_field_flag(parser, item, _FIELD_TYPES[item.name])


def _add_field_flag(parser: argparse.ArgumentParser, item: dataclasses.Field, hint) -> None:
    names = [f"--{item.name}"] + ([f"--{item.name.replace('_', '-')}"] if "_" in item.name else [])
    common = {"help": item.metadata.get("help"), "default": argparse.SUPPRESS}
    if typing.get_origin(hint) in (typing.Union, _UnionType):  # X | None: the flag takes X
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is bool:
        parser.add_argument(*names, type=_flag_bool, nargs="?", const=True, metavar="true|false", **common)
        if item.default is True:
            parser.add_argument(f"--no_{item.name}", f"--no-{item.name.replace('_', '-')}", action="store_false",
                                dest=item.name, help=f"turn off --{item.name}", default=argparse.SUPPRESS)
    elif typing.get_origin(hint) is list:
        parser.add_argument(*names, type=typing.get_args(hint)[0], nargs="+", **common)
    else:
        parser.add_argument(*names, type=hint, **common)


def _flag_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "t", "y"):
        return True
    if lowered in ("false", "no", "0", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a namespace parsed with ``add_arguments``: the YAML file's values, then the flags.
    A bad value is a ConfigError naming the file when it came from there and not from a flag."""
    flags = {key: value for key, value in vars(args).items() if key in _FIELD_TYPES}
    config_path = getattr(args, "config", None)
    if config_path == "":
        raise ConfigError("--config needs a YAML file")
    from_file = read_train_config_file(config_path) if config_path is not None else {}
    try:
        return TrainConfig(**{**from_file, **flags})
    except SettingError as error:
        if error.key in from_file and error.key not in flags:
            raise SettingError(error.key, f"--config {config_path}: {error}") from None
        raise


def parse_train_config(argv: list[str] | None = None) -> TrainConfig:
    """``--config file.yaml`` gives defaults, every other ``--flag`` overrides them; unknown keys are errors.
    Every problem is a ConfigError naming the file, key or flag (``--debug`` is left to ``run_command``)."""
    parser = argparse.ArgumentParser(prog="train.py", description="--config FILE.yaml gives defaults; flags override them")

    def refuse(message: str):  # argparse would print the whole usage; one line naming the flag is enough
        raise ConfigError(f"{message} (--help lists the flags)")

    parser.error = refuse
    add_arguments(parser)
    args, unused = parser.parse_known_args(strip_debug_flag(sys.argv[1:] if argv is None else argv))
    if unused:
        raise ConfigError(f"unknown flag(s) {' '.join(unused)}; --help lists the flags")
    return train_config_from_args(args)


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
    try:
        return _fusion_config(config, feature_dims, au_weights, extractors or {}, gaps)
    except ValueError as error:  # e.g. an encoder width the number of heads does not divide
        raise ConfigError(f"model settings: {error}") from None


def _fusion_config(config: TrainConfig, feature_dims, au_weights, extractors, gaps: int) -> AbawFusionConfig:
    from ..modeling import AbawFusionConfig  # transformers loads here, not for --help

    return AbawFusionConfig(
        feature_dims=feature_dims,
        feature_names=list(feature_dims),
        hidden_size=config.hidden_size,
        fusion=config.fusion,
        concat_projection=config.concat_projection,
        position_encoding=config.position_encoding,
        max_window=max(64, config.window * max(gaps, 1) + 1),
        window=config.window,  # inference runs the model as it was trained
        max_gap=config.max_gap,
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
