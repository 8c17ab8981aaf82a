"""Face detectors on real photos (found faces, false detections) and video speed with 1, 2 and 5 faces.

The real set (``tests/real_faces.py``): the insightface wheel's six-person group photo (colour, grayscale,
and at 0.3x with faces of 30-40 px), scikit-image's astronaut and cameraman (three-quarter profile, gray),
a 112-px aligned face on a canvas, video frames (the Space's H.264 example clip; a video of three real faces),
100 LFW faces (25-px grayscale, enlarged to 60 px) and as negatives the
100 LFW non-face patches plus 14 photos without faces. Detectors: MediaPipe's FaceLandmarker (the old
default), the same searching tiles when it finds nothing, OpenCV's Haar cascade, and our MTCNN at two
O-Net thresholds. Speed: 640x360 frames made from real faces, through ``MultiFaceTracker`` with MediaPipe and
with MTCNN, with and without the MediaPipe mesh on each face.
Prints two Markdown tables and the machine's load.

    python benchmarks/bench_detectors.py [--frames 40] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from real_faces import crowd_frames, face_hits, labelled_photos  # noqa: E402

from abaw_hf.faces import FaceDetector, MultiFaceTracker  # noqa: E402
from abaw_hf.faces.mtcnn import MtcnnDetector  # noqa: E402
from abaw_hf.faces.wild import WildFaceDetector  # noqa: E402

KINDS = ("group", "grayscale", "small", "frontal", "turned", "video", "lfw")


def detection_table(photos) -> list[str]:
    detectors = {
        "MediaPipe FaceLandmarker (old default)": lambda: FaceDetector("mediapipe", max_faces=10),
        "MediaPipe + tiles when none found": lambda: FaceDetector("mediapipe", max_faces=10, small_faces=True),
        "OpenCV Haar cascade": lambda: FaceDetector("haar", max_faces=10),
        "MTCNN, O-Net 0.8 (new default)": lambda: MtcnnDetector(),
        "MTCNN, O-Net 0.9": lambda: MtcnnDetector(thresholds=(0.6, 0.7, 0.9)),
    }
    header = "| detector | " + " | ".join(f"{kind} found" for kind in KINDS) + " | all found | false detections | ms / photo |"
    lines = [header, "|" + " --- |" * 1 + " ---: |" * (len(KINDS) + 3)]
    totals = {kind: sum(len(p.faces) for p in photos if p.kind == kind) for kind in KINDS}
    for name, make in detectors.items():
        detector = make()
        detector.detect(photos[0].image)  # warm-up
        found = dict.fromkeys(KINDS, 0)
        false, start = 0, time.perf_counter()
        for photo in photos:
            hits, misses = face_hits([face.box for face in detector.detect(photo.image)], photo.faces)
            false += misses
            if photo.kind in found:
                found[photo.kind] += hits
        elapsed = (time.perf_counter() - start) / len(photos) * 1000
        all_found = sum(found.values())
        cells = " | ".join(f"{found[kind]}/{totals[kind]}" for kind in KINDS)
        lines.append(f"| {name} | {cells} | {all_found}/{sum(totals.values())} | {false} | {elapsed:.0f} |")
        detector.close()
    return lines


def frames_per_second(make_tracker, frames) -> tuple[float, float]:
    """(frames/s, mean faces reported per frame) of a tracker over ``frames`` (first 4 frames warm up)."""
    tracker = make_tracker()
    for _ in (tracker.track(frames[:4])):
        pass
    tracker.reset()
    start, reported = time.perf_counter(), 0
    for result in tracker.track(frames):
        reported += len(result.faces)
    return len(frames) / (time.perf_counter() - start), reported / len(frames)


def speed_table(frame_count: int) -> list[str]:
    mediapipe = FaceDetector("mediapipe", max_faces=10)
    mtcnn = MtcnnDetector()
    wild = WildFaceDetector()
    trackers = {
        "MultiFaceTracker + MediaPipe": lambda: MultiFaceTracker(mediapipe),
        "MultiFaceTracker + MTCNN (5 points)": lambda: MultiFaceTracker(mtcnn),
        "MultiFaceTracker + MTCNN + MediaPipe mesh": lambda: MultiFaceTracker(wild),
    }
    counts = (1, 2, 5)
    lines = ["| tracker | " + " | ".join(f"{n} face{'s' * (n > 1)}: frames/s (faces/frame)" for n in counts)
             + " | ms per extra face |", "| --- |" + " ---: |" * (len(counts) + 1)]
    videos = {n: crowd_frames(n, frame_count) for n in counts}
    for name, make in trackers.items():
        rates = {n: frames_per_second(make, videos[n]) for n in counts}
        per_face = (1000 / rates[5][0] - 1000 / rates[1][0]) / 4
        cells = " | ".join(f"{rates[n][0]:.1f} ({rates[n][1]:.1f})" for n in counts)
        lines.append(f"| {name} | {cells} | {per_face:.0f} |")
    mediapipe.close()
    wild.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    photos = labelled_photos()
    print(f"{len(photos)} photos, {sum(len(p.faces) for p in photos)} faces; "
          f"{sum(1 for p in photos if not p.faces)} without faces\n")
    print("\n".join(detection_table(photos)))
    print()
    print("\n".join(speed_table(args.frames)))
    print(f"\n{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
