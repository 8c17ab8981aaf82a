"""The one loader of trained fusion models: `evaluate`, `tune`, `submit`, `predict`, the pipeline and the Space.

A model is a local folder written by `scripts/train.py` / `save_pretrained`, or a Hub id (read from the local
cache when offline). Every problem is a `ModelLoadError` that names the model and says what to do.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


class ModelLoadError(UserError, ValueError):
    """A model folder or Hub id that does not hold a loadable abaw_fusion model."""


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
        model = AutoModel.from_pretrained(str(model_id), revision=revision)
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
    return model.eval()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
