"""Training logic behind ``scripts/train.py``: config, data, model, loop pieces, checkpoints.

The script stays one linear ``main()`` (as in the accelerate examples); everything reusable lives here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .data.synthetic import SYNTHETIC_PRESETS  # noqa: F401 (re-exported)
from .errors import ConfigError, UserError
from .modeling import AbawFusionConfig

PAPER_TABLE1_FEATURES = ["resnet18", "poster2", "fau"]


@dataclass
class TrainConfig:
    """Every training setting; YAML keys and ``--flags`` share these names (an unknown key is an error)."""

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
    folds: int = field(default=1, metadata={"help": "train K models on K video-disjoint subsets of the training split"})
    fold: int | None = field(default=None, metadata={"help": "train only this fold (0-based) of --folds"})
    eval_batch_size: int = 64
    num_workers: int = 0
    tracker: str = field(default="jsonl", metadata={"help": "jsonl, tensorboard or none"})
    progress: bool = True
    plot: bool = True

    def __post_init__(self):
        choices = {
            "fusion": ("concat", "tokens"),
            "lr_schedule": ("exponential", "cosine"),
            "mixed_precision": ("no", "fp16", "bf16"),
            "au_loss_weighting": ("inverse_rate", "none"),
            "tracker": ("jsonl", "tensorboard", "none"),
            "synthetic_size": ("tiny", "small", "full"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if self.window < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("window, batch_size and epochs must be >= 1")
        if self.fold is not None and not 0 <= self.fold < self.folds:
            raise ValueError(f"fold {self.fold} is outside 0..{self.folds - 1}")
        # "resnet18+fau", "resnet18,fau" and ["resnet18", "fau"] all mean the same
        items = [self.features] if isinstance(self.features, str) else list(self.features)
        self.features = [name for item in items for name in item.replace("+", ",").split(",") if name]


def parse_train_config(argv: list[str] | None = None) -> TrainConfig:
    """``--config file.yaml`` gives defaults, every other ``--flag`` overrides them; unknown keys are errors."""
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = None
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            raise UserError("--config needs a YAML file")
        config_path = argv[at + 1]
        del argv[at : at + 2]
    parser = HfArgumentParser(TrainConfig, description="--config FILE.yaml gives defaults; flags override them")
    if config_path is not None:
        values = yaml.safe_load(Path(config_path).read_text()) or {}
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        parser.set_defaults(**values)
    (config,) = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return config


def save_train_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


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
    if split is None or len(split) == 0:
        raise ValueError(f"evaluation split {name!r} is empty: training needs labelled validation frames")
    columns = split.with_format("numpy")
    va = np.asarray(columns["valence"])
    expr = np.asarray(columns["expression"])
    aus = np.asarray(columns["aus"])
    if not ((va != -5).any() or (expr != -1).any() or (aus != -1).any()):
        raise ValueError(f"evaluation split {name!r} has no labels (all VA -5, expression -1, AU -1)")


def check_feature_columns(split, features: list[str], split_name: str) -> dict[str, int]:
    """The dataset must carry every requested extractor column; returns name -> dim."""
    from datasets import List, Sequence

    missing = [name for name in features if name not in split.column_names]
    if missing:
        label_columns = {"video", "frame", "valence", "arousal", "expression", "aus"}
        available = [c for c in split.column_names if c not in label_columns]
        raise ValueError(
            f"split {split_name!r} lacks feature column(s) {missing}; it has {available}. "
            "Pick --features from those, or extract the missing ones."
        )
    dims = {}
    for name in features:
        feature = split.features[name]
        length = getattr(feature, "length", -1)
        if not isinstance(feature, (List, Sequence)) or length is None or length <= 0:
            raise ValueError(f"column {name!r} of split {split_name!r} is not a fixed-length float list: {feature}")
        dims[name] = int(length)
    return dims


def model_config_from_train_config(
    config: TrainConfig, feature_dims: dict[str, int], au_weights: list[float], extractors: dict | None = None
) -> AbawFusionConfig:
    gaps = config.max_gap if config.window > 1 else 0
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


def resolve_resume(resume: str, output_dir: Path, config: TrainConfig) -> tuple[Path, dict]:
    """Find the checkpoint to resume from and check it belongs to this run's setting."""
    path = Path(resume)
    if resume == "latest":
        checkpoints = sorted((output_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
        if not checkpoints:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {output_dir / 'checkpoints'}")
        path = checkpoints[-1]
    if not path.is_dir():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint folder")
    state_file = path / RUN_STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"--resume {path}: not an abaw_hf training checkpoint (no {RUN_STATE_FILE})")
    state = json.loads(state_file.read_text())
    saved = state.get("train_config", {})
    for key in ("features", "fusion", "hidden_size", "num_hidden_layers", "window", "batch_size", "seed", "dataset"):
        if key in saved and saved[key] != getattr(config, key):
            raise ValueError(
                f"--resume {path}: checkpoint was trained with {key}={saved[key]!r}, this run has {getattr(config, key)!r}"
            )
    return path, state


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

    data = load_feature_data(config.dataset, synthetic_size=config.synthetic_size, synthetic_seed=config.synthetic_seed)
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
