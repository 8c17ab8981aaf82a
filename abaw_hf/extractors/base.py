"""Extractor base class: declared preprocessing, batched extraction, official-checkpoint loading."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import LoadReport, file_sha256, load_matching_state_dict, read_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """What an extractor's checkpoint expects, like timm's ``pretrained_cfg``.

    ``mean``/``std`` are given in the checkpoint's own channel order (``color_order``).
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: Literal["RGB", "BGR"] = "RGB"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.color_order not in ("RGB", "BGR"):
            raise ValueError(f"color_order must be 'RGB' or 'BGR', got {self.color_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need three values, one per channel")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["mean"], values["std"] = list(self.mean), list(self.std)
        return values

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The preprocessed image's shape, (3, height, width)."""
        return (3, self.input_size, self.input_size)


class ModelPreprocess:
    """Preprocessing that comes from the model itself (timm's data config, a transformers image processor) instead
    of a `PreprocessConfig`: ``input_shape`` and ``__call__(list of HxWx3 uint8 RGB) -> float [N, 3, H, W]``.
    Instances are plain data (DataLoader workers preprocess without any weights) and compare by what they do."""

    input_shape: tuple[int, int, int]

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __repr__(self) -> str:  # stable across processes: ONNX cache keys and resume fingerprints read it
        return f"{type(self).__name__}({self.to_dict()!r})"


def preprocess_images(
    images: torch.Tensor | np.ndarray | Sequence[np.ndarray], cfg: PreprocessConfig, name: str = "preprocess"
) -> torch.Tensor:
    """RGB uint8 images (a list of HxWx3 arrays, or one [N,H,W,3] array) -> normalised [N,3,S,S] as ``cfg`` says.

    A float tensor [N,3,S,S] is taken as already preprocessed and passed through. ``name`` (the extractor's)
    starts error messages. A plain function of the config: DataLoader workers preprocess without any weights.
    """
    shape = tuple(cfg.input_shape)
    size = ",".join(map(str, shape[1:]))
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{name}: a tensor input must be a preprocessed float batch [N,3,{size}], "
                f"got dtype {images.dtype} shape {tuple(images.shape)}; pass raw images as uint8 numpy "
                "arrays [N,H,W,3] or a list of HxWx3 arrays"
            )
        if tuple(images.shape[1:]) != shape:
            raise ValueError(f"{name}: preprocessed input must be [N,3,{size}], got {tuple(images.shape)}")
        return images.float()
    if isinstance(cfg, ModelPreprocess):  # the model's own transform, image by image
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if isinstance(images, np.ndarray) or not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            raise ValueError(f"{name}: expected a list of HxWx3 uint8 RGB arrays or a uint8 array [N,H,W,3], "
                             f"got {type(images).__name__}")
        if len(images) == 0:
            raise ValueError(f"{name}: no images given")
        for index, image in enumerate(images):
            _check_uint8(image, name, expected_ndim=3, what=f"image {index}")
        return cfg(images).float()
    if isinstance(images, np.ndarray):
        _check_uint8(images, name, expected_ndim=4, what="an image batch")
        return _normalise(_resize(torch.from_numpy(np.ascontiguousarray(images)), cfg), cfg)
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        if len(images) == 0:
            raise ValueError(f"{name}: no images given")
        resized = []
        for index, image in enumerate(images):
            _check_uint8(image, name, expected_ndim=3, what=f"image {index}")
            resized.append(_resize(torch.from_numpy(np.ascontiguousarray(image))[None], cfg))
        return _normalise(torch.cat(resized), cfg)
    raise ValueError(
        f"{name}: expected a list of HxWx3 uint8 RGB arrays, a uint8 array [N,H,W,3] or a float "
        f"tensor [N,3,{size}], got {type(images).__name__}"
    )


def _check_uint8(image: object, name: str, *, expected_ndim: int, what: str) -> None:
    shape_text = "[N,H,W,3]" if expected_ndim == 4 else "HxWx3"
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        found = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{name}: {what} must be a uint8 RGB numpy array {shape_text}, got {found}")
    if image.ndim != expected_ndim or image.shape[-1] != 3:
        raise ValueError(f"{name}: {what} must have shape {shape_text} (RGB, channels last), got {image.shape}")


def _resize(batch_hwc: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 [N,H,W,3] -> float [N,3,S,S] in 0..255; images already at size are untouched."""
    batch = batch_hwc.permute(0, 3, 1, 2).float()
    size = cfg.input_size
    if tuple(batch.shape[2:]) == (size, size):
        return batch
    smooth = cfg.interpolation in ("bilinear", "bicubic")
    resized = F.interpolate(
        batch, size=(size, size), mode=cfg.interpolation, align_corners=False if smooth else None, antialias=smooth
    )
    return resized.round().clamp(0, 255)  # as if resized in uint8 (PIL), the official pipelines


def _normalise(batch: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    if cfg.color_order == "BGR":
        batch = batch.flip(1)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    return (batch / 255.0 - mean) / std


class Extractor(nn.Module):
    """A frozen face network mapping images to one ``dim``-wide feature vector each.

    Subclasses set ``dim``, ``preprocess_cfg`` and ``layouts`` (variant -> layout name in
    ``checkpoint_layouts.json``; the first entry is the default variant) and implement ``forward``;
    ``@register_extractor(name)`` sets ``name``.
    Images are always given as RGB; ``preprocess`` flips to BGR when the checkpoint needs it.
    """

    name: ClassVar[str] = ""
    dim: ClassVar[int] = 0
    preprocess_cfg: ClassVar[PreprocessConfig] = PreprocessConfig()
    layouts: ClassVar[dict[str | None, str]] = {None: ""}
    # Variants whose checkpoint expects other preprocessing than the class's ``preprocess_cfg``.
    variant_preprocess: ClassVar[dict[str, PreprocessConfig]] = {}
    # False for extractors without learned weights to load (e.g. OpenFace AUs via an external program).
    needs_checkpoint: ClassVar[bool] = True
    # Convolution-heavy networks run faster on CPU (oneDNN) and GPU (cuDNN) in NHWC layout; the
    # registry converts them, and extract() feeds them NHWC batches. Values and keys are unchanged.
    channels_last: ClassVar[bool] = False
    # Networks torch.fx can trace: extract() runs a copy with BatchNorm folded into the
    # preceding convolutions, which removes a memory pass per conv; this module's weights stay as loaded.
    fold_batchnorm: ClassVar[bool] = False
    # True for extractors that look for the face in the crop themselves and can miss it (fau): their
    # ``extract_with_mask`` says which rows got a vector, and ``forward`` alone does not.
    may_miss_faces: ClassVar[bool] = False
    # What the extractor reads: "image" (face crops) or "audio" (the video's sound track, `extractors.audio_encoders`).
    modality: ClassVar[str] = "image"
    # Families whose variant is open (`timm:<model>`, `hf:<folder>`, `audio:<folder>`): the instance's ``name`` is
    # its feature column (``timm_<model>``...), the class's registered name the family's.
    open_family: ClassVar[bool] = False
    # Measured faster under onnxruntime than eager torch on CPU (bench_runtime.py): ``--runtime auto`` runs it there.
    onnx_on_cpu: ClassVar[bool] = False

    def __init__(self, variant: str | None = None) -> None:
        super().__init__()
        self.variant = self.resolve_variant(variant)
        self.preprocess_cfg = self.variant_preprocess.get(self.variant, type(self).preprocess_cfg)
        self.checkpoint_file: str | None = None
        self.checkpoint_sha256: str | None = None
        self._folded: dict = {}  # weights fingerprint -> BatchNorm-folded copy (not a submodule)

    @classmethod
    def resolve_variant(cls, variant: str | None) -> str | None:
        known = list(cls.layouts)
        if variant is None:
            return known[0]
        if variant not in cls.layouts:
            raise ValueError(f"extractor {cls.name!r} has no variant {variant!r}; known variants: {known}")
        return variant

    @property
    def layout(self) -> str:
        """Name of the official checkpoint layout this instance reproduces."""
        return self.layouts[self.variant]

    @property
    def random_init(self) -> bool:
        return self.needs_checkpoint and self.checkpoint_sha256 is None

    # -- preprocessing -------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor | np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """``preprocess_images`` with this extractor's ``preprocess_cfg``."""
        return preprocess_images(images, self.preprocess_cfg, self.name)

    # -- inference -----------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Preprocessed [N,3,S,S] -> features [N, dim]."""
        raise NotImplementedError

    def inference_module(self) -> nn.Module:
        """What ``extract`` runs (in eval mode): ``self``, or a BatchNorm-folded copy of it that is
        rebuilt whenever the weights change (loaded, moved, edited in place)."""
        if not self.fold_batchnorm:
            return self
        fingerprint = tuple((t.device, t.data_ptr(), t._version) for t in self.state_dict().values())
        if fingerprint not in self._folded:
            from torch.fx.experimental.optimization import fuse

            self._folded = {}  # fuse() deep-copies self: drop the stale copy first
            folded = fuse(self, inplace=False).eval()
            if self.channels_last:
                folded = folded.to(memory_format=torch.channels_last)
            self._folded = {fingerprint: folded}  # keep one copy
        return self._folded[fingerprint]

    def extract(self, images, batch_size: int = 32) -> torch.Tensor:
        """Batched features [N, dim] (float32, eval mode, no autograd) for raw or preprocessed images."""
        pixel_values = self.preprocess(images)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            model = self.inference_module()
            with torch.inference_mode():
                chunks = [
                    model(pixel_values[start : start + batch_size].to(device, memory_format=memory_format)).float().cpu()
                    for start in range(0, len(pixel_values), batch_size)
                ]
        finally:
            self.train(was_training)
        return torch.cat(chunks)

    def extract_with_mask(self, images, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [N, dim], present [N] bool)``: every row present here; extractors that can miss a face
        (``may_miss_faces``) override it."""
        features = self.extract(images, batch_size)
        return features, torch.ones(len(features), dtype=torch.bool)

    def close(self) -> None:
        """Release native resources (fau's MediaPipe graph); a plain network holds none."""

    # -- checkpoints ---------------------------------------------------------------------------
    def load_checkpoint(self, path: str | Path, *, strict: bool = True, allow_pickle: bool = False) -> LoadReport:
        """Load an official checkpoint file (layout ``self.layout``); see ``read_checkpoint``."""
        state_dict = self.convert_state_dict(read_checkpoint(path, allow_pickle=allow_pickle))
        report = load_matching_state_dict(self, state_dict, source=path, strict=strict)
        if report.missing or report.unexpected:
            warnings.warn(
                f"{path}: partial load into {self.name!r}: {len(report.missing)} weights keep their random values "
                f"{report.missing[:10]}, {len(report.unexpected)} checkpoint entries ignored {report.unexpected[:10]}",
                UserWarning,
                stacklevel=2,
            )
        self.checkpoint_file = Path(path).name
        self.checkpoint_sha256 = file_sha256(path)
        return report

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hook for layouts whose file keys differ from the module's; identity by default."""
        return state_dict

    def provenance(self) -> dict:
        """Where the features come from, for the model config's ``extractors`` block."""
        return {
            "name": self.name,
            "variant": self.variant,
            "dim": self.dim,
            "layout": self.layout,
            "preprocessing": self.preprocess_cfg.to_dict(),
            "checkpoint": self.checkpoint_file,
            "sha256": self.checkpoint_sha256,
            "random_init": self.random_init,
        }

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
