"""Raw videos -> aligned face crops on disk (the `cropped_aligned` layout) -> the frame extraction.

Each video is decoded as a stream, every face tracked with its own id and aligned (`abaw_hf.faces`), and every
crop saved as `<crops>/<track video>/<frame:05d>.png` (frames numbered from 1, as in Aff-Wild2). A video with
one face track keeps its name; with several, each track is a video of its own, `<video>_face<k>` (in the spirit
of Aff-Wild2's `<video>_left` / `<video>_right`), with all the video's frames: the frames where that face is not
seen are recorded, never dropped, and become rows with missing vectors. Tracks shorter than `min_track_frames`
(a passing false detection) are left out and counted. ``faces`` (all, largest, N) chooses the faces as in the
pipeline. A video whose `faces.json` exists was finished and is skipped on a rerun. With several processes the
videos are split between them. A video that cannot be used (not a video, damaged, no face) is a failed video under
`failed_videos` in the report, and the run goes on with the others (it is tried again on a rerun).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .. import outputs
from ..errors import UserError
from ..data import Annotations
from ..extractors import Extractor
from ..faces import DEFAULT_BACKEND, FaceDetector, TruncatedVideoError, iter_video_frames
from ..faces.settings import FACE_SIZE, MAX_FACES
from .runner import NO_FACE_REASON, ExtractionResult, extract_features, process_state, work_root_for

FACES_MARKER = "faces.json"
CROP_PATTERN = "{video}/{frame:05d}.png"
MIN_TRACK_FRAMES = 3


def track_video_name(video: str, face: int, tracks: int) -> str:
    """The dataset's video id of one face track: the video's own name when it has one track."""
    return video if tracks == 1 else f"{video}_face{face}"


def video_tracks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The face tracks of a `faces.json` record (one written before tracks were recorded is one track)."""
    return record.get("tracks") or [{"video": record["video"], "frames_without_face": record["frames_without_face"]}]


class NoFaceError(UserError, ValueError):
    """A video in which no frame has a face."""


class NoUsableVideoError(UserError, ValueError):
    """Every video given to `extract --video` failed (not a video, damaged, no face); the message says why."""


def video_name(path: str | os.PathLike) -> str:
    return Path(path).stem


def _failure_path(crops_dir: Path, name: str) -> Path:
    return Path(crops_dir) / f".{name}.failed.json"


def _record_failure(crops_dir: Path, path: Path, error: BaseException) -> None:
    """A video that could not be used: its reason, for the report (the run goes on with the other videos)."""
    target = _failure_path(crops_dir, video_name(path))
    shutil.rmtree(Path(crops_dir) / f".{video_name(path)}.tracking", ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"video": video_name(path), "path": str(path), "reason": str(error)}))


def track_video_faces(
    video: str | os.PathLike,
    crops_dir: str | os.PathLike,
    *,
    detector: str = DEFAULT_BACKEND,
    face_size: int = FACE_SIZE,
    faces: str | int = "all",
    min_track_frames: int = MIN_TRACK_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the aligned crops of every face track of one video; returns (and stores in `faces.json`) its frame
    count, its tracks (dataset video id, face id, frames without that face) and the frames without any face.

    Raises `abaw_hf.faces.VideoError` (names the file and the reason) when the video cannot be decoded and
    `NoFaceError` when no frame has a face. A truncated video keeps the frames decoded before the break.
    """
    from ..faces.multi_tracking import MultiFaceTracker

    video = Path(video)
    name = video_name(video)
    marker = Path(crops_dir) / name / FACES_MARKER
    if marker.is_file():
        return json.loads(marker.read_text())
    scratch = Path(crops_dir) / f".{name}.tracking"  # crops by face id, renamed once the tracks are known
    shutil.rmtree(scratch, ignore_errors=True)  # left by an interrupted run
    scratch.mkdir(parents=True)
    frames, missing, truncated, seen = 0, [], None, {}
    with FaceDetector(detector, max_faces=MAX_FACES) as face_detector:
        tracker = MultiFaceTracker(face_detector, size=face_size, faces=faces)
        bar = tqdm(unit="frame", desc=f"faces {video.name}", disable=not progress)
        try:
            for tracked in tracker.track(iter_video_frames(video)):
                frame = tracked.index + 1
                frames += 1
                for face in tracked.faces:
                    seen.setdefault(face.face_id, []).append(frame)
                    (scratch / str(face.face_id)).mkdir(exist_ok=True)
                    Image.fromarray(face.aligned).save(scratch / str(face.face_id) / f"{frame:05d}.png")
                if tracked.missing:
                    missing.append(frame)
                bar.update(1)
        except TruncatedVideoError as error:
            truncated = str(error)  # the frames before the break are kept
        finally:
            bar.close()
        detector_record = {**face_detector.provenance, "face_size": face_size, "faces": str(faces)}
    if frames == len(missing):
        shutil.rmtree(scratch, ignore_errors=True)
        raise NoFaceError(f"{video}: no face found in any of its {frames} frames (detector {detector!r})")
    kept = [face for face, face_frames in seen.items() if len(face_frames) >= min(min_track_frames, frames)]
    kept = kept or [max(seen, key=lambda face: len(seen[face]))]  # a very short video keeps its longest track
    tracks = []
    for face in kept:
        track_name = track_video_name(name, face, len(kept))
        target = Path(crops_dir) / track_name
        target.mkdir(parents=True, exist_ok=True)
        for crop in (scratch / str(face)).iterdir():
            os.replace(crop, target / crop.name)
        present = set(seen[face])
        tracks.append({"video": track_name, "face": face, "frames_with_face": len(present),
                       "frames_without_face": [f for f in range(1, frames + 1) if f not in present]})
    shutil.rmtree(scratch, ignore_errors=True)
    record = {
        "video": name,
        "path": str(video.resolve()),
        "frames": frames,
        "frames_without_face": missing,
        "tracks": tracks,
        "short_tracks_left_out": len(seen) - len(kept),
        "truncated": truncated,
        "faces": detector_record,
    }
    marker.parent.mkdir(parents=True, exist_ok=True)
    partial = marker.with_name(marker.name + ".tmp")
    partial.write_text(json.dumps(record, indent=2))
    os.replace(partial, marker)
    return record


def extract_video_features(
    videos: Sequence[str | os.PathLike],
    extractors: Sequence[Extractor],
    output_dir: str | os.PathLike,
    *,
    detector: str = DEFAULT_BACKEND,
    face_size: int = FACE_SIZE,
    faces: str | int = "all",
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> ExtractionResult:
    """Videos -> tracked, aligned faces -> `extract_features` (options go there); one row per decoded frame of
    each face track (`track_video_faces`)."""
    videos = [Path(v) for v in videos]
    names = [video_name(v) for v in videos]
    if len(set(names)) != len(names):
        raise ValueError(f"videos need distinct file names (the name is the dataset's video id): {names}")
    for path in videos:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video file")
    state = process_state()
    crops_dir = work_root_for(output_dir) / "faces"
    if state.is_main_process:
        outputs.claim(crops_dir.parent, "--output's work folder")  # only a folder abaw_hf wrote holds the crops
        if overwrite:  # every video is tracked again from scratch
            shutil.rmtree(crops_dir, ignore_errors=True)
        for name in names:
            _failure_path(crops_dir, name).unlink(missing_ok=True)  # a video that failed before is tried again
    state.wait_for_everyone()
    with state.split_between_processes(videos) as mine:
        for path in mine:
            try:
                track_video_faces(path, crops_dir, detector=detector, face_size=face_size, faces=faces,
                                  progress=progress)
            except UserError as error:  # one bad video is a failed video in the report; the others go on
                _record_failure(crops_dir, path, error)
    state.wait_for_everyone()

    failed = [json.loads(_failure_path(crops_dir, name).read_text()) for name in names
              if _failure_path(crops_dir, name).is_file()]
    if len(failed) == len(names):
        shown = "; ".join(f"{entry['path']}: {entry['reason']}" for entry in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        raise NoUsableVideoError(f"no usable video among the {len(names)} given: {shown}{more}")
    names = [name for name in names if not _failure_path(crops_dir, name).is_file()]
    videos = [path for path in videos if video_name(path) in names]
    records = [json.loads((crops_dir / name / FACES_MARKER).read_text()) for name in names]
    tracks = [(r, track) for r in records for track in video_tracks(r)]
    video_column = np.concatenate([[track["video"]] * r["frames"] for r, track in tracks])
    frame_column = np.concatenate([np.arange(1, r["frames"] + 1) for r, _ in tracks])
    rows = Annotations.unlabelled(video_column, frame_column, source=", ".join(str(v) for v in videos))
    known_missing = {(track["video"], frame): NO_FACE_REASON for _, track in tracks for frame in track["frames_without_face"]}
    report_extra = {
        "videos_decoded": [
            {k: r[k] for k in ("video", "path", "frames", "truncated")}
            | {"frames_without_face": len(r["frames_without_face"]), "face_tracks": [t["video"] for t in video_tracks(r)]}
            for r in records
        ],
        "failed_videos": failed,
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
        audio_sources=_audio_sources(extractors, tracks),
        **options,
    )


def _audio_sources(extractors, tracks) -> dict | None:
    """Each face track's sound is its video's own (``audio:`` extractors); None when no extractor reads sound."""
    if not any(getattr(e, "modality", "image") == "audio" for e in extractors):
        return None
    from .audio import sources_from_paths

    return sources_from_paths({track["video"]: record["path"] for record, track in tracks})
