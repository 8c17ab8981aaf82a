"""From a video, images or frames to per-frame affect predictions, streaming.

    from abaw_hf.pipeline import AffectPipeline

    pipeline = AffectPipeline.from_pretrained("org/abaw-fusion")    # or a local folder
    table = pipeline("clip.mp4")                                       # pandas DataFrame, one row per frame
    pipeline.weights_report                                            # which extractor weights are loaded

Frames are decoded one at a time, faces are tracked and aligned (112 px), face crops are batched
through the extractors the model's config names in its ``extractors`` provenance block, the
features of consecutive face frames form windows for the fusion model, and only the small
per-frame predictions are kept until the end, where they are smoothed over time and thresholded.
Frames without a face are rows with ``face_found == False`` and empty predictions.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from .errors import UserError
from .faces.images import DEFAULT_MAX_IMAGE_PIXELS, ImageProblem, flatten_alpha, read_image_file
from .model_loading import require_finite_outputs
from .modeling import AbawFusionModel

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
FACE_SIZE = 112  # ABAW's cropped_aligned frames are 112 px; extractors resize to their own input size
DEFAULT_WINDOW = 16
DEFAULT_MAX_GAP = 8
DEFAULT_SMOOTHING_SIGMA = 2.0
NO_FACE_NOTE = "no face found"
UNREADABLE_NOTE = "unreadable image"  # a row's note starts with this when its image file could not be used


class PipelineError(UserError, ValueError):
    """Input the pipeline cannot use; the message names the file and the reason."""


class ImageReadError(PipelineError):
    """An image file that cannot be used; `path` and `reason` say which and why."""

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path, self.reason = path, reason


class ExtractorNotInstalledError(PipelineError):
    """The model's provenance names an extractor this installation does not have."""


# ----- which weights are loaded --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractorWeights:
    feature: str
    extractor: str
    variant: str | None
    source: str  # "checkpoint", "hub", "built-in" (no weights of its own) or "random"
    checkpoint: str | None = None
    sha256: str | None = None

    @property
    def random_init(self) -> bool:
        return self.source == "random"


@dataclass
class WeightsReport:
    """What is loaded: the model, whether it was trained on synthetic data, each extractor's weights."""

    model: str
    synthetic_training: bool | None
    extractors: list[ExtractorWeights] = field(default_factory=list)

    @property
    def random_extractors(self) -> list[str]:
        return [item.feature for item in self.extractors if item.random_init]

    @property
    def trustworthy(self) -> bool:
        return not self.synthetic_training and not self.random_extractors

    @property
    def warnings(self) -> list[str]:
        """Banner texts: why the predictions should not be believed (empty when nothing is wrong)."""
        messages = []
        if self.synthetic_training:
            messages.append(f"The model {self.model} was trained on SYNTHETIC DEMO DATA: its predictions are meaningless.")
        if self.random_extractors:
            messages.append(
                f"Extractor(s) {', '.join(self.random_extractors)} run with RANDOM WEIGHTS (no checkpoint found): "
                "their features, and so the predictions, carry no affect information."
            )
        return messages

    def __str__(self) -> str:
        lines = [f"model: {self.model} (training data: "
                 f"{'synthetic demo' if self.synthetic_training else 'real' if self.synthetic_training is False else 'not recorded'})"]
        for item in self.extractors:
            detail = item.checkpoint or "-"
            if item.sha256:
                detail += f" sha256 {item.sha256[:12]}…"
            lines.append(f"  {item.feature}: {item.extractor}/{item.variant} <- {item.source} ({detail})")
        lines += [f"WARNING: {message}" for message in self.warnings]
        return "\n".join(lines)


# ----- model files (local folder or Hub id) -------------------------------------------------------------------


def _optional_model_file(model_id: str | Path, filename: str, revision: str | None = None) -> Path | None:
    """``filename`` of a local model folder or a Hub repo (cache included), or None when it has none."""
    folder = Path(model_id)
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(str(model_id), filename, revision=revision))
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError):
        return None


def _read_model_record(model_id, filename: str, revision=None) -> dict:
    """A YAML/JSON record saved beside the weights (train_config.yaml, postprocessing.json); {} when absent."""
    path = _optional_model_file(model_id, filename, revision)
    if path is None:
        return {}
    try:
        values = yaml.safe_load(path.read_text()) or {}  # YAML reads JSON too
    except yaml.YAMLError as error:
        raise PipelineError(f"{path}: not valid YAML/JSON ({error})") from error
    if not isinstance(values, dict):
        raise PipelineError(f"{path}: expected a mapping of settings, found {type(values).__name__}")
    return values


# ----- building the extractors ---------------------------------------------------------------------------------


def build_extractors(
    config,
    *,
    checkpoints: dict[str, str | Path] | None = None,
    model_id: str | Path | None = None,
    revision: str | None = None,
    allow_pickle: bool = False,
) -> tuple[dict, list[ExtractorWeights]]:
    """One extractor per feature of ``config``, as its ``extractors`` provenance describes.

    Weights come from ``checkpoints[feature]`` (an official checkpoint file), else from the model
    repo's ``extractors/<feature>.safetensors``, else the extractor runs with random weights and a
    loud warning. An extractor name this installation does not know is an error naming it.
    """
    from .extractors import create_extractor, file_sha256, get_extractor_class, list_extractors, load_matching_state_dict
    from .extractors.registry import random_init_seed

    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(config.feature_names))
    if unknown:
        raise PipelineError(f"checkpoints given for {unknown}, which the model does not use; it uses {config.feature_names}")
    extractors, report = {}, []
    for feature in config.feature_names:
        provenance = dict((config.extractors or {}).get(feature) or {})
        name = provenance.get("name", feature)
        variant = provenance.get("variant")
        if not provenance:
            logger.warning("config.json has no extractor provenance for feature %r; assuming extractor %r", feature, name)
        try:
            extractor_class = get_extractor_class(name)
        except ValueError:
            raise ExtractorNotInstalledError(
                f"the model {model_id or ''} needs extractor {name!r} (feature {feature!r}), which is not installed; "
                f"installed extractors: {list_extractors()}"
            ) from None
        hub_weights = None if feature in checkpoints or model_id is None else _optional_model_file(
            model_id, f"extractors/{feature}.safetensors", revision
        )
        if not extractor_class.needs_checkpoint:
            extractor = create_extractor(name, variant=variant)
            source, checkpoint, sha = "built-in", provenance.get("checkpoint"), provenance.get("sha256")
        elif feature in checkpoints:
            extractor = create_extractor(name, variant=variant, checkpoint=checkpoints[feature], allow_pickle=allow_pickle)
            source, checkpoint, sha = "checkpoint", extractor.checkpoint_file, extractor.checkpoint_sha256
            if provenance.get("sha256") and sha != provenance["sha256"]:
                warnings.warn(
                    f"{checkpoints[feature]}: not the checkpoint the model was trained with (sha256 {sha[:12]}… vs "
                    f"{provenance['sha256'][:12]}… of {provenance.get('checkpoint')}); features of {feature!r} will differ",
                    UserWarning, stacklevel=2,
                )
        elif hub_weights is not None:
            from safetensors import safe_open
            from safetensors.torch import load_file

            extractor = extractor_class(variant=variant)
            load_matching_state_dict(extractor, load_file(str(hub_weights)), source=hub_weights, strict=True)
            with safe_open(str(hub_weights), framework="pt") as handle:
                metadata = handle.metadata() or {}
            extractor.checkpoint_file = metadata.get("source_checkpoint", hub_weights.name)
            extractor.checkpoint_sha256 = metadata.get("source_sha256") or file_sha256(hub_weights)
            extractor.eval()
            source, checkpoint, sha = "hub", f"extractors/{feature}.safetensors", extractor.checkpoint_sha256
        else:
            # same model, same random network: in the CLI, the Space and every other process
            seed = random_init_seed(json.dumps([config.feature_dims, config.extractors], sort_keys=True), feature, name, variant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ours below says it once, with the feature name
                extractor = create_extractor(name, variant=variant, random_seed=seed)
            wanted = f"the model was trained with {provenance['checkpoint']!r}; " if provenance.get("checkpoint") else ""
            message = (
                f"extractor {name!r} for feature {feature!r} has NO weights ({wanted}pass checkpoints={{{feature!r}: path}} "
                "or publish extractors/<feature>.safetensors): it runs with RANDOM WEIGHTS and the predictions are meaningless"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            source, checkpoint, sha = "random", None, None
        if extractor.dim != config.feature_dims[feature]:
            raise PipelineError(
                f"extractor {name!r} (variant {extractor.variant!r}) gives {extractor.dim}-d features, but the model "
                f"expects {config.feature_dims[feature]} for feature {feature!r}"
            )
        extractors[feature] = extractor
        report.append(ExtractorWeights(feature, name, extractor.variant, source, checkpoint, sha))
    return extractors, report


# ----- input frames ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    source: str
    index: int
    timestamp: float | None
    image: np.ndarray | None  # None when the image file could not be used (`unreadable` says why)
    unreadable: ImageReadError | None = None


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file as uint8 RGB, decoded as feature extraction decodes it (`abaw_hf.faces.images`): EXIF
    orientation applied, gray, palette, CMYK and 16-bit converted, alpha composited over white. A file that
    cannot be used (missing, empty, not an image, truncated, above `max_pixels`, a folder) is an ImageReadError."""
    try:
        return read_image_file(path, max_pixels).pixels
    except ImageProblem as problem:
        raise ImageReadError(f"{path}: {problem}", path=str(path), reason=str(problem)) from None


def _is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


@dataclass
class _VideoProblem:
    """The error that ended decoding after some frames (truncated or damaged video), if any."""

    error: Exception | None = None


def _video_frames(path: Path, problem: _VideoProblem) -> Iterator[_Frame]:
    from .faces import VideoError, iter_video_frames

    decoded = 0
    try:
        for frame in iter_video_frames(path):
            decoded += 1
            yield _Frame(path.name, frame.index, frame.timestamp, frame.image)
    except VideoError as error:
        if decoded == 0:
            raise
        problem.error = error  # keep the frames that did decode; the table says what happened


def _image_frames(items: Iterable) -> Iterator[_Frame]:
    from .faces import as_rgb_uint8

    for position, item in enumerate(items):
        if isinstance(item, np.ndarray):
            name = f"image_{position}"
            try:
                image = as_rgb_uint8(flatten_alpha(item), source=name)
            except (TypeError, ValueError) as error:
                raise PipelineError(str(error)) from error
        else:
            name = Path(item).name
            try:
                image = read_image(item)
            except ImageReadError as error:
                # one bad file among several images is a row with the reason in its note, not the end of the run
                yield _Frame(name, position, None, None, unreadable=error)
                continue
        yield _Frame(name, position, None, image)


# ----- the pipeline --------------------------------------------------------------------------------------------


@dataclass
class _Window:
    """Consecutive face frames of one video waiting for the fusion model."""

    rows: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    features: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    present: dict[str, list[torch.Tensor]] = field(default_factory=dict)


@dataclass
class _Run:
    """What one call carries while streaming: only windows in flight and the small per-frame results."""

    temporal: bool
    timings: dict[str, float]
    window: _Window = field(default_factory=_Window)
    ready: list[_Window] = field(default_factory=list)  # closed windows, run through the model together
    predictions: dict[int, np.ndarray] = field(default_factory=dict)  # row -> VA, expression probs, AU probs


class AffectPipeline:
    """Video, images or frames -> faces -> extractors -> windows -> fusion model -> per-frame table.

    ``window`` consecutive face frames (a frame-number gap above ``max_gap`` starts a new window)
    form one sequence for the model, and ``windows_per_batch`` such windows go through it as one
    padded batch (the weights are read once per batch, not per window); ``batch_size`` face crops
    go through each extractor together;
    ``smoothing_sigma`` (frames, 0 = off) smooths the predictions of a video over time before the
    expression argmax and the per-AU thresholds of the model config.
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
        face_backend: str = "mediapipe",
        window: int = DEFAULT_WINDOW,
        max_gap: int = DEFAULT_MAX_GAP,
        batch_size: int = 32,
        windows_per_batch: int = 16,
        smoothing_sigma: float = DEFAULT_SMOOTHING_SIGMA,
        device: str | torch.device | None = None,
        allow_pickle: bool = False,
    ):
        from .faces import FaceDetector

        self.model = model.eval()
        self.config = model.config
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        if extractors is None:
            extractors, weights = build_extractors(
                self.config, checkpoints=checkpoints, model_id=model_id, revision=revision, allow_pickle=allow_pickle
            )
        else:
            missing = [name for name in self.config.feature_names if name not in extractors]
            if missing:
                raise PipelineError(f"extractors for {missing} are missing; the model uses {self.config.feature_names}")
            weights = [
                ExtractorWeights(
                    name, extractors[name].name, extractors[name].variant,
                    "random" if extractors[name].random_init else "checkpoint" if extractors[name].needs_checkpoint else "built-in",
                    extractors[name].checkpoint_file, extractors[name].checkpoint_sha256,
                )
                for name in self.config.feature_names
            ]
        self.extractors = {name: extractors[name].to(self.device).eval() for name in self.config.feature_names}
        self.weights_report = WeightsReport(str(model_id or getattr(self.config, "_name_or_path", "") or "(in memory)"),
                                            synthetic_training, weights)
        self.detector = detector if detector is not None else FaceDetector(face_backend, max_faces=4)
        self.window = max(1, min(int(window), self.config.max_window))
        self.max_gap = max(0, int(max_gap))
        self.batch_size = max(1, int(batch_size))
        self.windows_per_batch = max(1, int(windows_per_batch))
        self.smoothing_sigma = float(smoothing_sigma)
        self.timings: dict[str, float] = {}  # seconds per stage of the last call
        self.extractor_timings: dict[str, float] = {}  # seconds per extractor of the last call
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

        Window length and gap limit default to the model's ``train_config.yaml`` and the smoothing width
        to its tuned ``postprocessing.json`` when it has them.
        """
        from .model_loading import load_fusion_model

        model = load_fusion_model(model_id, revision=revision)
        train_config = _read_model_record(model_id, "train_config.yaml", revision)
        postprocessing = _read_model_record(model_id, "postprocessing.json", revision)
        kwargs.setdefault("window", train_config.get("window", DEFAULT_WINDOW))
        kwargs.setdefault("max_gap", train_config.get("max_gap", DEFAULT_MAX_GAP))
        kwargs.setdefault("smoothing_sigma", postprocessing.get("smoothing_sigma", DEFAULT_SMOOTHING_SIGMA))
        synthetic = None if "dataset" not in train_config else train_config["dataset"] == "synthetic"
        kwargs.setdefault("synthetic_training", synthetic)
        return cls(model, checkpoints=checkpoints, model_id=model_id, revision=revision, device=device, **kwargs)

    # ----- public entry points ---------------------------------------------------------------------------------

    def __call__(self, inputs, **kwargs) -> pd.DataFrame:
        """``inputs``: a video path, an image path, a folder of images, a list of image paths or
        RGB arrays, one RGB array, or a ``[N, H, W, 3]`` array of consecutive video frames."""
        if isinstance(inputs, (str, os.PathLike)):
            path = Path(inputs)
            if path.is_dir():
                images = sorted(p for p in path.iterdir() if _is_image_path(p))
                if not images:
                    raise PipelineError(f"{path}: folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
                return self.predict_images(images, **kwargs)
            if _is_image_path(path):
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
        problem = _VideoProblem()
        frames = _video_frames(path, problem)
        if max_frames is not None:
            frames = itertools.islice(frames, max_frames)  # stops decoding there
        table = self._run(frames, temporal=True)
        if problem.error is not None:
            message = f"{problem.error} - the table covers the {len(table)} frames decoded before it"
            warnings.warn(message, UserWarning, stacklevel=2)
            table.attrs["warnings"].append(message)
        return table

    def predict_frames(self, frames: Iterable[np.ndarray], *, source: str = "frames", fps: float | None = None) -> pd.DataFrame:
        """Consecutive video frames (RGB arrays, e.g. from a webcam): temporal windows and smoothing apply."""
        from .faces import as_rgb_uint8

        def generate() -> Iterator[_Frame]:
            for index, image in enumerate(frames):
                yield _Frame(source, index, index / fps if fps else None, as_rgb_uint8(image, source=f"{source} frame {index}"))

        return self._run(generate(), temporal=True)

    def predict_images(self, images: Iterable) -> pd.DataFrame:
        """Independent images (paths or RGB arrays): one row each, no temporal context."""
        return self._run(_image_frames(images), temporal=False)

    # ----- the streaming core ----------------------------------------------------------------------------------

    def _run(self, frames: Iterable[_Frame], *, temporal: bool) -> pd.DataFrame:
        from .faces import FaceTracker

        tracker = FaceTracker(self.detector, size=FACE_SIZE)
        timings = dict.fromkeys(("decode", "faces", "extractors", "fusion", "postprocess"), 0.0)
        self.timings = timings
        self.extractor_timings = dict.fromkeys(self.extractors, 0.0)
        sources, indices, times, boxes = [], [], [], []
        unreadable: dict[int, ImageReadError] = {}  # row -> why its image file could not be used
        run = _Run(temporal=temporal, timings=timings)
        pending_rows: list[int] = []
        pending_crops: list[np.ndarray] = []

        iterator = iter(frames)
        while True:
            started = time.perf_counter()
            frame = next(iterator, None)
            timings["decode"] += time.perf_counter() - started
            if frame is None:
                break
            if frame.image is None:
                unreadable[len(indices)] = frame.unreadable
                sources.append(frame.source)
                indices.append(frame.index)
                times.append(np.nan if frame.timestamp is None else frame.timestamp)
                boxes.append(np.full(4, np.nan, np.float32))
                continue
            started = time.perf_counter()
            if not temporal:
                tracker.reset()  # independent images: no track carries over
            tracked = tracker.update(frame.image, frame.index, frame.timestamp)
            timings["faces"] += time.perf_counter() - started
            row = len(indices)
            sources.append(frame.source)
            indices.append(frame.index)
            times.append(np.nan if frame.timestamp is None else frame.timestamp)
            boxes.append(tracked.face.box if tracked.face is not None else np.full(4, np.nan, np.float32))
            if tracked.aligned is not None:
                pending_rows.append(row)
                pending_crops.append(tracked.aligned)
            if len(pending_crops) >= self.batch_size:
                self._extract_batch(pending_rows, pending_crops, indices, run)
                pending_rows, pending_crops = [], []
        if pending_crops:
            self._extract_batch(pending_rows, pending_crops, indices, run)
        self._close_window(run)
        self._run_fusion(run)
        started = time.perf_counter()
        if unreadable and len(unreadable) == len(indices):  # nothing to predict on: the (first) file is the error
            first = next(iter(unreadable.values()))
            if len(unreadable) > 1:
                raise ImageReadError(f"none of the {len(unreadable)} images could be read; first: {first}",
                                     path=first.path, reason=first.reason)
            raise first
        table = self._table(sources, indices, times, boxes, run.predictions, temporal)
        for row, error in unreadable.items():
            table.loc[row, "note"] = f"{UNREADABLE_NOTE}: {error.reason}"
        if unreadable:
            table.attrs["warnings"].append(
                f"{len(unreadable)} of {len(table)} images could not be read; their rows are empty "
                f"and say why in the note column (first: {next(iter(unreadable.values()))})"
            )
        timings["postprocess"] += time.perf_counter() - started
        if not table.empty and not table["face_found"].any():
            table.attrs["warnings"].append(f"no face found in any of the {len(table)} frames")
        if table.empty:
            raise PipelineError("no frame or image to predict on")
        return table

    def _extract_batch(self, rows: list[int], crops: list[np.ndarray], indices: list[int], run: _Run) -> None:
        started = time.perf_counter()
        features, present = {}, {}
        for name, extractor in self.extractors.items():
            extractor_started = time.perf_counter()
            if hasattr(extractor, "extract_with_mask"):  # extractors that can miss a face on their own (fau)
                values, mask = extractor.extract_with_mask(crops, batch_size=self.batch_size)
            else:
                values = extractor.extract(crops, batch_size=self.batch_size)
                mask = torch.ones(len(crops), dtype=torch.bool)
            features[name], present[name] = values.float(), mask.bool()
            self.extractor_timings[name] += time.perf_counter() - extractor_started
        run.timings["extractors"] += time.perf_counter() - started
        for position, row in enumerate(rows):
            frame, window = indices[row], run.window
            if window.rows and (
                not run.temporal
                or len(window.rows) >= self.window
                or frame - window.frames[-1] > self.max_gap
                or frame - window.frames[0] >= self.config.max_window
            ):
                self._close_window(run)
            window = run.window
            window.rows.append(row)
            window.frames.append(frame)
            for name in self.extractors:
                window.features.setdefault(name, []).append(features[name][position])
                window.present.setdefault(name, []).append(present[name][position])

    def _close_window(self, run: _Run) -> None:
        """Queue the current window; a full queue goes through the model as one padded batch."""
        if run.window.rows:
            run.ready.append(run.window)
            run.window = _Window()
        if len(run.ready) >= self.windows_per_batch:
            self._run_fusion(run)

    @torch.inference_mode()
    def _run_fusion(self, run: _Run) -> None:
        """The queued windows through the fusion model at once (padded; padding is masked out)."""
        windows, run.ready = run.ready, []
        if not windows:
            return
        started = time.perf_counter()
        length = max(len(window.rows) for window in windows)
        attention_mask = torch.zeros(len(windows), length, dtype=torch.bool)
        frame_index = torch.zeros(len(windows), length, dtype=torch.long)
        features = {name: torch.zeros(len(windows), length, dim) for name, dim in self.config.feature_dims.items()}
        feature_mask = {name: torch.zeros(len(windows), length, dtype=torch.bool) for name in self.config.feature_names}
        for b, window in enumerate(windows):
            size = len(window.rows)
            attention_mask[b, :size] = True
            frame_index[b, :size] = torch.tensor(window.frames) - window.frames[0]
            for name in self.config.feature_names:
                features[name][b, :size] = torch.stack(window.features[name])
                feature_mask[name][b, :size] = torch.stack(window.present[name])
        output = self.model(
            features={name: value.to(self.device) for name, value in features.items()},
            attention_mask=attention_mask.to(self.device),
            feature_mask={name: value.to(self.device) for name, value in feature_mask.items()},
            frame_index=frame_index.to(self.device),
        )
        present = attention_mask.to(self.device)
        require_finite_outputs(
            {name: getattr(output, name)[present] for name in ("valence_arousal", "expression_logits", "au_logits")},
            "the fusion model",
        )
        values = torch.cat(
            [output.valence_arousal, output.expression_logits.softmax(-1), output.au_logits.sigmoid()], dim=-1
        ).float().cpu().numpy()
        for b, window in enumerate(windows):
            for position, row in enumerate(window.rows):
                run.predictions[row] = values[b, position]
        run.timings["fusion"] += time.perf_counter() - started

    def _table(self, sources, indices, times, boxes, predictions: dict[int, np.ndarray], temporal: bool) -> pd.DataFrame:
        from .postprocess import decide, smooth_predictions

        config = self.config
        expression_names = [config.id2label[i] for i in range(config.num_expressions)]
        au_names = list(config.au_names)
        count = len(indices)
        width = 2 + len(expression_names) + len(au_names)
        values = np.full((count, width), np.nan, dtype=np.float32)
        face_rows = np.array(sorted(predictions), dtype=np.int64)
        if len(face_rows):
            values[face_rows] = np.stack([predictions[row] for row in face_rows])
            if temporal and self.smoothing_sigma > 0 and len(face_rows) > 1:
                frames = np.asarray(indices, dtype=np.int64)[face_rows]
                videos = np.asarray(sources, dtype=object)[face_rows]
                values[face_rows] = smooth_predictions(
                    values[face_rows], videos, frames, sigma=self.smoothing_sigma, max_gap=self.max_gap
                )
        expression_probs = values[:, 2 : 2 + len(expression_names)]
        au_probs = values[:, 2 + len(expression_names) :]
        face_found = np.zeros(count, dtype=bool)
        face_found[face_rows] = True
        expression = np.full(count, None, dtype=object)
        au_on = pd.DataFrame({name: pd.array([pd.NA] * count, dtype="Int8") for name in au_names})
        if len(face_rows):
            expression_index, au_decisions = decide(expression_probs[face_rows], au_probs[face_rows], config.au_thresholds)
            expression[face_rows] = [expression_names[int(i)] for i in expression_index]
            for column, name in enumerate(au_names):
                au_on.loc[face_rows, name] = np.asarray(au_decisions)[:, column].astype(np.int8)
        box_array = np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
        table = pd.DataFrame(
            {
                "source": sources,
                "frame": np.asarray(indices, dtype=np.int64),
                "time": np.asarray(times, dtype=np.float64),
                "face_found": face_found,
                "face_x0": box_array[:, 0], "face_y0": box_array[:, 1],
                "face_x1": box_array[:, 2], "face_y1": box_array[:, 3],
                "valence": values[:, 0],
                "arousal": values[:, 1],
                "expression": expression,
                **{f"prob_{name}": expression_probs[:, i] for i, name in enumerate(expression_names)},
                **{f"{name}_prob": au_probs[:, i] for i, name in enumerate(au_names)},
            }
        )
        table = pd.concat([table, au_on], axis=1)
        table["note"] = np.where(face_found, "", NO_FACE_NOTE)
        table.attrs["warnings"] = list(self.weights_report.warnings)
        return table

    def close(self) -> None:
        """Release the face detector's and the extractors' native resources."""
        self.detector.close()
        for extractor in self.extractors.values():
            if hasattr(extractor, "close"):
                extractor.close()


def prediction_columns(expression_names: list[str], au_names: list[str]) -> list[str]:
    """The per-frame table's columns, in order."""
    return [
        "source", "frame", "time", "face_found", "face_x0", "face_y0", "face_x1", "face_y1",
        "valence", "arousal", "expression",
        *[f"prob_{name}" for name in expression_names],
        *[f"{name}_prob" for name in au_names],
        *au_names,
        "note",
    ]
