"""One reader for every official extractor checkpoint: unwrap, strip ``module.``, match strictly."""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from ..errors import UserError
from ..safe_pickle import UnsafePickleError, load_plain_pickle

# Wrappers the official training scripts put around the weights (POSTER V2, POSTER, EAC, ...).
STATE_DICT_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model1_state_dict")
_LISTED_KEYS = 20  # how many keys of each kind an error message shows
# Every key and shape of each official checkpoint, as its own code builds it (from the design notes).
LAYOUTS_FILE = Path(__file__).with_name("checkpoint_layouts.json")


def official_layout(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an official checkpoint (without ``module.``), from ``checkpoint_layouts.json``."""
    layouts = json.loads(LAYOUTS_FILE.read_text())
    if name not in layouts:
        raise ValueError(f"unknown checkpoint layout {name!r}; known layouts: {sorted(layouts)}")
    return {key: tuple(shape) for key, shape in layouts[name].items()}


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be read or does not fit the extractor."""


@dataclass
class LoadReport:
    """What a (possibly partial) load did."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_zip_checkpoint(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


class InertObject:
    """Stands in for a non-tensor object of a training checkpoint (a metrics recorder, an optimizer
    helper): its class is never imported and its code never runs, so weights-only loading stays safe."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass


def _torch_load_weights_only(path: Path) -> object:
    """``torch.load(weights_only=True)``; classes it does not know (e.g. POSTER V2's ``RecorderMeter``
    saved beside the weights) load as ``InertObject``."""
    with warnings.catch_warnings():
        # A plain (non-torch) pickle makes torch warn about its protocol before refusing it.
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            if not _is_zip_checkpoint(path):
                raise
            unknown = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            with torch.serialization.safe_globals([(InertObject, name) for name in unknown]):
                return torch.load(path, map_location="cpu", weights_only=True)


def _load_raw(path: Path, allow_pickle: bool) -> object:
    """The unpickled object: a PyTorch file through ``weights_only``; a plain pickle (the VGGFace2 numpy weights)
    through `abaw_hf.safe_pickle`'s restricted rule, or fully only with ``allow_pickle``."""
    try:
        return _torch_load_weights_only(path)
    except pickle.UnpicklingError as error:
        if _is_zip_checkpoint(path):
            if not allow_pickle:
                raise CheckpointError(
                    f"{path}: weights-only loading refuses this checkpoint ({str(error).splitlines()[0][:200]}); "
                    "if you trust the file, pass --allow-pickle (allow_pickle=True)"
                ) from error
            return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt file?): {error}"
        ) from error
    try:
        loaded = load_plain_pickle(path, allow_pickle=allow_pickle)
        if isinstance(loaded, int):  # the magic number of torch's legacy format, whose tensors weights_only refused
            if not allow_pickle:
                raise CheckpointError(f"{path}: weights-only loading refuses this legacy checkpoint; "
                                      "if you trust the file, pass --allow-pickle (allow_pickle=True)")
            return torch.load(path, map_location="cpu", weights_only=False)
        return loaded
    except CheckpointError:
        raise
    except UnsafePickleError as error:
        raise CheckpointError(str(error)) from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise CheckpointError(f"{path}: cannot unpickle the file (truncated or corrupt?): {error}") from error


def _unwrap_state_dict(obj: object, path: Path) -> Mapping:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    for wrapper_key in STATE_DICT_WRAPPER_KEYS:
        inner = obj.get(wrapper_key)
        if isinstance(inner, Mapping):
            return inner
    return obj


def read_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read an official checkpoint into a flat ``{key: tensor}`` dict without ``module.`` prefixes.

    ``torch.load(weights_only=True)``; plain pickles of numpy arrays through the restricted unpickler; anything
    else only with ``allow_pickle``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    state = _unwrap_state_dict(_load_raw(path, allow_pickle), path)
    tensors: dict[str, torch.Tensor] = {}
    not_tensors = []
    for key, value in state.items():
        name = str(key).removeprefix("module.")
        if isinstance(value, torch.Tensor):
            tensors[name] = value
        elif isinstance(value, np.ndarray):
            tensors[name] = torch.from_numpy(np.array(value))
        else:
            not_tensors.append(str(key))
    if not_tensors:
        raise CheckpointError(
            f"{path}: not a state dict; these entries are not tensors: {_listing(not_tensors)}. "
            f"Known wrappers are {list(STATE_DICT_WRAPPER_KEYS)}; weights stored as other objects "
            "(numpy arrays) load only with allow_pickle=True, for trusted files."
        )
    if not tensors:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    return tensors


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED_KEYS])
    more = f" ... and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else ""
    return f"[{shown}{more}] ({len(keys)} in all)"


def load_matching_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str | Path, strict: bool = True
) -> LoadReport:
    """Copy ``state_dict`` into ``module`` when keys and shapes match exactly.

    Missing ``num_batches_tracked`` counters are tolerated (old BatchNorm files lack them, and eval
    ignores them). With ``strict=False`` missing/unexpected keys are allowed, but shape mismatches and a
    checkpoint sharing no key with the module are still errors.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    matched = [k for k in own if k in state_dict and tuple(state_dict[k].shape) == tuple(own[k].shape)]
    problems = []
    if mismatched:
        problems.append(f"shape mismatches {_listing(mismatched)}")
    if strict and missing:
        problems.append(f"missing keys {_listing(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if not matched:
        problems.append("no key of the checkpoint matches the model (a checkpoint for another architecture?)")
    if problems:
        partial_would_work = strict and matched and not mismatched
        hint = " Pass strict=False to load only the matching keys." if partial_would_work else ""
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: {'; '.join(problems)}.{hint}")
    with torch.no_grad():
        for key in matched:
            own[key].copy_(state_dict[key].to(own[key].dtype))
    return LoadReport(path=str(source), loaded=matched, missing=missing, unexpected=unexpected)
