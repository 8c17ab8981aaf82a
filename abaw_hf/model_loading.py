"""The one loader of trained fusion models: `evaluate`, `tune`, `submit`, `predict`, the pipeline and the Space.

A model is a local folder written by `scripts/train.py` / `save_pretrained`, or a Hub id (read from the local
cache when offline). Every problem is a `ModelLoadError` that names the model and says what to do.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .errors import UserError


class ModelLoadError(UserError, ValueError):
    """A model folder or Hub id that does not hold a loadable abaw_fusion model."""


# the modeling code save_pretrained copies beside the weights (auto_map: loads with trust_remote_code)
MODELING_FILES = tuple(sorted(path.name for path in (Path(__file__).parent / "modeling").glob("*_abaw_fusion.py")))


def load_fusion_model(model_id: str | Path, *, revision: str | None = None, flag: str = "--model"):
    """An `AbawFusionModel` in eval mode, from a local folder or a Hub id."""
    from transformers import AutoModel

    from .modeling import AbawFusionModel

    path = Path(model_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{flag} {model_id}: is a file; give the model folder (config.json + model.safetensors)")
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{flag} {model_id}: no config.json in this folder; give a folder written by scripts/train.py "
                "(the run's output_dir) or by save_pretrained"
            )
        model_id = str(path)
    try:
        with _quiet_transformers():  # our own message below names every problem once
            model, info = AutoModel.from_pretrained(
                str(model_id), revision=revision, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except OSError as error:
        if path.exists():
            raise ModelLoadError(f"{flag} {model_id}: {_first_line(error)}") from error
        raise ModelLoadError(
            f"{flag} {model_id}: no such folder, and not a Hub model this machine can load ({_first_line(error)}); "
            "check the path, or download the model while online"
        ) from error
    except (ValueError, TypeError, KeyError) as error:  # a config.json that does not describe a valid model
        raise ModelLoadError(f"{flag} {model_id}: config.json is not a valid abaw_fusion config ({_first_line(error)})") from error
    if not isinstance(model, AbawFusionModel):
        raise ModelLoadError(f"{flag} {model_id}: not an abaw_fusion model (got {type(model).__name__})")
    check_weights(model, info, f"{flag} {model_id}")
    return model.eval()


def check_weights(model, loading_info: dict, where: str) -> None:
    """Broken weights never give predictions: every tensor of the architecture must come from the file, with
    its shape, and be finite. Otherwise transformers would fill the gaps with fresh random values."""
    problems = []
    for kind, label in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"), ("mismatched_keys", "wrong shape")):
        keys = [item[0] if isinstance(item, (tuple, list)) else item for item in loading_info.get(kind) or []]
        if keys:
            problems.append(f"{len(keys)} {label} ({_listing(sorted(map(str, keys)))})")
    if problems:
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

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
