"""Streaming video decoding with PyAV: one RGB frame at a time, never the whole video in memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from ..errors import UserError

# Demuxers that open files which are not videos: single images and plain text ("tty" renders text).
_NON_VIDEO_FORMATS = {"tty", "image2", "image2pipe", "gif_pipe", "lavfi"}


class VideoError(UserError, ValueError):
    """A video file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class EmptyVideoError(VideoError):
    """The file has 0 bytes."""


class NotAVideoError(VideoError):
    """The file is not a video container with a video stream (text, image, audio, unknown bytes)."""


class CorruptVideoError(VideoError):
    """A video container that is truncated or damaged (cannot be opened, or decoding breaks off)."""


class TruncatedVideoError(CorruptVideoError):
    """Frames are missing from the file: fewer frames' data than the container announces (or, for a container that
    gives only a duration, the last frame ends well before it); the frames before were yielded."""

    def __init__(self, path: str | os.PathLike, frames_decoded: int, frames_expected: int):
        self.frames_decoded = frames_decoded
        self.frames_expected = frames_expected
        super().__init__(path, f"truncated: decoded {frames_decoded} of the {frames_expected} frames the container announces")


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # 0-based position in decoding order
    timestamp: float | None  # seconds, from the stream's presentation time
    image: np.ndarray  # uint8 [H, W, 3] RGB


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float | None
    frames_expected: int | None  # from the container header, None when it does not say
    duration: float | None  # seconds


def _looks_like_video_container(path: Path) -> bool:
    """Magic bytes of the common video containers, to tell a broken video from a non-video."""
    with open(path, "rb") as handle:
        head = handle.read(189)
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide")  # MP4 / MOV / 3GP
        or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska / WebM
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[:4] == b"OggS"
        or head[:3] == b"FLV"
        or (head[:1] == b"\x47" and head[188:189] == b"\x47")  # MPEG-TS packets of 188 bytes
    )


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.is_dir():
        raise NotAVideoError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise EmptyVideoError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        if _looks_like_video_container(path):
            raise CorruptVideoError(path, f"truncated or corrupt video container ({error.strerror})") from error
        raise NotAVideoError(path, f"not a video file ({error.strerror})") from error
    format_name = container.format.name
    if format_name in _NON_VIDEO_FORMATS or format_name.endswith("_pipe"):
        container.close()
        raise NotAVideoError(path, f"not a video file (FFmpeg reads it as '{format_name}', an image or text format)")
    if not container.streams.video:
        kinds = ", ".join(stream.type for stream in container.streams) or "none"
        container.close()
        raise NotAVideoError(path, f"no video stream (streams: {kinds})")
    return container


def _announced_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """Length of the video stream in seconds as the header states it, None when it does not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    # The container duration is the longest stream: only trust it when video is the only stream.
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _expected_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    seconds = _announced_seconds(container, stream)
    return int(round(seconds * float(rate))) if rate and seconds else None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and announced length of a video, without decoding it."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        duration = container.duration / av.time_base if container.duration else None
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else None,
            frames_expected=_expected_frames(container, stream),
            duration=duration,
        )


def iter_video_frames(path: str | os.PathLike, truncation_tolerance: float = 0.02) -> Iterator[DecodedFrame]:
    """Yield the frames of ``path`` as RGB arrays, one at a time.

    Raises ``FileNotFoundError``, ``EmptyVideoError``, ``NotAVideoError`` or ``CorruptVideoError``
    before the first frame, ``CorruptVideoError`` where decoding breaks, and ``TruncatedVideoError``
    after the last frame when frames are missing from the file. The one rule: a container that counts its
    frames (MP4, AVI) is truncated when the file holds fewer frames' data (packets) than it announces (more than
    ``truncation_tolerance`` of them, and at least 2); frames the decoder drops from packets that are there (an
    edit list's pre-roll, e.g. after a cut without re-encoding) are not missing, so an intact video whose count
    over-announces what decodes is not reported. A container that gives only a duration (Matroska, WebM) is
    truncated when the last frame ends that much before it.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        expected = _expected_frames(container, stream)
        announced_seconds = _announced_seconds(container, stream)
        rate = stream.average_rate or stream.guessed_rate
        start_time = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        time_base: Fraction | None = stream.time_base
        index, packets, last_timestamp = 0, 0, None
        try:
            for packet in container.demux(stream):
                packets += packet.size > 0  # the empty packet at the end only flushes the decoder
                for frame in packet.decode():
                    timestamp = float(frame.pts * time_base) if frame.pts is not None and time_base else None
                    last_timestamp = timestamp if timestamp is not None else last_timestamp
                    yield DecodedFrame(index=index, timestamp=timestamp, image=frame.to_ndarray(format="rgb24"))
                    index += 1
        except av.FFmpegError as error:
            raise CorruptVideoError(path, f"decoding failed after frame {index} ({error.strerror})") from error
        if index == 0:
            raise CorruptVideoError(path, "the video stream holds no decodable frame")
        if stream.frames:
            # The container indexes every frame (MP4, AVI): frames are missing when their data is (the packets).
            if expected - packets > max(1, truncation_tolerance * expected):
                raise TruncatedVideoError(path, frames_decoded=index, frames_expected=expected)
        elif announced_seconds and last_timestamp is not None and rate:
            # Only a duration (Matroska, WebM): compare times, which also holds for variable frame rates.
            frame_interval = 1.0 / float(rate)
            shortfall = announced_seconds - (last_timestamp - start_time + frame_interval)
            if shortfall > max(2 * frame_interval, truncation_tolerance * announced_seconds):
                raise TruncatedVideoError(path, frames_decoded=index, frames_expected=expected or index)
    finally:
        container.close()


def write_video(path: str | os.PathLike, frames, fps: int = 25, codec: str = "libx264") -> Path:
    """Write RGB uint8 frames (an iterable of ``[H, W, 3]``, even width and height) to a video file with PyAV."""
    path = Path(path)
    stream = None
    with av.open(str(path), mode="w") as container:
        for image in frames:
            if stream is None:
                if image.shape[0] % 2 or image.shape[1] % 2:
                    raise ValueError(f"{path}: frames of {image.shape[1]}x{image.shape[0]}; yuv420p video needs even width and height")
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return path
