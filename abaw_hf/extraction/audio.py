"""The sound of a video, the one place it is read: decoded from the container with PyAV, mixed to mono, resampled
to a model's rate and streamed in blocks (never the whole track in memory); the time of each video frame; and which
raw video holds the sound of a `cropped_aligned` folder (Aff-Wild2's naming).

Frame ``k`` (numbered from 1, as in `cropped_aligned`) is at ``(k - 1) / fps`` seconds, ``fps`` the video stream's
average rate; sample 0 of the sound is at 0 s. ``audio:`` extractors (`abaw_hf.extractors.audio_encoders`), the
extraction runner and the pipeline all read sound through `iter_audio_blocks` and `open_audio_source`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".ts")
# Aff-Wild2 annotates each person of a two-person video as its own video; both take the sound of the one file.
_PERSON_SUFFIX = re.compile(r"_(left|right)$")
NO_VIDEOS_REASON = "no --videos folder given"


class AudioProblem(Exception):
    """A video whose sound cannot be used (no audio stream, not decodable); its rows get missing vectors."""


@dataclass(frozen=True)
class AudioSource:
    """Where one dataset video's sound is: a media file and its frame rate, or the reason there is none."""

    path: str | None
    fps: float | None = None
    reason: str | None = None

    def frame_times(self, frames: Iterable[int]) -> np.ndarray:
        """Seconds of frames numbered from 1 (``cropped_aligned``): ``(k - 1) / fps``."""
        return (np.asarray(list(frames), dtype=np.float64) - 1.0) / float(self.fps)


def open_audio_source(path: str | os.PathLike) -> AudioSource:
    """The sound of a media file with its video frame rate, or an `AudioSource` that says why there is none."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                kinds = ", ".join(stream.type for stream in container.streams) or "none"
                return AudioSource(None, reason=f"{path.name}: no audio stream (streams: {kinds})")
            video = container.streams.video[0] if container.streams.video else None
            rate = (video.average_rate or video.guessed_rate) if video is not None else None
            if not rate:
                return AudioSource(None, reason=f"{path.name}: no video stream to time the frames by")
            return AudioSource(str(path), fps=float(rate))
    except (av.FFmpegError, OSError) as error:
        return AudioSource(None, reason=f"{path.name}: cannot be opened ({getattr(error, 'strerror', None) or error})")


def iter_audio_blocks(path: str | os.PathLike, sampling_rate: int) -> Iterator[np.ndarray]:
    """The sound of ``path`` as float32 mono blocks at ``sampling_rate`` Hz, in order (first sample at 0 s).
    A stream that breaks off ends the blocks with an AudioProblem naming the file."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise AudioProblem(f"{path.name}: cannot be opened ({getattr(error, 'strerror', None) or error})") from error
    try:
        if not container.streams.audio:
            raise AudioProblem(f"{path.name}: no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sampling_rate))
        try:
            for frame in container.decode(stream):
                frame.pts = None  # the resampler follows the samples, not gaps in the timestamps
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        except av.FFmpegError as error:
            raise AudioProblem(f"{path.name}: audio decoding failed ({error.strerror})") from error
    finally:
        container.close()


def source_video_name(video: str) -> str:
    """The raw video a dataset video takes its sound from: ``video5_left`` / ``video5_right`` -> ``video5``."""
    return _PERSON_SUFFIX.sub("", video)


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def find_video(folder: Path, video: str) -> Path | None:
    """``folder/<video>.<suffix>`` (a video suffix), else the same for Aff-Wild2's person-less name."""
    for name in dict.fromkeys([video, source_video_name(video)]):
        if not _safe_name(name):  # a name read from data is never a path of its own
            continue
        for suffix in VIDEO_SUFFIXES:
            for candidate in (folder / f"{name}{suffix}", folder / f"{name}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def sources_from_folder(videos: Iterable[str], folder: str | os.PathLike | None) -> dict[str, AudioSource]:
    """Each dataset video's sound from ``--videos DIR`` (Aff-Wild2 naming); a video without its file gets the reason.

    ``DIR`` that is not a folder, or that holds none of the videos, is a UserError naming the flag and the first
    expected file: that is a wrong folder, not a few missing files."""
    videos = list(dict.fromkeys(videos))
    if folder is None:
        return {video: AudioSource(None, reason=NO_VIDEOS_REASON) for video in videos}
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--videos {folder}: not a folder (give the folder of the raw videos, e.g. video5.mp4)")
    sources, found = {}, 0
    for video in videos:
        path = find_video(folder, video)
        if path is None:
            sources[video] = AudioSource(None, reason=f"no {source_video_name(video)}.* in --videos {folder}")
        else:
            found += 1
            sources[video] = open_audio_source(path)
    if videos and not found:
        first = videos[0]
        raise UserError(f"--videos {folder}: holds none of the videos; e.g. {first!r} needs "
                        f"{folder / source_video_name(first)}.mp4 (or another video suffix)")
    return sources


def sources_from_paths(paths: Mapping[str, str | os.PathLike]) -> dict[str, AudioSource]:
    """Each dataset video's sound from a known media file (``abaw-hf extract --video``: the video itself)."""
    opened: dict[str, AudioSource] = {}
    return {video: opened.setdefault(str(path), open_audio_source(path)) for video, path in paths.items()}


def check_audio_sources(extractors, audio_sources: Mapping[str, AudioSource] | None) -> dict[str, dict] | None:
    """The sources as plain data (for the resume fingerprint), None without ``audio:`` extractors; ``audio:``
    extractors without any source are a UserError that says to give ``--videos``."""
    audio = [e for e in extractors if getattr(e, "modality", "image") == "audio"]
    if not audio:
        return None
    if audio_sources is None:
        raise UserError(f"{', '.join(e.spec for e in audio)} reads the videos' sound: give --videos DIR (the raw "
                        "videos of the frames folder, e.g. DIR/video5.mp4 for video5_left) or extract with --video")
    return {video: {"path": s.path, "fps": s.fps, "reason": s.reason} for video, s in sorted(audio_sources.items())}


def fill_audio_vectors(shard, extractors, ordered, audio_sources: Mapping[str, dict]) -> None:
    """Fill the ``audio:`` columns of one shard (`runner._ShardBuffer`): each video's frames from its sound; rows
    without sound stay missing, and `shard.missing_audio` says why, per video and extractor."""
    videos = np.asarray(ordered.video[shard.start : shard.stop])
    frames = np.asarray(ordered.frame[shard.start : shard.stop])
    for j, extractor in enumerate(extractors):
        if getattr(extractor, "modality", "image") != "audio":
            continue
        for video in dict.fromkeys(videos.tolist()):
            rows = np.flatnonzero(videos == video)
            source = AudioSource(**audio_sources.get(video, {"path": None, "reason": "no sound source"}))
            note = {"video": video, "extractor": extractor.name, "frames": int(len(rows))}
            if source.path is None:
                shard.missing_audio.append({**note, "reason": source.reason})
                continue
            vectors, present, problem = extractor.frame_vectors(source.path, source.frame_times(frames[rows]))
            shard.vectors[j][rows] = vectors
            shard.present[j][rows] = present
            if not present.all():
                reason = problem or "no sound at these frames' times (the sound track ends before the video)"
                shard.missing_audio.append({**note, "frames": int((~present).sum()), "reason": reason})
