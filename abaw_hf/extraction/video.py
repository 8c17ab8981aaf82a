"""Raw videos -> aligned face crops on disk (the `cropped_aligned` layout) -> the frame extraction.

Each video is decoded as a stream, its most prominent face tracked and aligned (`abaw_hf.faces`), and every
crop saved as `<crops>/<video>/<frame:05d>.png` (frames numbered from 1, as in Aff-Wild2). Frames without
a face are recorded, never dropped: they become rows with missing vectors. A video whose `faces.json`
exists was finished and is skipped on a rerun. With several processes the videos are split between them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..errors import UserError
from ..data import Annotations
from ..extractors import Extractor
from ..faces import FaceDetector, FaceTracker, TruncatedVideoError, iter_video_frames
from .runner import NO_FACE_REASON, ExtractionResult, extract_features, process_state, work_root_for

FACES_MARKER = "faces.json"
CROP_PATTERN = "{video}/{frame:05d}.png"


class NoFaceError(UserError, ValueError):
    """A video in which no frame has a face."""


def video_name(path: str | os.PathLike) -> str:
    return Path(path).stem


def track_video_faces(
    video: str | os.PathLike,
    crops_dir: str | os.PathLike,
    *,
    detector: str = "mediapipe",
    face_size: int = 112,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the aligned crops of one video; returns (and stores in `faces.json`) its frame count and faceless frames.

    Raises `abaw_hf.faces.VideoError` (names the file and the reason) when the video cannot be decoded and
    `NoFaceError` when no frame has a face. A truncated video keeps the frames decoded before the break.
    """
    video = Path(video)
    out = Path(crops_dir) / video_name(video)
    marker = out / FACES_MARKER
    if marker.is_file():
        return json.loads(marker.read_text())
    out.mkdir(parents=True, exist_ok=True)
    frames, missing, truncated = 0, [], None
    with FaceDetector(detector, max_faces=4) as face_detector:
        tracker = FaceTracker(face_detector, size=face_size)
        bar = tqdm(unit="frame", desc=f"faces {video.name}", disable=not progress)
        try:
            for tracked in tracker.track(iter_video_frames(video)):
                frame = tracked.index + 1
                frames += 1
                if tracked.missing:
                    missing.append(frame)
                else:
                    Image.fromarray(tracked.aligned).save(out / f"{frame:05d}.png")
                bar.update(1)
        except TruncatedVideoError as error:
            truncated = str(error)  # the frames before the break are kept
        finally:
            bar.close()
        detector_record = {**face_detector.provenance, "face_size": face_size}
    if frames == len(missing):
        raise NoFaceError(f"{video}: no face found in any of its {frames} frames (detector {detector!r})")
    record = {
        "video": video_name(video),
        "path": str(video.resolve()),
        "frames": frames,
        "frames_without_face": missing,
        "truncated": truncated,
        "faces": detector_record,
    }
    partial = marker.with_name(marker.name + ".tmp")
    partial.write_text(json.dumps(record, indent=2))
    os.replace(partial, marker)
    return record


def extract_video_features(
    videos: Sequence[str | os.PathLike],
    extractors: Sequence[Extractor],
    output_dir: str | os.PathLike,
    *,
    detector: str = "mediapipe",
    face_size: int = 112,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> ExtractionResult:
    """Videos -> tracked, aligned faces -> `extract_features` (options go there); one row per decoded frame."""
    videos = [Path(v) for v in videos]
    names = [video_name(v) for v in videos]
    if len(set(names)) != len(names):
        raise ValueError(f"videos need distinct file names (the name is the dataset's video id): {names}")
    for path in videos:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video file")
    state = process_state()
    crops_dir = work_root_for(output_dir) / "faces"
    if overwrite and state.is_main_process:
        for name in names:
            marker = crops_dir / name / FACES_MARKER
            marker.unlink(missing_ok=True)
    state.wait_for_everyone()
    with state.split_between_processes(videos) as mine:
        for path in mine:
            track_video_faces(path, crops_dir, detector=detector, face_size=face_size, progress=progress)
    state.wait_for_everyone()

    records = [json.loads((crops_dir / name / FACES_MARKER).read_text()) for name in names]
    video_column = np.concatenate([[r["video"]] * r["frames"] for r in records])
    frame_column = np.concatenate([np.arange(1, r["frames"] + 1) for r in records])
    rows = Annotations.unlabelled(video_column, frame_column, source=", ".join(str(v) for v in videos))
    known_missing = {(r["video"], frame): NO_FACE_REASON for r in records for frame in r["frames_without_face"]}
    report_extra = {
        "videos_decoded": [
            {k: r[k] for k in ("video", "path", "frames", "truncated")} | {"frames_without_face": len(r["frames_without_face"])}
            for r in records
        ]
    }
    return extract_features(
        rows,
        crops_dir,
        extractors,
        output_dir,
        image_pattern=CROP_PATTERN,
        known_missing=known_missing,
        provenance_extra={"faces": records[0]["faces"]},
        report_extra=report_extra,
        overwrite=overwrite,
        progress=progress,
        **options,
    )
