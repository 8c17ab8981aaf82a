"""What a run reports besides its model: the training curves, throughput and the per-process summary."""

from __future__ import annotations

import json
from pathlib import Path

import torch

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
