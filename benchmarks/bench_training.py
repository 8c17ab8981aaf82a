"""Training throughput and peak memory of the paper configuration at s-Aff-Wild2 scale (synthetic data).

Runs scripts/train.py with configs/abaw7_paper.yaml on the `full` synthetic preset (~125k training frames),
for a fixed number of optimizer steps, with 1 process and with 2 CPU processes (accelerate launch --multi_gpu),
and prints a Markdown table. Throughput excludes the first (warm-up) step.

    python benchmarks/bench_training.py [--steps 6] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_dataset(path: Path) -> None:
    if (path / "dataset_dict.json").is_file():
        return
    from abaw_hf.data.synthetic import make_synthetic_dataset
    from abaw_hf.training import SYNTHETIC_PRESETS

    make_synthetic_dataset(**SYNTHETIC_PRESETS["full"]).save_to_disk(str(path))


def run(processes: int, data: Path, steps: int, batch_size: int, workdir: Path) -> dict:
    out = workdir / f"run-{processes}"
    args = [
        str(ROOT / "scripts" / "train.py"), "--config", str(ROOT / "configs" / "abaw7_paper.yaml"),
        "--dataset", str(data), "--max_steps", str(steps), "--batch_size", str(batch_size),
        "--mixed_precision", "no", "--output_dir", str(out), "--no_progress", "--no_plot",
    ]
    env = dict(os.environ, ACCELERATE_USE_CPU="true")
    if processes == 1:
        command = [sys.executable, *args]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // processes))
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--main_process_port", str(free_port()), *args]
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    return json.loads((out / "train_summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128, help="windows per optimizer step per process")
    parser.add_argument("--data", default=str(ROOT / "outputs" / "bench-synthetic-full"))
    args = parser.parse_args()
    data = Path(args.data)
    prepare_dataset(data)
    from datasets import load_from_disk

    train_frames = len(load_from_disk(str(data))["train"])
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for processes in (1, 2):
            summary = run(processes, data, args.steps, args.batch_size, Path(workdir))
            fps = summary["train_frames_per_second"]
            epoch_minutes = train_frames * 2 / fps / 60  # stride T/2: each frame is seen twice per epoch
            rows.append((processes, fps, epoch_minutes, max(summary["peak_rss_mb_per_process"])))
    print(f"\nPaper configuration (resnet18+poster2+fau, 384-d, 4 layers, T=16), {train_frames} synthetic training frames, "
          f"batch {args.batch_size} windows/process, {os.cpu_count()} CPU cores\n")
    print("| processes | training frames/s | epoch time (min) | peak RSS per process (MB) |")
    print("| ---: | ---: | ---: | ---: |")
    for processes, fps, minutes, rss in rows:
        print(f"| {processes} | {fps:,.0f} | {minutes:.1f} | {rss:,.0f} |")


if __name__ == "__main__":
    main()
