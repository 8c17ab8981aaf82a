"""What the pipeline reads: video files, image files and arrays, each turned into `Frame`s of uint8 RGB pixels.

Pixels come from the one decoder of the package (`abaw_hf.faces.images`: images, `abaw_hf.faces.video`: videos),
the same that feature extraction uses, so a face looks the same to the extractors in training and in prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..faces.images import DEFAULT_MAX_IMAGE_PIXELS, IMAGE_SUFFIXES, ImageProblem, as_rgb_uint8, read_image_file
from .errors import ImageReadError, PipelineError


@dataclass(frozen=True)
class Frame:
    """One input frame: where it comes from, its frame number and time, its pixels (None when unreadable)."""

    source: str
    index: int
    timestamp: float | None
    image: np.ndarray | None  # uint8 [H, W, 3] RGB; None when the image file could not be used (`unreadable` says why)
    unreadable: ImageReadError | None = None


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file as uint8 RGB, decoded by `abaw_hf.faces.images.read_image_file` (the one decoding policy);
    a file that cannot be used is an ImageReadError naming it and the reason."""
    try:
        return read_image_file(path, max_pixels).pixels
    except ImageProblem as problem:
        raise ImageReadError(f"{path}: {problem}", path=str(path), reason=str(problem)) from None


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def image_folder(path: Path) -> list[Path]:
    """The image files of a folder, sorted by name; a folder without any is an error."""
    images = sorted(p for p in path.iterdir() if is_image_path(p))
    if not images:
        raise PipelineError(f"{path}: folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def array_frame(image: np.ndarray, source: str, index: int, timestamp: float | None = None) -> Frame:
    """An RGB (gray, RGBA) uint8 array as a frame; a wrong dtype or shape is a PipelineError."""
    try:
        return Frame(source, index, timestamp, as_rgb_uint8(image, source=f"{source} frame {index}"))
    except (TypeError, ValueError) as error:
        raise PipelineError(str(error)) from error


def image_frames(items: Iterable) -> Iterator[Frame]:
    """Independent images (paths or arrays) as frames; one unreadable file is a frame that says why, not an error."""
    for position, item in enumerate(items):
        if isinstance(item, np.ndarray):
            yield array_frame(item, f"image_{position}", position)
            continue
        name = Path(item).name
        try:
            yield Frame(name, position, None, read_image(item))
        except ImageReadError as error:
            yield Frame(name, position, None, None, unreadable=error)


@dataclass
class VideoProblem:
    """The error that ended decoding after some frames (truncated or damaged video), if any. Whether frames are
    missing is decided once, by `abaw_hf.faces.video.iter_video_frames`; this is the one place that keeps the
    frames before a break and says so (`abaw-hf predict`, the pipeline and the Space)."""

    error: Exception | None = None

    def note(self, decoded: int, source: str | None = None) -> str | None:
        """The warning for a table of the ``decoded`` frames before the break (None when decoding did not break);
        ``source`` names the video instead of its path (an upload's temporary path means nothing to its owner)."""
        if self.error is None:
            return None
        reason = getattr(self.error, "reason", None)
        what = f"{source}: {reason}" if source and reason else str(self.error)
        return f"{what} - the table covers the {decoded} frames decoded before it"


def video_frames(path: Path, problem: VideoProblem) -> Iterator[Frame]:
    """The decoded frames of a video; a break after the first frame ends the frames and is kept in ``problem``."""
    from ..faces import VideoError, iter_video_frames

    decoded = 0
    try:
        for frame in iter_video_frames(path):
            decoded += 1
            yield Frame(path.name, frame.index, frame.timestamp, frame.image)
    except VideoError as error:
        if decoded == 0:
            raise
        problem.error = error  # keep the frames that did decode; the table says what happened
