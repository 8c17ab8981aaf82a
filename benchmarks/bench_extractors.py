"""Model-only extractor throughput against the torch.mm compute limit; prints a Markdown table.

    .venv/bin/python benchmarks/bench_extractors.py                      # CPU, fp32, batch 1 and 32
    .venv/bin/python benchmarks/bench_extractors.py --device cuda --autocast bf16 --channels-last

Each extractor is measured in its own process so that peak memory is its own. Random weights: the
speed of a network does not depend on its values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings

import torch

from abaw_hf.extractors import create_extractor, list_extractors
from profiling import (
    PeakMemory,
    current_rss_bytes,
    flops_per_frame,
    frames_per_second,
    mm_flops_per_second,
)

AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
ABAW_FRAMES = 142_333 + 26_876 + 51_159  # s-Aff-Wild2 train + validation + test frames


def measure_one(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    baseline = 0 if device.type == "cuda" else current_rss_bytes()  # the runtime's own share, before the model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights are expected here
        extractor = create_extractor(args.one).to(device).eval()
    channels_last = extractor.channels_last or args.channels_last
    if args.channels_last:
        extractor = extractor.to(memory_format=torch.channels_last)
    result = {"name": args.one, "layout": "NHWC" if channels_last else "NCHW", "params": extractor.num_parameters(), "flops": flops_per_frame(extractor, device)}
    limit_dtype = AUTOCAST[args.autocast] or torch.float32
    for batch_size in args.batch_sizes:
        # The limit is measured right before and after each figure (best of both): on a shared
        # machine the load drifts, and a ratio only holds against a limit taken at the same time.
        before = mm_flops_per_second(device, limit_dtype)
        with PeakMemory(device, baseline) as memory:  # the model, its folded copy and activations
            result[f"fps_{batch_size}"] = frames_per_second(
                extractor, batch_size, device, autocast_dtype=AUTOCAST[args.autocast],
                channels_last=channels_last, min_seconds=args.min_seconds,
            )
        result[f"limit_{batch_size}"] = max(before, mm_flops_per_second(device, limit_dtype))
        result[f"peak_mb_{batch_size}"] = memory.peak_mb
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractors", nargs="+", default=["resnet18", "eac", "poster2", "poster"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=sorted(AUTOCAST), default="none")
    parser.add_argument("--channels-last", action="store_true", help="also for extractors that default to NCHW")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one extractor, print JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    unknown = set(args.extractors) - set(list_extractors())
    if unknown:
        parser.error(f"unknown extractors {sorted(unknown)}; known: {list_extractors()}")
    if args.one:
        print(json.dumps(measure_one(args)))
        return 0

    device = torch.device(args.device)
    limit_dtype = AUTOCAST[args.autocast] or torch.float32
    rows = []
    for name in args.extractors:
        command = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    precision = f"autocast {args.autocast}" if AUTOCAST[args.autocast] else "fp32"
    print(f"Extractors, model only ({where}, {precision}, "
          f"torch {torch.__version__}). Limit: torch.mm of two 4096x4096 {str(limit_dtype).removeprefix('torch.')} "
          "matrices, best of 5, measured just before and after each throughput figure; "
          "% of limit = GFLOPs/frame x frames/s / limit. Peak memory: "
          + ("CUDA max allocated" if device.type == "cuda" else "resident set size over the process's size before the model")
          + ".\n")
    header = "| extractor | memory layout | params (M) | GFLOPs/frame |"
    header += "".join(f" frames/s b{b} | limit b{b} (GFLOP/s) | % of limit b{b} |" for b in args.batch_sizes) + "".join(f" peak memory b{b} (MiB) |" for b in args.batch_sizes)
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for row in rows:
        cells = [row["name"], row["layout"], f"{row['params'] / 1e6:.1f}", f"{row['flops'] / 1e9:.2f}"]
        for b in args.batch_sizes:
            fps, limit = row[f"fps_{b}"], row[f"limit_{b}"]
            cells += [f"{fps:.1f}", f"{limit / 1e9:.0f}", f"{100 * row['flops'] * fps / limit:.0f} %"]
        cells += [f"{row[f'peak_mb_{b}']:.0f}" for b in args.batch_sizes]
        print("| " + " | ".join(cells) + " |")
    if device.type == "cuda":
        largest = max(args.batch_sizes)
        seconds = sum(ABAW_FRAMES / row[f"fps_{largest}"] for row in rows)
        print(f"\nProjection: all {len(rows)} extractors over {ABAW_FRAMES:,} s-Aff-Wild2 frames at batch {largest}: "
              f"{seconds / 60:.1f} min of model time (decoding and face crops not included).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
