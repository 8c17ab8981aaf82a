"""The one loader of trained fusion models: `evaluate`, `tune`, `submit`, `predict`, the pipeline and the Space.

A model is a local folder written by `scripts/train.py` / `save_pretrained`, or a Hub id (read from the local
cache when offline). Every problem is a `ModelLoadError` that names the model and says what to do.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .errors import UserError, require_path


class ModelLoadError(UserError, ValueError):
    """A model folder or Hub id that does not hold a loadable abaw_fusion model."""


# the modeling code save_pretrained copies beside the weights (auto_map: loads with trust_remote_code)
MODELING_FILES = tuple(sorted(path.name for path in (Path(__file__).parent / "modeling").glob("*_abaw_fusion.py")))


def load_fusion_model(model_id: str | Path, *, revision: str | None = None, flag: str = "--model"):
    """An `AbawFusionModel` in eval mode, from a local folder or a Hub id."""
    from transformers import AutoConfig, AutoModel

    from huggingface_hub.errors import StrictDataclassError

    from .modeling import AbawFusionModel
    from .modeling.configuration_abaw_fusion import config_problem

    path = require_path(model_id, flag).expanduser()  # '' is no model (Path('') would be the current folder)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{flag} {model_id}: is a file; give the model folder (config.json + model.safetensors)")
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{flag} {model_id}: no config.json in this folder; give a folder written by scripts/train.py "
                "(the run's output_dir) or by save_pretrained"
            )
        model_id = str(path)
        check_weights_file(path, f"{flag} {model_id}")
    from safetensors import SafetensorError

    try:
        with _quiet_transformers():  # our own message below names every problem once
            config = AutoConfig.from_pretrained(str(model_id), revision=revision)
            model, info = AutoModel.from_pretrained(
                str(model_id), config=config, revision=revision, output_loading_info=True,
                ignore_mismatched_sizes=True, use_safetensors=True,
            )
    except ModelLoadError:
        raise
    except SafetensorError as error:  # a truncated or garbage weights file (also one from the Hub cache)
        raise ModelLoadError(f"{flag} {model_id}: model.safetensors is damaged ({_first_line(error)}); "
                             "copy or download the model folder again") from error
    except OSError as error:
        if path.exists():
            raise ModelLoadError(f"{flag} {model_id}: {_first_line(error)}") from error
        raise ModelLoadError(
            f"{flag} {model_id}: no such folder ({path.resolve()}), and not a Hub model this machine can load "
            f"({_first_line(error)}); "
            "check the path, or download the model while online"
        ) from error
    except (ValueError, TypeError, KeyError, StrictDataclassError) as error:  # a config.json that no model can have
        raise ModelLoadError(f"{flag} {model_id}: config.json is not a valid abaw_fusion config ({config_problem(error)})") from error
    if not isinstance(model, AbawFusionModel):
        raise ModelLoadError(f"{flag} {model_id}: not an abaw_fusion model (got {type(model).__name__})")
    check_weights(model, info, f"{flag} {model_id}")
    return model.eval()


def check_weights_file(folder: Path, where: str) -> None:
    """A local model folder holds readable safetensors weights: never a pickle (which could run code), never a
    truncated or garbage file (named, instead of the safetensors library's traceback)."""
    from safetensors import SafetensorError, safe_open

    weights = folder / "model.safetensors"
    if not weights.is_file() and not (folder / "model.safetensors.index.json").is_file():
        pickled = [name for name in ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")
                   if (folder / name).is_file()]
        if pickled:
            raise ModelLoadError(
                f"{where}: holds {pickled[0]}, a pickle (loading it could run code), and no model.safetensors; abaw_hf "
                "loads safetensors only: convert it where you trust the file (save_pretrained(safe_serialization=True))"
            )
        raise ModelLoadError(f"{where}: no model.safetensors in this folder; give the folder save_pretrained wrote")
    if weights.is_file():
        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelLoadError(f"{where}: model.safetensors is damaged ({_first_line(error)}); "
                                 "copy the model folder again") from None


def _config_mismatch(model, loading_info: dict) -> str | None:
    """Which config.json field disagrees with the weights file, when the keys or shapes tell: the number of layers
    from the layer keys, the width from the shapes."""
    import re

    config = model.config
    missing = [str(k) for k in loading_info.get("missing_keys") or []]
    unexpected = [str(k) for k in loading_info.get("unexpected_keys") or []]
    layer = re.compile(r"(?:^|\.)layers\.(\d+)\.")
    model_layers = {int(m.group(1)) for k in model.state_dict() if (m := layer.search(k))}
    file_layers = (model_layers - {int(m.group(1)) for k in missing if (m := layer.search(k))}) | {
        int(m.group(1)) for k in unexpected if (m := layer.search(k))}
    if file_layers and len(file_layers) != config.num_hidden_layers:
        return (f"config.json's num_hidden_layers is {config.num_hidden_layers}, but model.safetensors holds "
                f"{len(file_layers)} layer(s)")
    for item in loading_info.get("mismatched_keys") or []:
        if isinstance(item, (tuple, list)) and len(item) == 3:
            key, file_shape, model_shape = item
            return (f"config.json describes {key} as {list(model_shape)} (hidden_size {config.hidden_size}, "
                    f"num_attention_heads {config.num_attention_heads}, mlp_ratio {config.mlp_ratio}, feature_dims "
                    f"{config.feature_dims}), but model.safetensors holds {list(file_shape)}")
    return None


def check_weights(model, loading_info: dict, where: str) -> None:
    """Broken weights never give predictions: every tensor of the architecture must come from the file, with
    its shape, and be finite. Otherwise transformers would fill the gaps with fresh random values."""
    problems = []
    for kind, label in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"), ("mismatched_keys", "wrong shape")):
        keys = [item[0] if isinstance(item, (tuple, list)) else item for item in loading_info.get(kind) or []]
        if keys:
            problems.append(f"{len(keys)} {label} ({_listing(sorted(map(str, keys)))})")
    if problems:
        field = _config_mismatch(model, loading_info)
        if field:
            raise ModelLoadError(f"{where}: {field}; config.json was edited or belongs to another model "
                                 f"({'; '.join(problems)})")
        raise ModelLoadError(
            f"{where}: model.safetensors does not match config.json: {'; '.join(problems)}; "
            "the weights file is damaged or from another model: copy the model folder again"
        )
    bad = [name for name, tensor in model.state_dict().items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        raise ModelLoadError(f"{where}: NaN or Inf in weight tensor(s) {_listing(bad)}; the weights are unusable")


def require_finite_outputs(outputs: dict, where: str) -> None:
    """A non-finite model output is an error, never a decision (valence NaN beside a confident expression)."""
    import torch

    bad = [name for name, tensor in outputs.items() if isinstance(tensor, torch.Tensor) and not tensor.isfinite().all()]
    if bad:
        raise ModelLoadError(f"{where}: the model produced NaN/Inf in {', '.join(bad)}; its weights or inputs are broken")


def _listing(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    from .console import no_progress_bars

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with no_progress_bars():  # no "Loading weights" bar (--debug shows it)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
