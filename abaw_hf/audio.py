"""The sound of a video, the one place it is read: decoded from the container with PyAV, mixed to mono, resampled
to a model's rate and streamed in blocks (never the whole track in memory), and the time of each video frame.

Frame ``k`` (numbered from 1, as in `cropped_aligned`) is at ``(k - 1) / fps`` seconds, ``fps`` the video stream's
average rate; sample 0 of the sound is at 0 s. ``audio:`` extractors (`abaw_hf.extractors.audio_encoders`), the
extraction runner (`abaw_hf.extraction.audio`) and the pipeline all read sound through `iter_audio_blocks` and
`open_audio_source`. A ground-floor module: it imports nothing of abaw_hf.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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
