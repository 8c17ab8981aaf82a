"""The sound of a dataset's videos: which raw video holds the sound of a `cropped_aligned` folder (Aff-Wild2's
naming), the sources as plain data for the resume fingerprint, and each shard's ``audio:`` columns.

Reading the sound itself (PyAV, mono, resampled, in blocks; the time of each video frame) is `abaw_hf.audio`, the
one place, below the extractors that encode it; its names are re-exported here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..audio import AudioProblem, AudioSource, iter_audio_blocks, open_audio_source  # noqa: F401  re-exported
from ..errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".ts")
# Aff-Wild2 annotates each person of a two-person video as its own video; both take the sound of the one file.
_PERSON_SUFFIX = re.compile(r"_(left|right)$")
NO_VIDEOS_REASON = "no --videos folder given"


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
