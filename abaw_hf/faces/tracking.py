"""Follow one face through a video: the most prominent face, matched frame to frame by box overlap."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .alignment import align_face
from .detection import Face, FaceDetector, box_iou
from .images import as_rgb_uint8
from .video import DecodedFrame


@dataclass(frozen=True)
class TrackedFace:
    """The tracked face in one frame; ``face`` and ``aligned`` are None when it was not found."""

    index: int
    timestamp: float | None
    face: Face | None
    aligned: np.ndarray | None  # uint8 [size, size, 3]
    faces_detected: int  # faces the detector saw where it searched (around the track, else the frame)

    @property
    def missing(self) -> bool:
        return self.face is None


@dataclass
class TrackingSummary:
    frames: int = 0
    missing_frames: list[int] = field(default_factory=list)
    reacquired_at: list[int] = field(default_factory=list)  # frames where a new face was taken up

    @property
    def frames_with_face(self) -> int:
        return self.frames - len(self.missing_frames)


class FaceTracker:
    """Detect, choose and align one face per frame.

    The first face taken is the most prominent (largest box). In later frames the detector
    first looks in a square ``search_scale`` times the previous box around it (faster, and the
    face stays large enough for the detector when it shrinks), then in the whole frame; the
    face whose box overlaps the previous one most (IoU >= ``min_iou``), or failing that whose
    centre moved less than ``max_center_shift`` box diagonals, continues the track. A frame
    without such a face is reported missing (never dropped); after ``reacquire_after`` missing
    frames in a row the track restarts on the most prominent face.
    """

    def __init__(
        self,
        detector: FaceDetector,
        size: int = 112,
        min_iou: float = 0.3,
        max_center_shift: float = 0.5,
        reacquire_after: int = 10,
        search_scale: float = 2.5,
    ):
        self.detector = detector
        self.size = size
        self.min_iou = min_iou
        self.max_center_shift = max_center_shift
        self.reacquire_after = reacquire_after
        self.search_scale = search_scale
        self.summary = TrackingSummary()
        self._last_box: np.ndarray | None = None
        self._missing_in_row = 0

    def reset(self) -> None:
        """Forget the track and the summary (start of another video)."""
        self.summary = TrackingSummary()
        self._last_box = None
        self._missing_in_row = 0

    def _match(self, faces: list[Face]) -> Face | None:
        if not faces:
            return None
        if self._last_box is None:
            return faces[0]  # the detector returns the largest first
        overlaps = [box_iou(self._last_box, face.box) for face in faces]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= self.min_iou:
            return faces[best]
        last_center = (self._last_box[:2] + self._last_box[2:]) / 2
        diagonal = float(np.hypot(*(self._last_box[2:] - self._last_box[:2])))
        shifts = [float(np.hypot(*(face.center - last_center))) for face in faces]
        nearest = int(np.argmin(shifts))
        if shifts[nearest] <= self.max_center_shift * diagonal:
            return faces[nearest]
        return None

    def _search_region(self) -> tuple[float, float, float, float]:
        center = (self._last_box[:2] + self._last_box[2:]) / 2
        half = self.search_scale * float(max(self._last_box[2:] - self._last_box[:2])) / 2
        return (center[0] - half, center[1] - half, center[0] + half, center[1] + half)

    def update(self, image: np.ndarray, index: int | None = None, timestamp: float | None = None) -> TrackedFace:
        """Process the next frame of the video."""
        image = as_rgb_uint8(image)
        index = self.summary.frames if index is None else index
        if self._last_box is not None and self._missing_in_row >= self.reacquire_after:
            self._last_box = None
        had_track = self._last_box is not None
        face, faces_seen = None, 0
        if had_track:
            nearby = self.detector.detect(image, region=self._search_region())
            face, faces_seen = self._match(nearby), len(nearby)
        if face is None:
            faces = self.detector.detect(image)
            face, faces_seen = self._match(faces), max(faces_seen, len(faces))
        self.summary.frames += 1
        if face is None:
            self._missing_in_row += 1
            self.summary.missing_frames.append(index)
            return TrackedFace(index, timestamp, None, None, faces_seen)
        if not had_track:
            self.summary.reacquired_at.append(index)
        self._last_box = face.box
        self._missing_in_row = 0
        aligned = align_face(image, face.landmarks5, self.size)
        return TrackedFace(index, timestamp, face, aligned, faces_seen)

    def track(self, frames: Iterable[DecodedFrame | np.ndarray]) -> Iterator[TrackedFace]:
        """Track through frames (``iter_video_frames(path)`` or plain RGB arrays), one result per frame."""
        for position, frame in enumerate(frames):
            if isinstance(frame, DecodedFrame):
                yield self.update(frame.image, frame.index, frame.timestamp)
            else:
                yield self.update(frame, position)
