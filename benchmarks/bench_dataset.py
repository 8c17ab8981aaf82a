"""Dataset benchmarks: build throughput and peak memory, window-batch throughput vs a plain numpy copy.

Prints a Markdown table. Usage: `.venv/bin/python benchmarks/bench_dataset.py [--rows 200000] [--synthetic-scale 10]`
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from abaw_hf.data import Annotations, build_from_arrays
from abaw_hf.data.windows import FeatureWindows, WindowCollator

DIMS = {"resnet18": 512, "poster2": 768, "fau": 17}


def matmul_gflops() -> float:
    """fp32 torch.mm rate of two 4096x4096 matrices, best of 5 (the machine's compute limit)."""
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * 4096**3 / best / 1e9


class PeakRss:
    """Samples this process's RSS every few ms; `peak` is the largest seen."""

    def __enter__(self):
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def bench_build(rows: int, shard_size: int, folder: Path) -> dict:
    frames_per_video = 1000
    annotations = Annotations.unlabelled(
        np.array([f"video{i // frames_per_video:04d}" for i in range(rows)]), np.arange(rows) % frames_per_video + 1
    )
    rng = np.random.default_rng(0)
    vectors = {name: rng.standard_normal((rows, dim), dtype=np.float32).astype(np.float16) for name, dim in DIMS.items()}
    present = {"fau": rng.random(rows) > 0.05}
    table_bytes = sum(v.nbytes for v in vectors.values())
    baseline = psutil.Process().memory_info().rss
    with PeakRss() as peak:
        start = time.perf_counter()
        dataset = build_from_arrays(annotations, vectors, folder, present=present, shard_size=shard_size, progress=False)
        seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "rows_per_s": rows / seconds,
        "seconds": seconds,
        "table_mb": table_bytes / 2**20,
        "shard_mb": table_bytes / rows * shard_size / 2**20,
        "peak_extra_mb": (peak.peak - baseline) / 2**20,
        "dataset": dataset,
    }


def bench_windows(dataset, rounds: int = 6, batches_per_round: int = 10, window: int = 32, batch_size: int = 64) -> dict:
    """Median time per [64, 32, 1297] batch: our items + collator vs a numpy copy of the same float16 rows.

    Both run on the same shuffled windows, batch after batch, so that the shared machine's load hits both alike.
    """
    windows = FeatureWindows(dataset, window_size=window, stride=window)
    collate = WindowCollator(windows.feature_dims, window)
    order = np.random.default_rng(0).permutation(len(windows))
    views = {name: windows.column_chunks(name) for name in DIMS}
    buffers = {name: np.empty((batch_size, window, dim), np.float16) for name, dim in DIMS.items()}

    def numpy_copy(indices):
        for position, index in enumerate(indices):
            first, count = (int(v) for v in windows.windows[index])
            for name in DIMS:
                written = 0
                for part in views[name]:  # the shard(s) holding the window
                    low, high = max(first, part.start), min(first + count, part.start + len(part.values))
                    if low < high:
                        piece = part.values[low - part.start : high - part.start]
                        np.copyto(buffers[name][position, written : written + len(piece)], piece)
                        written += len(piece)

    ours, copies = [], []
    for batch_number in range(rounds * batches_per_round):
        indices = order[(batch_number * batch_size) % len(order) :][:batch_size]
        start = time.perf_counter()
        collate(windows.__getitems__(indices))  # what the DataLoader does for one batch
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        numpy_copy(indices)
        copies.append(time.perf_counter() - start)
    ours_s, copy_s = float(np.median(ours)), float(np.median(copies))
    batch_bytes = batch_size * window * sum(DIMS.values()) * 2  # float16 source bytes
    return {
        "windows_per_s": batch_size / ours_s,
        "mb_per_s": batch_bytes / ours_s / 2**20,
        "copy_windows_per_s": batch_size / copy_s,
        "copy_mb_per_s": batch_bytes / copy_s / 2**20,
    }


def bench_synthetic(scale: float) -> dict:
    from abaw_hf.data import make_synthetic_dataset

    start = time.perf_counter()
    splits = make_synthetic_dataset(scale=scale)
    seconds = time.perf_counter() - start
    frames = sum(len(s) for s in splits.values())
    return {"scale": scale, "frames": frames, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shard-size", type=int, default=50_000)
    parser.add_argument("--synthetic-scale", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(psutil.cpu_count(logical=True) or 1)
    gflops = matmul_gflops()
    with tempfile.TemporaryDirectory() as folder:
        build = bench_build(args.rows, args.shard_size, Path(folder) / "ds")
        windows = bench_windows(build.pop("dataset"))
    synthetic = [bench_synthetic(1.0), bench_synthetic(args.synthetic_scale)]
    print(f"Machine: {psutil.cpu_count()} CPU threads; compute limit (fp32 torch.mm 4096², best of 5): {gflops:.0f} GFLOP/s\n")
    print("| benchmark | result | reference | ratio |")
    print("| --- | --- | --- | --- |")
    print(
        f"| build {build['rows']:,} rows × (512+768+17) float16, shards of {args.shard_size:,} | "
        f"{build['rows_per_s']:,.0f} rows/s ({build['seconds']:.2f} s) | target 100,000 rows/s | "
        f"{build['rows_per_s'] / 1e5:.2f}× |"
    )
    print(
        f"| build peak RSS above the in-memory arrays | {build['peak_extra_mb']:.0f} MB | table {build['table_mb']:.0f} MB, "
        f"one shard {build['shard_mb']:.0f} MB | {build['peak_extra_mb'] / build['shard_mb']:.2f} shards |"
    )
    print(
        f"| window batches [64, 32, 1297] from the memory-mapped dataset (float32 out, masks, labels) | "
        f"{windows['windows_per_s']:,.0f} windows/s, {windows['mb_per_s']:,.0f} MB/s | numpy copy of the same float16 "
        f"bytes: {windows['copy_mb_per_s']:,.0f} MB/s | {windows['mb_per_s'] / windows['copy_mb_per_s']:.0%} (target ≥ 50 %) |"
    )
    for item in synthetic:
        print(f"| synthetic dataset, scale {item['scale']:g} | {item['frames']:,} frames in {item['seconds']:.1f} s | | |")


if __name__ == "__main__":
    main()
