"""Frozen face feature extractors that load the official checkpoints.

``create_extractor("resnet18", checkpoint="resnet18_msceleb.pth").extract(images) -> [N, 512]``.
"""

from __future__ import annotations

from .base import IMAGENET_MEAN, IMAGENET_STD, Extractor, PreprocessConfig, preprocess_images
from .checkpoints import (
    CheckpointError,
    LoadReport,
    file_sha256,
    load_matching_state_dict,
    official_layout,
    read_checkpoint,
)
from .registry import create_extractor, get_extractor_class, list_extractors, register_extractor

# Importing a backbone module registers its extractor.
from . import eac, fau, poster_v1, poster_v2, resnet  # noqa: E402,F401
from . import audio_encoders, hf_vision, timm_backbone  # noqa: E402,F401  (open families: timm:, hf:, audio:)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckpointError",
    "Extractor",
    "LoadReport",
    "PreprocessConfig",
    "create_extractor",
    "preprocess_images",
    "file_sha256",
    "get_extractor_class",
    "list_extractors",
    "load_matching_state_dict",
    "official_layout",
    "read_checkpoint",
    "register_extractor",
]
