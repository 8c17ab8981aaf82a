"""Name -> extractor class registry."""

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


def list_extractors() -> list[str]:
    return sorted(_REGISTRY)


def get_extractor_class(name: str) -> type[Extractor]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownExtractorError(f"unknown extractor {name!r}; known extractors: {list_extractors()}") from None


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
