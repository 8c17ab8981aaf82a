"""Face detection + alignment frames/s on a 640x360 video, and the fau (MediaPipe blendshape) backend.

Writes a 640x360 video of the astronaut photograph moving and shrinking across the frame, then
times, in one run: decoding alone, whole-frame detection + 112-px alignment (MediaPipe and Haar),
the one-face tracker (whole frame, then around the track where that misses it), and fau on the
112-px crops. Prints a Markdown table with the fp32 ``torch.mm`` rate of this machine measured in
the same run.

    python benchmarks/bench_faces.py [--frames 200] [--device-note "..."]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.data import astronaut

from profiling import mm_flops_per_second
from abaw_hf.extractors import create_extractor
from abaw_hf.faces import FaceDetector, MultiFaceTracker, align_face, iter_video_frames, write_video




def moving_face_frames(count: int, width: int = 640, height: int = 360):
    head = astronaut()[20:260, 110:350]
    for index in range(count):
        phase = index / max(1, count - 1)
        side = int(round(320 - 140 * abs(np.sin(np.pi * phase))))
        canvas = np.full((height, width, 3), 90, np.uint8)
        x, y = int(20 + (width - side - 40) * phase), (height - side) // 2
        canvas[y : y + side, x : x + side] = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        yield canvas


def timed(step, frames) -> tuple[float, int]:
    """Frames per second of ``step(frame) -> found`` over ``frames``, and how many frames had a face."""
    start, found = time.perf_counter(), 0
    for frame in frames:
        found += bool(step(frame))
    return len(frames) / (time.perf_counter() - start), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    rows = []
    limit = mm_flops_per_second(torch.device("cpu")) / 1e9
    with tempfile.TemporaryDirectory() as workdir:
        video = write_video(Path(workdir) / "bench.mp4", moving_face_frames(args.frames), fps=25)

        start = time.perf_counter()
        frames = [frame.image for frame in iter_video_frames(video)]
        rows.append(("decode only (PyAV, 640x360 -> RGB)", len(frames) / (time.perf_counter() - start), len(frames)))

        with FaceDetector("mediapipe") as detector:
            def detect_align(image):
                faces = detector.detect(image)
                return faces and align_face(image, faces[0].landmarks5).shape

            detect_align(frames[0])  # warm-up: graph initialisation
            fps, found = timed(detect_align, frames)
            rows.append(("MediaPipe detect + align 112 (whole frame)", fps, found))

            tracker = MultiFaceTracker(detector, size=112, faces="largest", search_scale=2.5)
            fps, found = timed(lambda image: not tracker.update(image).missing, frames)
            rows.append(("MediaPipe tracker + align 112 (search near the track when missed)", fps, found))

            start = time.perf_counter()
            tracker.reset()
            decoded_and_tracked = sum(not tracked.missing for tracked in tracker.track(iter_video_frames(video)))
            rows.append(("decode + track + align 112 (streamed)", len(frames) / (time.perf_counter() - start), decoded_and_tracked))

            crops = [align_face(image, faces[0].landmarks5) for image in frames[:64] if (faces := detector.detect(image))]

        with FaceDetector("haar") as haar:
            def haar_align(image):
                faces = haar.detect(image)
                return faces and align_face(image, faces[0].landmarks5).shape

            fps, found = timed(haar_align, frames)
            rows.append(("Haar detect + align 112 (boxes only)", fps, found))

        fau = create_extractor("fau")
        fau.extract(crops[:2])  # warm-up
        start = time.perf_counter()
        _, present = fau.extract_with_mask(crops, batch_size=32)
        rows.append(("fau (MediaPipe blendshapes) on 112-px crops", len(crops) / (time.perf_counter() - start), int(present.sum())))
        fau.close()

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(
        f"\nFaces on a {args.frames}-frame 640x360 video, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; fp32 torch.mm 4096^2 rate in this run: {limit:.0f} GFLOP/s "
        "(MediaPipe runs TFLite/XNNPACK graphs whose FLOPs are not counted here)\n"
    )
    print("| stage | frames/s | frames with a face |")
    print("| --- | ---: | ---: |")
    for name, fps, found in rows:
        total = len(crops) if name.startswith("fau") else args.frames
        print(f"| {name} | {fps:,.1f} | {found}/{total} |")
    print(f"\nPeak resident memory of the run (the {args.frames} decoded frames held for timing included): {peak_rss_mb:,.0f} MB")


if __name__ == "__main__":
    main()
