"""Files beside a model's weights, from a local folder or a Hub repo, and the inference settings they hold.

The one reader of a model's side files (`train_config.yaml`, `postprocessing.json`, `extractors/*.safetensors`)
for the pipeline, `evaluate`, `tune` and `submit`; and :func:`inference_settings`, the one rule for which window,
gap and smoothing width a trained model is run with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .segments import DEFAULT_MAX_GAP, DEFAULT_WINDOW

TRAIN_CONFIG_FILE = "train_config.yaml"  # training's settings, saved beside the weights
POSTPROCESSING_FILE = "postprocessing.json"  # what `abaw-hf tune` chose
DEFAULT_SMOOTHING_SIGMA = 2.0  # frames; a tuned model's own width replaces it


class ModelFileError(UserError, ValueError):
    """A side file of a model that cannot be read; the message names it."""


def model_file(model_id: str | Path, filename: str, revision: str | None = None) -> Path | None:
    """``filename`` of a local model folder or a Hub repo (the local cache when offline), or None when it has none."""
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        path = folder / filename
        return path if path.is_file() else None
    if folder.exists() or not str(model_id):
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(str(model_id), filename, revision=revision))
    except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, HFValidationError):
        return None


def read_model_record(model_id: str | Path, filename: str, revision: str | None = None) -> dict:
    """A YAML/JSON mapping saved beside the weights; {} when the model has none."""
    import yaml

    path = model_file(model_id, filename, revision)
    if path is None:
        return {}
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # YAML reads JSON too
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: not valid YAML/JSON ({error})") from error
    if not isinstance(values, dict):
        raise ModelFileError(f"{path}: expected a mapping of settings, found {type(values).__name__}")
    return values


@dataclass(frozen=True)
class InferenceSettings:
    """How a trained model is run: its window and gap (as trained), its smoothing width (as tuned)."""

    window: int
    max_gap: int
    smoothing_sigma: float
    synthetic_training: bool | None  # None: not recorded


def inference_settings(config, model_id: str | Path | None = None, revision: str | None = None) -> InferenceSettings:
    """The model's own settings: ``config.window`` / ``config.max_gap`` (set by training), else the older
    ``train_config.yaml``, else the defaults; the smoothing width from ``postprocessing.json``, else the default."""
    train_config = read_model_record(model_id, TRAIN_CONFIG_FILE, revision) if model_id else {}
    tuned = read_model_record(model_id, POSTPROCESSING_FILE, revision) if model_id else {}
    where_trained = lambda: model_file(model_id, TRAIN_CONFIG_FILE, revision)  # noqa: E731 - named only on error
    where_tuned = lambda: model_file(model_id, POSTPROCESSING_FILE, revision)  # noqa: E731
    window = getattr(config, "window", None) or _checked(train_config, "window", where_trained, 1, int) or DEFAULT_WINDOW
    max_gap = getattr(config, "max_gap", None)
    if max_gap is None:
        max_gap = _checked(train_config, "max_gap", where_trained, 0, int)
        max_gap = DEFAULT_MAX_GAP if max_gap is None else max_gap
    _checked(tuned, "max_gap", where_tuned, 0, int)
    sigma = _checked(tuned, "smoothing_sigma", where_tuned, 0, float)
    thresholds = tuned.get("au_thresholds")
    if thresholds is not None and not (isinstance(thresholds, list) and all(
            _is_number(t) and math.isfinite(t) and 0 < t < 1 for t in thresholds)):
        raise ModelFileError(f"{where_tuned()}: au_thresholds must be a list of numbers strictly between 0 and 1, "
                             f"got {thresholds!r}; run `abaw-hf tune` again")
    dataset = train_config.get("dataset")
    return InferenceSettings(
        window=int(window),
        max_gap=int(max_gap),
        smoothing_sigma=float(DEFAULT_SMOOTHING_SIGMA if sigma is None else sigma),
        synthetic_training=None if dataset is None else dataset == "synthetic",
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked(values: dict, key: str, where, minimum: float, kind: type):
    """``values[key]`` when it is a finite number of ``kind`` >= ``minimum`` (None when absent); otherwise a
    `ModelFileError` naming the file and the key: a side file is validated on load like the weights."""
    value = values.get(key)
    if value is None:
        return None
    ok = _is_number(value) and math.isfinite(value) and value >= minimum and (kind is float or float(value).is_integer())
    if not ok:
        what = "an integer" if kind is int else "a finite number"
        raise ModelFileError(f"{where()}: {key} must be {what} >= {minimum:g}, got {value!r}")
    return kind(value)


def model_source(config) -> str | None:
    """The folder or Hub id a loaded model came from (transformers records it in the config), if any."""
    return getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None) or None
