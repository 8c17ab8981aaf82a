"""The pipeline's one path: frames in as they come, finished rows out as soon as nothing later can change them.

    stream = pipeline.stream(source="clip.mp4")
    for chunk in chunks_of_frames:
        show(stream.feed(chunk))        # the rows that are final now (maybe none)
    show(stream.finish())               # the rest

Tracker, windows and smoothing state persist across feeds, and work is batched by count (``batch_size`` face
crops, then the windows they closed), never by feed, so any way of cutting the frames into feeds gives the same
table as one feed of all of them: `predict_video`, `abaw-hf predict` and the Space agree row for row.

Every face is tracked (`abaw_hf.faces.multi_tracking`: a ``face`` id per person) and gets one row per frame;
windows and smoothing run along each face's track. A face row is final once its window went through the model and
every face frame within the smoothing radius after it has too (or the stream has seen a later frame beyond that
radius); rows come out in input order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..faces.settings import FACE_SIZE
from ..model_loading import require_finite_outputs
from ..modeling.tasks_abaw_fusion import output_tensors, prediction_width, predictions as task_predictions
from ..postprocess import smooth_predictions, smoothing_radius
from ..segments import segment_starts, tile_segment
from .errors import ImageReadError, PipelineError
from .inputs import Frame, array_frame
from .table import RowInfo, prediction_table

STAGES = ("decode", "faces", "extractors", "fusion", "postprocess")


@dataclass
class _FaceRow:
    """A face frame's features, waiting in a window for the fusion model."""

    row: int
    frame: int
    face: int  # track id
    features: dict[str, torch.Tensor]  # extractor -> [D]
    present: dict[str, torch.Tensor]  # extractor -> bool []


@dataclass(frozen=True)
class StreamSettings:
    """Everything a `PredictionStream` uses, given by its pipeline (`AffectPipeline.stream`): the networks, the face
    tracking, the windows and the smoothing."""

    model: object  # AbawFusionModel, or the ONNX runtime's stand-in
    config: object  # the model's AbawFusionConfig
    extractors: dict
    device: torch.device
    detector: object
    faces: str | int
    batch_size: int
    window: int
    windows_per_batch: int
    max_gap: int | None
    smoothing_sigma: float
    warnings: tuple[str, ...] = ()  # said in every table (the weights report's)


class PredictionStream:
    """Frames of one video (``temporal``) or independent images in, per-frame table rows out.

    Items fed may be `Frame`s, decoded video frames (anything with ``index``, ``timestamp`` and ``image``, such as
    `abaw_hf.faces.DecodedFrame`) or RGB arrays (numbered from 0, timed by ``fps`` when given). ``audio`` (the video
    file) gives ``audio:`` extractors the sound, frame ``index`` at ``index / fps`` of the video; without it (images,
    webcam frames) their vectors are missing and the model's missing-feature embedding takes their place.
    """

    def __init__(self, settings: StreamSettings, *, source: str = "frames", temporal: bool = True,
                 fps: float | None = None, audio=None):
        from ..faces.multi_tracking import MultiFaceTracker

        self.settings = settings
        self.source, self.temporal, self.fps = source, temporal, fps
        self.tracker = MultiFaceTracker(settings.detector, size=FACE_SIZE, faces=settings.faces)
        self.timings = dict.fromkeys(STAGES, 0.0)  # seconds per stage so far
        self.extractor_timings = dict.fromkeys(settings.extractors, 0.0)
        self.warnings = list(settings.warnings)
        smoothing = temporal and settings.smoothing_sigma > 0
        self._radius = smoothing_radius(settings.smoothing_sigma) if smoothing else 0
        self._rows: list[RowInfo] = []
        self._emitted = 0  # rows [0, _emitted) were handed out
        self._crop_rows: list[int] = []  # face crops waiting for the extractors
        self._crops: list[np.ndarray] = []
        self._open: dict[int, list[_FaceRow]] = {}  # per face: its current segment's rows not yet in a complete window
        self._ready: list[list[_FaceRow]] = []  # complete windows waiting for the fusion model
        self._awaiting: deque[int] = deque()  # face rows without a prediction yet, in order
        self._values: dict[int, np.ndarray] = {}  # face row -> VA, expression probs, AU probs (before smoothing)
        self._unreadable: list[ImageReadError] = []
        self._last_frame: int | None = None
        self._next_index = 0
        self.finished = False
        self._sound = self._open_sound(audio)  # audio: extractor -> pooler over the video's sound

    def _open_sound(self, audio) -> dict:
        listeners = {name: e for name, e in self.settings.extractors.items() if getattr(e, "modality", "") == "audio"}
        if not listeners or audio is None:
            return {}
        from ..audio import open_audio_source

        sound = open_audio_source(audio)
        if sound.path is None:
            self.warnings.append(f"{sound.reason}: the audio features ({', '.join(listeners)}) are missing")
            return {}
        self._fps = sound.fps
        return {name: extractor.stream(sound.path) for name, extractor in listeners.items()}

    @property
    def count(self) -> int:
        """Frames fed so far."""
        return len(self._rows)

    # ----- in ---------------------------------------------------------------------------------------------------

    def feed(self, frames: Iterable) -> pd.DataFrame:
        """Take ``frames`` (pulled one at a time: a generator is never held whole); return the rows now final."""
        if self.finished:
            raise PipelineError("this stream is finished; start another with pipeline.stream()")
        iterator = iter(frames)
        while True:
            started = time.perf_counter()
            item = next(iterator, None)
            self.timings["decode"] += time.perf_counter() - started
            if item is None:
                break
            self._add(self._as_frame(item))
        return self._emit()

    def finish(self) -> pd.DataFrame:
        """Flush every batch and window; the remaining rows, with the stream's warnings in ``attrs``."""
        if not self.finished:
            self._extract()
            self._close_segment()
            self._run_fusion()
            self.finished = True
            self._final_checks()
        return self._emit()

    def _as_frame(self, item) -> Frame:
        if isinstance(item, Frame):
            return item
        if isinstance(item, np.ndarray):
            index = self._next_index
            return array_frame(item, self.source, index, index / self.fps if self.fps else None)
        return array_frame(item.image, self.source, int(item.index), item.timestamp)  # a decoded video frame

    def _add(self, frame: Frame) -> None:
        seconds = np.nan if frame.timestamp is None else float(frame.timestamp)
        self._last_frame, self._next_index = frame.index, frame.index + 1
        if frame.image is None:
            self._unreadable.append(frame.unreadable)
            self._rows.append(RowInfo(frame.source, frame.index, seconds, None, frame.unreadable.reason))
            return
        started = time.perf_counter()
        if not self.temporal:
            self.tracker.reset()  # independent images: no track carries over
        tracked = self.tracker.update(frame.image, frame.index, frame.timestamp)
        self.timings["faces"] += time.perf_counter() - started
        if tracked.missing:
            self._rows.append(RowInfo(frame.source, frame.index, seconds, None))
        for face in tracked.faces:
            self._crop_rows.append(len(self._rows))
            self._awaiting.append(len(self._rows))
            self._crops.append(face.aligned)
            box = np.asarray(face.face.box, dtype=np.float32)
            self._rows.append(RowInfo(frame.source, frame.index, seconds, box, face=face.face_id))
        if len(self._crops) >= self.settings.batch_size:
            self._extract()
            self._run_fusion()

    # ----- faces -> features -> windows -> predictions ----------------------------------------------------------

    def _extract(self) -> None:
        rows, crops = self._crop_rows, self._crops
        self._crop_rows, self._crops = [], []
        if not crops:
            return
        started = time.perf_counter()
        features, present = {}, {}
        for name, extractor in self.settings.extractors.items():
            extractor_started = time.perf_counter()
            if name in self._sound:  # the sound around each face's frame
                times = [self._rows[row].frame / self._fps for row in rows]
                values, mask = self._sound[name].vectors(times)
                values, mask = torch.from_numpy(values), torch.from_numpy(mask)
            else:
                # all present, except where an extractor with its own face detector (fau) missed the face, or it
                # reads sound and there is none (audio: extractors on images)
                values, mask = extractor.extract_with_mask(crops, batch_size=self.settings.batch_size)
            features[name], present[name] = values.float(), mask.bool()
            self.extractor_timings[name] += time.perf_counter() - extractor_started
        self.timings["extractors"] += time.perf_counter() - started
        for position, row in enumerate(rows):
            face = _FaceRow(row, self._rows[row].frame, self._rows[row].face,
                            {name: value[position] for name, value in features.items()},
                            {name: mask[position] for name, mask in present.items()})
            self._add_to_window(face)
        if self.temporal:
            # A face unseen for longer than the gap limit cannot continue its segment: close it now, so that its
            # rows do not wait for the end of the video.
            for face_id, rows in list(self._open.items()):
                if segment_starts([0, 0], [rows[-1].frame, self._last_frame], self.settings.max_gap)[1]:
                    self._close_segment(face_id)

    def _add_to_window(self, face: _FaceRow) -> None:
        if not self.temporal:
            self._ready.append([face])  # an image is its own window
            return
        track = self._open.get(face.face, [])
        if track and segment_starts([0, 0], [track[-1].frame, face.frame], self.settings.max_gap)[1]:
            self._close_segment(face.face)
        track = self._open.setdefault(face.face, [])
        track.append(face)
        windows = self._tile(track)
        if len(windows) > 1:  # all but the last window are complete: the next frame cannot join them
            self._ready += [track[first : first + count] for first, count in windows[:-1]]
            self._open[face.face] = track[windows[-1][0] :]

    def _close_segment(self, face_id: int | None = None) -> None:
        """Close the open segment of one face (``None``: of every face) into windows."""
        for key in list(self._open) if face_id is None else [face_id]:
            track = self._open.pop(key, [])
            self._ready += [track[first : first + count] for first, count in self._tile(track)]

    def _tile(self, faces: list[_FaceRow]) -> list[tuple[int, int]]:
        return tile_segment([face.frame for face in faces], self.settings.window, self.settings.config.max_window)

    @torch.inference_mode()
    def _run_fusion(self) -> None:
        """The complete windows through the fusion model, ``windows_per_batch`` at a time (padding masked out)."""
        settings, config = self.settings, self.settings.config
        while self._ready:
            windows = self._ready[: settings.windows_per_batch]
            self._ready = self._ready[settings.windows_per_batch :]
            started = time.perf_counter()
            length = max(len(window) for window in windows)
            attention_mask = torch.zeros(len(windows), length, dtype=torch.bool)
            frame_index = torch.zeros(len(windows), length, dtype=torch.long)
            features = {name: torch.zeros(len(windows), length, dim) for name, dim in config.feature_dims.items()}
            feature_mask = {name: torch.zeros(len(windows), length, dtype=torch.bool) for name in config.feature_names}
            for b, window in enumerate(windows):
                attention_mask[b, : len(window)] = True
                frame_index[b, : len(window)] = torch.tensor([face.frame - window[0].frame for face in window])
                for name in config.feature_names:
                    features[name][b, : len(window)] = torch.stack([face.features[name] for face in window])
                    feature_mask[name][b, : len(window)] = torch.stack([face.present[name] for face in window])
            device = settings.device
            output = settings.model(
                features={name: value.to(device) for name, value in features.items()},
                attention_mask=attention_mask.to(device),
                feature_mask={name: value.to(device) for name, value in feature_mask.items()},
                frame_index=frame_index.to(device),
            )
            present = attention_mask.to(device)
            require_finite_outputs({name: value[present] for name, value in output_tensors(output).items()},
                                   "the fusion model")
            values = torch.cat(list(task_predictions(output).values()), dim=-1).float().cpu().numpy()
            for b, window in enumerate(windows):
                for position, face in enumerate(window):
                    self._values[face.row] = values[b, position]
            while self._awaiting and self._awaiting[0] in self._values:  # windows are run in row order
                self._awaiting.popleft()
            self.timings["fusion"] += time.perf_counter() - started

    # ----- out ------------------------------------------------------------------------------------------------

    def _final_limit(self) -> int:
        """Rows [emitted, limit) are final: nothing later can change them."""
        if self.finished:
            return len(self._rows)
        # every face row before this frame number has its prediction, and no new face row can come before it
        if self._awaiting:
            horizon = self._rows[self._awaiting[0]].frame
        else:
            horizon = -np.inf if self._last_frame is None else self._last_frame + 1
        limit = self._emitted
        while limit < len(self._rows):
            info = self._rows[limit]
            if info.box is not None and not info.frame + self._radius < horizon:
                break
            limit += 1
        return limit

    def _emit(self) -> pd.DataFrame:
        started = time.perf_counter()
        config = self.settings.config
        limit = self._final_limit()
        rows = self._rows[self._emitted : limit]
        values = np.full((len(rows), prediction_width(config)), np.nan, dtype=np.float32)
        faces = [self._emitted + i for i, info in enumerate(rows) if info.box is not None]
        if faces:
            values[np.asarray(faces) - self._emitted] = self._smoothed(faces)
        table = prediction_table(rows, values, config)
        self._emitted = limit
        self._forget_before(limit)
        table.attrs["warnings"] = list(self.warnings)
        self.timings["postprocess"] += time.perf_counter() - started
        return table

    def _smoothed(self, faces: list[int]) -> np.ndarray:
        """The predictions of ``faces`` smoothed over time; smoothing a row reads only the rows within its radius,
        all of which are at hand, so the result equals smoothing the whole video at once."""
        if self._radius == 0:
            return np.stack([self._values[row] for row in faces])
        low = self._rows[faces[0]].frame - self._radius
        high = self._rows[faces[-1]].frame + self._radius
        context = [row for row in sorted(self._values) if low <= self._rows[row].frame <= high]
        frames = np.array([self._rows[row].frame for row in context], dtype=np.int64)
        tracks = np.array([self._rows[row].face for row in context], dtype=np.int64)  # each face smoothed on its own
        smoothed = smooth_predictions(np.stack([self._values[row] for row in context]), tracks, frames,
                                      sigma=self.settings.smoothing_sigma, max_gap=self.settings.max_gap)
        position = {row: i for i, row in enumerate(context)}
        return smoothed[[position[row] for row in faces]]

    def _forget_before(self, limit: int) -> None:
        """Drop predictions no row still to come can need (those beyond the smoothing radius of the next row)."""
        if limit == 0 or not self._values:
            return
        keep_from = self._rows[limit - 1].frame + 1 - self._radius
        for row in [row for row in self._values if row < limit and self._rows[row].frame < keep_from]:
            del self._values[row]

    def _final_checks(self) -> None:
        count = len(self._rows)
        if self._unreadable and len(self._unreadable) == count:  # nothing to predict on: the (first) file is the error
            first = self._unreadable[0]
            if count > 1:
                raise ImageReadError(f"none of the {count} images could be read; first: {first}",
                                     path=first.path, reason=first.reason)
            raise first
        if count == 0:
            raise PipelineError("no frame or image to predict on")
        if self._unreadable:
            self.warnings.append(
                f"{len(self._unreadable)} of {count} images could not be read; their rows are empty "
                f"and say why in the note column (first: {self._unreadable[0]})"
            )
        if not any(info.box is not None for info in self._rows):
            self.warnings.append(f"no face found in any of the {count} frames")
