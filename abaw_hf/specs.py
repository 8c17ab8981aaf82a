"""How the command line names things, with one syntax and one meaning in every subcommand:

- ``NAME=VALUE`` pairs: ``--annotations SPLIT=FILE``, ``--features NAME=FILE.npy`` (build), ``--input-size
  NAME=PIXELS`` (extract), ``--checkpoint FEATURE=PATH`` (predict), ``--extractor-checkpoint FEATURE=PATH`` (push);
- extractor specifications ``--extractor NAME[:VARIANT][=CHECKPOINT]`` (build and extract): a registered
  extractor, its variant, and the official checkpoint to load; without one, an extractor that needs weights runs
  only with ``--random-init`` (tests and benchmarks). The open families read the same way:
  ``timm:<model>[=<weights file>]`` (without a file: the Hub weights timm names, or random with ``--random-init``),
  ``hf:<repo id or folder>[:cls|mean|pooler]`` and ``audio:<repo id or folder>`` (the weights are the model's own).
  Each extractor writes one column, named after it (``resnet18``, ``timm_<model>``, ``hf_<name>_<pooling>``,
  ``audio_<name>``); two specs that would write the same column are refused.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

from .errors import UserError

EXTRACTOR_SPEC = "NAME[:VARIANT][=CHECKPOINT]"
OPEN_SPEC_HELP = "timm:<model>[=<weights file>], hf:<repo or folder>[:cls|mean|pooler], audio:<repo or folder>"


class ExtractorSpec(NamedTuple):
    name: str
    variant: str | None
    checkpoint: str | None


def parse_assignment(text: str, flag: str, form: str = "NAME=VALUE") -> tuple[str, str]:
    """``NAME=VALUE`` -> (name, value); both parts must be there."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        shown = "NAME=VALUE" if form == "NAME=VALUE" else f"NAME=VALUE ({form})"
        raise UserError(f"{flag} expects {shown}, got {text!r}")
    return name, value


def parse_assignments(values: Sequence[str] | None, flag: str, form: str = "NAME=VALUE") -> list[tuple[str, str]]:
    """Every ``NAME=VALUE`` of a repeated flag, in the order given."""
    return [parse_assignment(text, flag, form) for text in values or []]


def parse_extractor_spec(text: str, flag: str = "--extractor") -> ExtractorSpec:
    """``name[:variant][=checkpoint]`` -> ExtractorSpec(name, variant or None, checkpoint or None)."""
    head, _, checkpoint = text.partition("=")
    name, _, variant = head.partition(":")
    if not name:
        raise UserError(f"{flag} expects {EXTRACTOR_SPEC}, got {text!r}")
    return ExtractorSpec(name, variant or None, checkpoint or None)


def _open_spec(text: str, flag: str) -> ExtractorSpec:
    """``hf:`` and ``audio:`` sources may hold ``:`` (``hf:folder:cls``); only ``timm:`` takes ``=FILE``."""
    family, _, rest = text.partition(":")
    if family == "timm":
        return parse_extractor_spec(text, flag)
    if not rest:
        raise UserError(f"{flag} {text}: name a model, e.g. {family}:facebook/dinov2-small or {family}:path/to/folder")
    return ExtractorSpec(family, rest, None)


def create_extractors(
    specs: Sequence[str], *, random_init: bool = False, allow_pickle: bool = False,
    input_sizes: Sequence[tuple[str, int]] = (), flag: str = "--extractor", audio_window: float | None = None,
) -> list:
    """The extractors ``--extractor`` names, checkpoints loaded; ``input_sizes`` overrides preprocessing sizes by
    name (recorded in the provenance); ``audio_window`` is the window (seconds) of ``audio:`` extractors."""
    from .extractors import create_extractor, get_extractor_class
    from .extractors.registry import random_init_seed

    sizes = dict(input_sizes)
    extractors, columns = [], {}
    for text in specs:
        name = parse_extractor_spec(text, flag).name
        extractor_class = get_extractor_class(name)
        if extractor_class.open_family:
            _, variant, checkpoint = _open_spec(text, flag)
            options = {"window_seconds": audio_window} if extractor_class.modality == "audio" and audio_window else {}
            extractor = create_extractor(name, variant, checkpoint, allow_pickle=allow_pickle, pretrained=not random_init,
                                         random_seed=random_init_seed(name, variant), **options)
        else:
            _, variant, checkpoint = parse_extractor_spec(text, flag)
            if checkpoint is None and not random_init and extractor_class.needs_checkpoint:
                raise UserError(
                    f"{flag} {name} has no checkpoint (write {name}=PATH); "
                    "pass --random-init to run it with random weights (tests and benchmarks only)"
                )
            # random weights (tests and benchmarks) depend on the extractor only: every process builds the same
            extractor = create_extractor(name, variant, checkpoint, allow_pickle=allow_pickle,
                                         random_seed=random_init_seed(name, variant))
        if extractor.name in columns:
            raise UserError(f"{flag} {text} and {flag} {columns[extractor.name]} would both write column "
                            f"{extractor.name!r}; give each column its own extractor")
        columns[extractor.name] = text
        if extractor.name in sizes:
            if extractor.open_family:
                raise UserError(f"--input-size {extractor.name}: the preprocessing of {text} is the model's own "
                                "(its data config or image processor); --input-size is for the named extractors")
            extractor.preprocess_cfg = dataclasses.replace(extractor.preprocess_cfg, input_size=sizes.pop(extractor.name))
        extractors.append(extractor)
    if sizes:
        raise UserError(f"--input-size names extractors that are not given: {sorted(sizes)}")
    return extractors


def parse_input_sizes(values: Sequence[str] | None, flag: str = "--input-size") -> list[tuple[str, int]]:
    """``NAME=PIXELS`` pairs with a positive whole number of pixels."""
    sizes = []
    for name, value in parse_assignments(values, flag, "NAME=PIXELS"):
        if not value.isdigit() or int(value) <= 0:
            raise UserError(f"{flag} {name}={value}: PIXELS must be a positive whole number")
        sizes.append((name, int(value)))
    return sizes
