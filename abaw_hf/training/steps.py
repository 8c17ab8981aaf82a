"""What each optimizer step draws and how the learning rate moves, reproducibly: a stopped and resumed run
draws exactly what the uninterrupted run drew."""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch

from .config import TrainConfig

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

