"""`AffectPipeline`: a trained fusion model with its extractors and face detector, and the ways to call it.

Every entry point (a video, frames, images, ``stream()``) goes through one `PredictionStream`.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..faces.settings import MAX_FACES
from ..model_files import DEFAULT_SMOOTHING_SIGMA, inference_settings
from ..modeling import AbawFusionModel
from ..segments import DEFAULT_MAX_GAP, DEFAULT_WINDOW
from .errors import PipelineError
from .inputs import VideoProblem, image_folder, image_frames, is_image_path, video_frames
from .stream import PredictionStream, StreamSettings
from .table import concat_tables
from .weights import WeightsReport, build_extractors, report_given_extractors




class AffectPipeline:
    """Video, images or frames -> faces -> extractors -> windows -> fusion model -> per-frame table.

    ``window`` consecutive face frames of one segment (`abaw_hf.segments`: a frame-number gap above ``max_gap``
    starts a new one) form one sequence for the model, and up to ``windows_per_batch`` such windows go through it
    as one padded batch; ``batch_size`` face crops go through each extractor together; ``smoothing_sigma``
    (frames, 0 = off) smooths the predictions of a video over time before the expression argmax and the per-AU
    thresholds of the model config. `from_pretrained` takes window, gap and smoothing from the model itself.
    ``faces`` (``"all"``, ``"largest"`` or a number) says which of the tracked faces get rows; ``face_backend``
    picks the detector (`abaw_hf.faces.BACKENDS`; ``"mtcnn"`` finds faces in the wild). ``runtime`` says what runs
    the networks (`abaw_hf.onnx`: ``"auto"`` takes onnxruntime on CPU where it is faster, ``"torch"``, ``"onnx"``);
    `runtimes` tells what each one got.
    """

    def __init__(
        self,
        model: AbawFusionModel,
        *,
        extractors: dict | None = None,
        checkpoints: dict[str, str | Path] | None = None,
        model_id: str | Path | None = None,
        revision: str | None = None,
        synthetic_training: bool | None = None,
        detector=None,
        face_backend: str | None = None,
        faces: str | int = "all",
        window: int = DEFAULT_WINDOW,
        max_gap: int = DEFAULT_MAX_GAP,
        batch_size: int = 32,
        windows_per_batch: int = 16,
        smoothing_sigma: float = DEFAULT_SMOOTHING_SIGMA,
        device: str | torch.device | None = None,
        allow_pickle: bool = False,
        runtime: str = "auto",
        onnx_dir: str | Path | None = None,
    ):
        from ..faces import DEFAULT_BACKEND, FaceDetector
        from ..faces.multi_tracking import parse_face_selection

        self.model = model.eval()
        self.config = model.config
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        if extractors is None:
            extractors, weights = build_extractors(
                self.config, checkpoints=checkpoints, model_id=model_id, revision=revision, allow_pickle=allow_pickle
            )
        else:
            weights = report_given_extractors(self.config, extractors)
        self.extractors = {name: extractors[name].to(self.device).eval() for name in self.config.feature_names}
        self.runtime, self.onnx_dir = runtime, onnx_dir
        self._use_runtime()  # onnxruntime objects with the torch call signatures, where they run
        self.weights_report = WeightsReport(str(model_id or getattr(self.config, "_name_or_path", "") or "(in memory)"),
                                            synthetic_training, weights)
        try:
            parse_face_selection(faces)
        except ValueError as error:
            raise PipelineError(str(error)) from None
        self.faces = faces
        self.detector = detector if detector is not None else FaceDetector(face_backend or DEFAULT_BACKEND, max_faces=MAX_FACES)
        self.window = max(1, min(int(window), self.config.max_window))
        self.max_gap = max(0, int(max_gap))
        self.batch_size = max(1, int(batch_size))
        self.windows_per_batch = max(1, int(windows_per_batch))
        self.smoothing_sigma = float(smoothing_sigma)
        self.timings: dict[str, float] = {}  # seconds per stage of the latest stream
        self.extractor_timings: dict[str, float] = {}  # seconds per extractor of the latest stream
        if synthetic_training:
            warnings.warn(self.weights_report.warnings[0], UserWarning, stacklevel=2)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | Path,
        *,
        checkpoints: dict[str, str | Path] | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> AffectPipeline:
        """Load the fusion model (Hub id or local folder) and rebuild its extractors from its provenance.

        Window length and gap limit are the model's own (`abaw_hf.model_files.inference_settings`: its config,
        else its ``train_config.yaml``), the smoothing width its tuned ``postprocessing.json``; keywords override.
        """
        from ..model_loading import load_fusion_model

        model = load_fusion_model(model_id, revision=revision)
        settings = inference_settings(model.config, model_id, revision)
        kwargs.setdefault("window", settings.window)
        kwargs.setdefault("max_gap", settings.max_gap)
        kwargs.setdefault("smoothing_sigma", settings.smoothing_sigma)
        kwargs.setdefault("synthetic_training", settings.synthetic_training)
        return cls(model, checkpoints=checkpoints, model_id=model_id, revision=revision, device=device, **kwargs)

    @property
    def runtimes(self) -> dict[str, str]:
        """What runs each network: ``{"fusion": "torch", "resnet18": "onnxruntime", ...}``."""
        from ..onnx.runtime import runtime_name

        return {"fusion": runtime_name(self.model), **{name: runtime_name(e) for name, e in self.extractors.items()}}

    @property
    def runtime_summary(self) -> str:
        """One line for people: ``fusion torch, resnet18 torch (no ONNX graph prepared yet), fau own``."""
        notes = getattr(self, "runtime_notes", {})
        return ", ".join(f"{name} {runtime}" + (f" ({notes[name]})" if name in notes else "")
                         for name, runtime in self.runtimes.items())

    def prepare_runtime(self, lock=None, *, retry_refused: bool = True) -> dict[str, str]:
        """Export, into the ONNX cache, the graphs ``runtime="auto"`` lacks (a call never waits for them: until
        then those networks run under torch), then switch to them, under ``lock`` when one is given (a server
        answering requests meanwhile). ``retry_refused=False``: a graph whose export failed its check is not
        tried again. Returns feature -> what happened."""
        import contextlib

        from ..onnx.runtime import prepare_graphs

        if self.runtime != "auto" or self.onnx_dir is not None:
            return {}
        done = prepare_graphs(self.extractors, self.device, retry_refused=retry_refused)
        with lock if lock is not None else contextlib.nullcontext():
            self._use_runtime()
        return done

    def _use_runtime(self) -> None:
        """Hold the networks `abaw_hf.onnx.runtime.runtime_networks` builds for this pipeline's runtime."""
        from ..onnx.runtime import runtime_networks

        networks = runtime_networks(self.model, self.extractors, self.runtime, self.device, self.onnx_dir)
        self.model, self.extractors, self.runtime_notes = networks.model, networks.extractors, networks.notes

    # ----- entry points ------------------------------------------------------------------------------------------

    def stream(self, *, source: str = "frames", temporal: bool = True, fps: float | None = None,
               audio: str | Path | None = None) -> PredictionStream:
        """A stream of one video's frames (or, ``temporal=False``, of independent images): ``feed`` frames as they
        come and get the rows that are final, ``finish`` for the rest. One stream at a time per pipeline. ``audio``
        (the video file) is where ``audio:`` extractors read the sound; without it their vectors are missing."""
        settings = StreamSettings(
            model=self.model, config=self.config, extractors=self.extractors, device=self.device, detector=self.detector,
            faces=self.faces, batch_size=self.batch_size, window=self.window, windows_per_batch=self.windows_per_batch,
            max_gap=self.max_gap, smoothing_sigma=self.smoothing_sigma, warnings=tuple(self.weights_report.warnings),
        )
        stream = PredictionStream(settings, source=source, temporal=temporal, fps=fps, audio=audio)
        self.timings, self.extractor_timings = stream.timings, stream.extractor_timings
        return stream

    def __call__(self, inputs, **kwargs) -> pd.DataFrame:
        """``inputs``: a video path, an image path, a folder of images, a list of image paths or
        RGB arrays, one RGB array, or a ``[N, H, W, 3]`` array of consecutive video frames."""
        if isinstance(inputs, (str, os.PathLike)):
            path = Path(inputs)
            if path.is_dir():
                return self.predict_images(image_folder(path), **kwargs)
            if is_image_path(path):
                return self.predict_images([path], **kwargs)
            return self.predict_video(path, **kwargs)
        if isinstance(inputs, np.ndarray):
            if inputs.ndim == 4:
                return self.predict_frames(inputs, **kwargs)
            return self.predict_images([inputs], **kwargs)
        if isinstance(inputs, Iterable):
            return self.predict_images(list(inputs), **kwargs)
        raise PipelineError(f"cannot predict on a {type(inputs).__name__}; give a video/image path or RGB arrays")

    def predict_video(self, path: str | Path, *, max_frames: int | None = None) -> pd.DataFrame:
        """One row per decoded frame of the video at ``path`` (streamed, never held whole)."""
        path = Path(path)
        problem = VideoProblem()
        frames = video_frames(path, problem)
        if max_frames is not None:
            frames = itertools.islice(frames, max_frames)  # stops decoding there
        stream = self.stream(source=path.name, audio=path)  # audio: extractors hear the video's own sound
        parts = [stream.feed(frames)]
        if problem.error is not None:
            message = problem.note(stream.count)
            warnings.warn(message, UserWarning, stacklevel=2)
            stream.warnings.append(message)
        parts.append(stream.finish())
        return self._says_what_it_is(concat_tables(parts))

    def predict_frames(self, frames: Iterable[np.ndarray], *, source: str = "frames", fps: float | None = None) -> pd.DataFrame:
        """Consecutive video frames (RGB arrays, e.g. from a webcam): temporal windows and smoothing apply."""
        stream = self.stream(source=source, fps=fps)
        return self._says_what_it_is(concat_tables([stream.feed(frames), stream.finish()]))

    def predict_images(self, images: Iterable) -> pd.DataFrame:
        """Independent images (paths or RGB arrays): one row each, no temporal context."""
        stream = self.stream(temporal=False)
        return self._says_what_it_is(concat_tables([stream.feed(image_frames(images)), stream.finish()]))

    def _says_what_it_is(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table.attrs["weights"]``: what the predictions are, the words of the CSV's ``weights`` column."""
        table.attrs["weights"] = self.weights_report.status
        return table

    def close(self) -> None:
        """Release the face detector's and the extractors' native resources."""
        self.detector.close()
        for extractor in self.extractors.values():
            extractor.close()
