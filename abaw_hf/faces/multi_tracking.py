"""Every face of a video, each with a ``face`` id that stays the same while the person is visible.

Tracking by detection, SORT-style: each track keeps its face's centre, smoothed size and velocity; in a new frame the
detections are assigned to the tracks' predicted boxes by ``scipy.optimize.linear_sum_assignment`` on a cost
of box overlap and centre distance, with gates (enough overlap or a small centre shift, a similar size) so
that a face is never handed to a track it does not plausibly continue. A track survives ``max_missed``
frames without a detection (its box coasting on its last velocity, the centre gate widening with each
missed frame), so short misses and a face hidden while another passes in front keep their ids; a face that leaves and comes back later may get a new id. Ids count
from 0 in the order faces first appear.

``faces`` chooses what is reported: ``"all"``, ``"largest"`` (one face) or an int N (at most N per frame).
Every face is tracked either way; a face, once chosen, stays chosen while its track lives, and free places
go to the largest faces not yet chosen, so the reported faces do not flip between people.

With ``search_scale`` (for a detector whose ``detect`` takes ``region=``, such as ``FaceDetector``), a track that
no detection of the whole frame continues is looked for again in a square ``search_scale`` times its size around
its predicted centre, where a face too small for the whole-frame search (MediaPipe's limit is about a tenth of the
image width) is still large enough to be found.

    tracker = MultiFaceTracker(WildFaceDetector(), faces="all")
    for frame in tracker.track(iter_video_frames("clip.mp4")):
        for tracked in frame.faces:                      # empty when the frame has no face
            tracked.face_id, tracked.face.box, tracked.aligned
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from .alignment import align_face
from .backends import Face
from .images import as_rgb_uint8
from .settings import FACE_SIZE
from .video import DecodedFrame

FACE_SELECTIONS = ("all", "largest")
_NO_MATCH = 1e6
_SAME_FACE_IOU = 0.5  # a face found near a track that overlaps a whole-frame detection this much is that detection


def parse_face_selection(value: str | int) -> int | None:
    """``"all"`` -> None (no limit), ``"largest"`` -> 1, ``"N"``/N -> N (>= 1); anything else is a ValueError."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "all":
            return None
        if text == "largest":
            return 1
        if not text.isdigit():
            raise ValueError(f"faces must be 'all', 'largest' or a number of faces, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"faces must be 'all', 'largest' or a number >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class TrackedFaceInFrame:
    """One face of one frame: its track id, the detection and the aligned crop."""

    face_id: int
    face: Face
    aligned: np.ndarray  # uint8 [size, size, 3]


@dataclass(frozen=True)
class FrameFaces:
    """The reported faces of one frame, largest first; ``faces`` is empty when none was found."""

    index: int
    timestamp: float | None
    faces: tuple[TrackedFaceInFrame, ...]
    faces_detected: int  # all faces the detector saw in the frame (and near the tracks), reported or not

    @property
    def missing(self) -> bool:
        return not self.faces


@dataclass
class _Track:
    """Centre, smoothed size and smoothed centre velocity of one face."""

    face_id: int
    center: np.ndarray  # float64 [2]
    size: np.ndarray  # float64 [2]: width, height
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre change per frame
    missed: int = 0
    frames: int = 1

    @classmethod
    def start(cls, face_id: int, box: np.ndarray) -> _Track:
        return cls(face_id, (box[:2] + box[2:]) / 2, box[2:] - box[:2])

    def predicted_center(self) -> np.ndarray:
        return self.center + self.velocity * (self.missed + 1)

    def predicted_box(self) -> np.ndarray:
        center = self.predicted_center()
        return np.concatenate([center - self.size / 2, center + self.size / 2])

    def update(self, box: np.ndarray, smoothing: float, max_size_jump: float) -> None:
        center, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
        jump = np.maximum(size / self.size, self.size / np.maximum(size, 1e-6)).max()
        if jump > max_size_jump:
            # A box that changed size abruptly is most likely a face partly hidden (by another face passing
            # in front, by a hand): it is the face, but its centre would bend the motion, so the track keeps
            # its predicted course (the size still follows, so a real fast zoom is caught up with).
            self.center = self.predicted_center()
        else:
            observed = (center - self.center) / (self.missed + 1)
            weight = smoothing if self.frames > 1 else 0.0  # the first step has no velocity to smooth yet
            self.velocity = weight * self.velocity + (1 - weight) * observed
            self.center = center
        self.size = smoothing * self.size + (1 - smoothing) * size
        self.missed, self.frames = 0, self.frames + 1


@dataclass
class TrackingSummary:
    frames: int = 0
    frames_without_face: list[int] = field(default_factory=list)
    tracks_started: dict[int, int] = field(default_factory=dict)  # face id -> first frame it was reported in
    frames_per_face: dict[int, int] = field(default_factory=dict)

    @property
    def frames_with_face(self) -> int:
        return self.frames - len(self.frames_without_face)


def _iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(-1)
    area_a = np.clip(boxes_a[:, 2:] - boxes_a[:, :2], 0, None).prod(-1)
    area_b = np.clip(boxes_b[:, 2:] - boxes_b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-9), 0.0)


class MultiFaceTracker:
    """Detect, track, choose and align the faces of each frame (see the module docstring).

    ``detector`` is any object with ``detect(image) -> list[Face]`` (``FaceDetector``, ``MtcnnDetector``,
    ``WildFaceDetector``); when it also has ``detect_batch``, ``track`` detects ``batch_size`` frames at once.
    One face per frame, followed while it shrinks below what the whole-frame search sees:
    ``MultiFaceTracker(FaceDetector("mediapipe"), faces="largest", search_scale=2.5)``.
    """

    def __init__(
        self,
        detector,
        size: int = FACE_SIZE,
        faces: str | int = "all",
        min_iou: float = 0.2,
        max_center_shift: float = 0.6,
        max_size_change: float = 1.6,
        max_size_jump: float = 1.2,
        max_missed: int = 25,
        velocity_smoothing: float = 0.6,
        coast_widening: float = 0.05,
        batch_size: int = 8,
        search_scale: float | None = None,
    ):
        if max_missed < 0 or batch_size < 1 or max_size_change < 1:
            raise ValueError("max_missed must be >= 0, batch_size >= 1 and max_size_change >= 1")
        if search_scale is not None:
            if search_scale < 1:
                raise ValueError(f"search_scale must be >= 1, got {search_scale}")
            if "region" not in inspect.signature(detector.detect).parameters:
                raise ValueError(f"search_scale needs a detector whose detect() takes region= "
                                 f"(FaceDetector); {type(detector).__name__}'s does not")
        self.detector = detector
        self.size = size
        self.max_reported = parse_face_selection(faces)
        self.min_iou = min_iou
        self.max_center_shift = max_center_shift
        self.max_size_change = max_size_change
        self.max_size_jump = max_size_jump
        self.max_missed = max_missed
        self.velocity_smoothing = velocity_smoothing
        self.coast_widening = coast_widening
        self.batch_size = batch_size
        self.search_scale = search_scale
        self.reset()

    def reset(self) -> None:
        """Forget every track and the summary (start of another video); ids start again at 0."""
        self.summary = TrackingSummary()
        self._tracks: list[_Track] = []
        self._chosen: list[int] = []  # ids of the reported tracks, in the order they were chosen
        self._next_id = 0

    # -- association ------------------------------------------------------------------------------------------

    def _costs(self, predicted: np.ndarray, missed: np.ndarray, detected: np.ndarray) -> np.ndarray:
        """Assignment cost of each (track, detection) pair; ``_NO_MATCH`` where the gates forbid it."""
        overlap = _iou_matrix(predicted, detected)
        centers_p = (predicted[:, :2] + predicted[:, 2:]) / 2
        centers_d = (detected[:, :2] + detected[:, 2:]) / 2
        sides_p = np.sqrt(np.clip(predicted[:, 2:] - predicted[:, :2], 1e-6, None).prod(-1))
        sides_d = np.sqrt(np.clip(detected[:, 2:] - detected[:, :2], 1e-6, None).prod(-1))
        shift = np.linalg.norm(centers_p[:, None] - centers_d[None], axis=-1) / sides_p[:, None]
        size_ratio = np.maximum(sides_p[:, None] / sides_d[None], sides_d[None] / sides_p[:, None])
        # A coasting track's position is less certain the longer it coasts.
        max_shift = self.max_center_shift + self.coast_widening * missed[:, None]
        allowed = ((overlap >= self.min_iou) | (shift <= max_shift)) & (size_ratio <= self.max_size_change)
        return np.where(allowed, (1.0 - overlap) + shift, _NO_MATCH)

    def _search_near_lost_tracks(self, image: np.ndarray, detected: np.ndarray,
                                 matched: dict[int, Face]) -> dict[int, Face]:
        """Faces found around the tracks that no whole-frame detection continued (``search_scale``), by face id."""
        found: dict[int, Face] = {}
        for track in self._tracks:
            if track.face_id in matched:
                continue
            center, half = track.predicted_center(), self.search_scale * float(track.size.max()) / 2
            try:
                nearby = self.detector.detect(image, region=(*(center - half), *(center + half)))
            except ValueError:  # the region lies outside the image
                continue
            if not nearby:
                continue
            boxes = np.array([face.box for face in nearby], dtype=np.float64).reshape(-1, 4)
            costs = self._costs(track.predicted_box()[None], np.array([track.missed]), boxes)[0]
            if len(detected):  # faces of the whole frame were offered to the tracks already
                costs[_iou_matrix(boxes, detected).max(1) >= _SAME_FACE_IOU] = _NO_MATCH
            best = int(np.argmin(costs))
            if costs[best] < _NO_MATCH:
                track.update(boxes[best], self.velocity_smoothing, self.max_size_jump)
                found[track.face_id] = nearby[best]
                detected = np.concatenate([detected, boxes[best : best + 1]])
        return found

    def _associate(self, faces: list[Face], image: np.ndarray) -> tuple[dict[int, Face], int]:
        """Match detections to tracks (searching near the lost ones with ``search_scale``), start tracks for the
        rest; returns face id -> face for this frame and how many faces only the search near the tracks found."""
        from scipy.optimize import linear_sum_assignment

        detected = np.array([face.box for face in faces], dtype=np.float64).reshape(-1, 4)
        matched: dict[int, Face] = {}
        unmatched = set(range(len(faces)))
        if self._tracks and faces:
            predicted = np.stack([track.predicted_box() for track in self._tracks])
            costs = self._costs(predicted, np.array([track.missed for track in self._tracks]), detected)
            for row, col in zip(*linear_sum_assignment(costs)):
                if costs[row, col] < _NO_MATCH:
                    track = self._tracks[row]
                    track.update(detected[col], self.velocity_smoothing, self.max_size_jump)
                    matched[track.face_id] = faces[col]
                    unmatched.discard(col)
        recovered = {}
        if self.search_scale is not None and self._tracks:
            recovered = self._search_near_lost_tracks(image, detected, matched)
            matched.update(recovered)
        for track in self._tracks:
            if track.face_id not in matched:
                track.missed += 1
        self._tracks = [track for track in self._tracks if track.missed <= self.max_missed]
        for col in sorted(unmatched, key=lambda c: faces[c].area, reverse=True):
            track = _Track.start(self._next_id, detected[col])
            self._next_id += 1
            self._tracks.append(track)
            matched[track.face_id] = faces[col]
        return matched, len(recovered)

    def _choose(self, matched: dict[int, Face]) -> list[int]:
        """The ids reported this frame: the chosen tracks still alive, topped up with the largest others."""
        alive = {track.face_id for track in self._tracks}
        if self.max_reported is None:
            return sorted(matched, key=lambda face_id: matched[face_id].area, reverse=True)
        self._chosen = [face_id for face_id in self._chosen if face_id in alive]
        for face_id in sorted(matched, key=lambda face_id: matched[face_id].area, reverse=True):
            if len(self._chosen) >= self.max_reported:
                break
            if face_id not in self._chosen:
                self._chosen.append(face_id)
        reported = [face_id for face_id in self._chosen if face_id in matched]
        return sorted(reported, key=lambda face_id: matched[face_id].area, reverse=True)

    # -- frames ----------------------------------------------------------------------------------------------

    def update(self, image: np.ndarray, index: int | None = None, timestamp: float | None = None,
               faces: list[Face] | None = None) -> FrameFaces:
        """Process the next frame (``faces``: its detections, when they were computed already)."""
        image = as_rgb_uint8(image)
        index = self.summary.frames if index is None else index
        if faces is None:
            faces = self.detector.detect(image)
        matched, recovered = self._associate(list(faces), image)
        reported = []
        for face_id in self._choose(matched):
            face = matched[face_id]
            reported.append(TrackedFaceInFrame(face_id, face, align_face(image, face.landmarks5, self.size, face.box)))
            self.summary.tracks_started.setdefault(face_id, index)
            self.summary.frames_per_face[face_id] = self.summary.frames_per_face.get(face_id, 0) + 1
        self.summary.frames += 1
        if not reported:
            self.summary.frames_without_face.append(index)
        return FrameFaces(index, timestamp, tuple(reported), len(faces) + recovered)

    def track(self, frames: Iterable[DecodedFrame | np.ndarray]) -> Iterator[FrameFaces]:
        """Track through frames (``iter_video_frames(path)`` or RGB arrays), one ``FrameFaces`` per frame."""
        batch_detect = getattr(self.detector, "detect_batch", None)
        iterator = iter(enumerate(frames))
        while chunk := list(islice(iterator, self.batch_size if batch_detect else 1)):
            items = []
            for position, frame in chunk:
                if isinstance(frame, DecodedFrame):
                    items.append((as_rgb_uint8(frame.image), frame.index, frame.timestamp))
                else:
                    items.append((as_rgb_uint8(frame), position, None))
            detections = batch_detect([image for image, _, _ in items]) if batch_detect else [None] * len(items)
            for (image, index, timestamp), faces in zip(items, detections):
                yield self.update(image, index, timestamp, faces=faces)
