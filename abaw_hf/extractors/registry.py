"""Name -> extractor class registry, and the one place an extractor spec becomes an extractor.

Named extractors (``resnet18``, ``poster2``, ...) are classes registered under their name; open families
(``timm``, ``hf``, ``audio``) are classes registered under the family's name whose variant is any model
(``timm:convnext_tiny``, ``hf:facebook/dinov2-small:cls``, ``audio:microsoft/wavlm-base-plus``). Everything that
lists extractors (schema dims, the ONNX choice, synthetic data, ablations) reads this registry.
"""

from __future__ import annotations

import contextlib
import warnings
import zlib
from pathlib import Path

import torch

from ..errors import UserError
from .base import Extractor

_REGISTRY: dict[str, type[Extractor]] = {}


class UnknownExtractorError(UserError, ValueError):
    """A name that no registered extractor has."""


def register_extractor(name: str):
    """Class decorator: register an ``Extractor`` subclass under ``name`` (also sets ``cls.name``)."""

    def decorate(cls: type[Extractor]) -> type[Extractor]:
        if not (isinstance(cls, type) and issubclass(cls, Extractor)):
            raise TypeError(f"{cls!r} is not an Extractor subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"extractor name {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_extractors(*, open_families: bool = False) -> list[str]:
    """The named extractors (each one feature column of its own name); ``open_families=True`` adds ``timm``, ``hf``
    and ``audio``, whose columns are named per model."""
    return sorted(name for name, cls in _REGISTRY.items() if open_families or not cls.open_family)


def named_extractor_dims() -> dict[str, int]:
    """Feature width of every named extractor (open families have a width per model), in registry order."""
    return {name: int(cls.dim) for name, cls in _REGISTRY.items() if not cls.open_family}


def cpu_onnx_networks() -> frozenset[str]:
    """Named extractors that declare onnxruntime faster than torch on CPU (``onnx_on_cpu``): ``--runtime auto``."""
    return frozenset(name for name, cls in _REGISTRY.items() if cls.onnx_on_cpu)


def get_extractor_class(name: str) -> type[Extractor]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownExtractorError(
            f"unknown extractor {name!r}; known extractors: {list_extractors()}, and any model through "
            "timm:<model>[=<weights file>], hf:<repo or folder>[:cls|mean|pooler], audio:<repo or folder>"
        ) from None


def random_init_seed(*parts: object) -> int:
    """A seed for random extractor weights that depends only on `parts` (e.g. the model's config and the
    extractor's name), so every process that builds the same model gets the same random network."""
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0x7FFFFFFF


def create_extractor(
    name: str,
    variant: str | None = None,
    checkpoint: str | Path | None = None,
    *,
    strict: bool = True,
    allow_pickle: bool = False,
    random_seed: int | None = None,
    **kwargs,
) -> Extractor:
    """Build extractor ``name`` in eval mode, loading ``checkpoint`` when given (random weights otherwise).

    Without a checkpoint, ``random_seed`` makes the random weights reproducible without touching the global RNG.
    """
    extractor_class = get_extractor_class(name)
    if extractor_class.open_family:  # the model itself says how it is built, loaded and preprocessed
        return extractor_class.from_spec(variant, checkpoint, random_seed=random_seed, allow_pickle=allow_pickle,
                                         **kwargs).eval()
    seeded = checkpoint is None and random_seed is not None
    with torch.random.fork_rng(devices=[]) if seeded else contextlib.nullcontext():
        if seeded:
            torch.manual_seed(random_seed)
        extractor = extractor_class(variant=variant, **kwargs)
    if extractor.channels_last:
        extractor.to(memory_format=torch.channels_last)
    if checkpoint is None and extractor.needs_checkpoint:
        warnings.warn(
            f"extractor {name!r} (variant {extractor.variant!r}) has NO checkpoint: it runs with RANDOM "
            "weights and its features are meaningless for affect recognition. Pass checkpoint=<official file>.",
            UserWarning,
            stacklevel=2,
        )
    elif checkpoint is not None:
        extractor.load_checkpoint(checkpoint, strict=strict, allow_pickle=allow_pickle)
    return extractor.eval()
