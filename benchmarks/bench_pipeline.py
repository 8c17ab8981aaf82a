"""End-to-end frames/s of the inference pipeline on a 10-second 640x360 video, split by stage.

The paper's best extractor set (ResNet-18 + POSTER V2 + OpenFace-style AUs from MediaPipe, random
weights: timing only) and the paper's fusion model (affine 384, 4 layers, 4 heads, 16-frame
windows). Writes a video of the astronaut photograph drifting across a 640x360 frame, runs the
pipeline once to warm up and once timed, and prints a Markdown table: seconds and ms/frame of
decode / faces / each extractor / fusion / post-processing, end-to-end frames/s, one photograph's
latency, peak memory,
and the extractors' achieved GFLOP/s next to the fp32 ``torch.mm`` rate measured in the same run.

    python benchmarks/bench_pipeline.py [--seconds 10] [--device cuda]
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.data import astronaut
from torch.utils.flop_counter import FlopCounterMode

from profiling import mm_flops_per_second
from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.faces import write_video
from abaw_hf.pipeline import AffectPipeline

WIDTH, HEIGHT = 640, 360
PAPER_EXTRACTORS = {"resnet18": ("resnet18", "msceleb", 512), "poster2": ("poster2", None, 768), "fau": ("fau", "mediapipe", 17)}




def drifting_face_frames(count: int):
    face = np.asarray(Image.fromarray(astronaut()).resize((HEIGHT, HEIGHT)))
    for index in range(count):
        frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
        x = int((WIDTH - HEIGHT) * (0.5 + 0.5 * np.sin(index / 15)))
        frame[:, x : x + HEIGHT] = face
        yield frame


def paper_model() -> AbawFusionModel:
    provenance = {
        feature: {"name": name, "variant": variant, "dim": dim} for feature, (name, variant, dim) in PAPER_EXTRACTORS.items()
    }
    config = AbawFusionConfig(
        feature_dims={feature: dim for feature, (_, _, dim) in PAPER_EXTRACTORS.items()},
        hidden_size=384, num_hidden_layers=4, num_attention_heads=4, mlp_ratio=4.0, max_window=129, extractors=provenance,
    )
    return AbawFusionModel(config).eval()


def extractor_gflop_per_face(pipeline: AffectPipeline) -> dict[str, float]:
    """Counted (not quoted) forward FLOPs of each torch extractor for one face; fau runs in MediaPipe (not counted)."""
    counts = {}
    for name, extractor in pipeline.extractors.items():
        if not extractor.needs_checkpoint:
            continue
        size = extractor.preprocess_cfg.input_size
        pixels = torch.zeros(1, 3, size, size, device=pipeline.device)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            extractor(pixels)
        counts[name] = counter.get_total_flops() / 1e9
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    device = torch.device(args.device)
    frames = int(round(args.seconds * args.fps))

    mm_before = mm_flops_per_second(device) / 1e9
    with tempfile.TemporaryDirectory() as scratch:
        video = write_video(Path(scratch) / "bench.mp4", drifting_face_frames(frames), fps=args.fps)
        warm = write_video(Path(scratch) / "warm.mp4", drifting_face_frames(8), fps=args.fps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random extractor weights are expected here
            pipeline = AffectPipeline(paper_model(), device=device, window=16, max_gap=8, batch_size=args.batch_size)
        pipeline(warm)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        table = pipeline(video)
        total = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        timings, extractor_timings = dict(pipeline.timings), dict(pipeline.extractor_timings)  # of the video run
        gflop = extractor_gflop_per_face(pipeline)
        photo = astronaut()
        image_seconds = []
        for _ in range(3):
            start = time.perf_counter()
            pipeline(photo)
            image_seconds.append(time.perf_counter() - start)
        pipeline.close()
    mm_rate = max(mm_before, mm_flops_per_second(device) / 1e9)  # the machine is shared: the better of before and after

    faces = int(table["face_found"].sum())
    stages = [(stage, seconds) for stage, seconds in timings.items() if stage != "extractors"]
    stages[2:2] = [(f"extractor `{name}`", seconds) for name, seconds in extractor_timings.items()]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    print(f"### Pipeline, {args.seconds:g} s {WIDTH}x{HEIGHT} video ({frames} frames), {device_name}, "
          f"{torch.get_num_threads()} torch threads")
    print()
    print("| stage | seconds | ms / frame | share |")
    print("| --- | ---: | ---: | ---: |")
    for stage, seconds in stages:
        print(f"| {stage} | {seconds:.2f} | {1000 * seconds / frames:.1f} | {100 * seconds / total:.0f}% |")
    print(f"| **end to end** | **{total:.2f}** | **{1000 * total / frames:.1f}** | **{frames / total:.2f} frames/s** |")
    print()
    torch_extractor_seconds = sum(extractor_timings[name] for name in gflop)
    achieved = sum(gflop.values()) * faces / torch_extractor_seconds if torch_extractor_seconds else float("nan")
    print(f"- one 512x512 photograph end to end: {1000 * min(image_seconds):.0f} ms (best of 3)")
    print(f"- faces found: {faces} of {frames} frames")
    print(f"- counted extractor FLOPs per face: " + ", ".join(f"{name} {value:.2f} GFLOP" for name, value in gflop.items()))
    print(f"- torch extractors run at {achieved:.1f} GFLOP/s; fp32 torch.mm 4096x4096 (best of 5, same run): "
          f"{mm_rate:.1f} GFLOP/s, better of before/after ({100 * achieved / mm_rate:.0f}% of it)")
    print(f"- peak RSS {rss_after:.0f} MiB (before the timed run {rss_before:.0f} MiB)")


if __name__ == "__main__":
    main()
