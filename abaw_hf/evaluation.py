"""Predict a feature dataset with one or several fusion models and score it with the ABAW metric.

The ``abaw-hf evaluate`` subcommand (`abaw_hf.cli.evaluate`)::

    abaw-hf evaluate --model outputs/abaw-fusion --data synthetic --split validation --output eval.json
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import functools

import numpy as np

from .errors import UserError
from .metrics import compute_abaw_metrics
from .modeling.labels_abaw_fusion import MISSING_AU, MISSING_EXPRESSION, MISSING_VA
from .modeling.tasks_abaw_fusion import PREDICTION_FIELDS, output_tensors, predictions as task_predictions


def _inference_mode(function):
    """``torch.inference_mode()`` as a decorator that imports torch at call time (`evaluate --help` stays light)."""

    @functools.wraps(function)
    def run_without_autograd(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return function(*args, **kwargs)

    return run_without_autograd


@dataclass
class FramePredictions:
    """Per-frame predictions, one row per dataset row, in dataset order."""

    row_index: np.ndarray  # [N] dataset rows
    valence_arousal: np.ndarray  # [N, 2]
    expression_probs: np.ndarray  # [N, 8]
    au_probs: np.ndarray  # [N, 12]

    def __len__(self) -> int:
        return len(self.row_index)


def average_predictions(predictions: Sequence[FramePredictions]) -> FramePredictions:
    """Ensemble: the exact mean of VA and of the probabilities of several models over the same rows."""
    first = predictions[0]
    for other in predictions[1:]:
        if not np.array_equal(other.row_index, first.row_index):
            raise ValueError("ensemble members predicted different rows; they must cover the same dataset")
    return FramePredictions(
        row_index=first.row_index,
        **{name: np.mean([getattr(p, name) for p in predictions], axis=0) for name in PREDICTION_FIELDS},
    )


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("row_index",) and not k.endswith("_labels")}


def _batch_outputs(model, batch: dict) -> dict[str, torch.Tensor]:
    from .model_loading import require_finite_outputs

    outputs = model(**_model_inputs(batch))
    present = batch["attention_mask"].bool()
    require_finite_outputs({name: value[present] for name, value in output_tensors(outputs).items()}, "evaluation")
    return {"row_index": batch["row_index"], **task_predictions(outputs, as_float=True)}


def _collect(chunks: list[dict[str, np.ndarray]], num_rows: int) -> FramePredictions:
    """Window outputs to rows (`rows_from_windows`: padding dropped, every row covered; a repeat from DDP's
    even-batch padding keeps its first copy)."""
    from .data.windows import rows_from_windows

    rows = np.concatenate([c["row_index"].reshape(-1) for c in chunks])
    fields = {
        key: rows_from_windows(rows, np.concatenate([c[key].reshape(-1, c[key].shape[-1]) for c in chunks]),
                               num_rows, repeats="first")
        for key in PREDICTION_FIELDS
    }
    return FramePredictions(row_index=np.arange(num_rows), **fields)


@_inference_mode
def predict_with_accelerator(accelerator, model, loader, num_rows: int) -> FramePredictions:
    """Predict every row of an evaluation loader across processes (``gather_for_metrics``)."""
    model.eval()
    chunks = []
    for batch in loader:
        gathered = accelerator.gather_for_metrics(_batch_outputs(model, batch))
        chunks.append({k: v.cpu().numpy() for k, v in gathered.items()})
    return _collect(chunks, num_rows)


@_inference_mode
def predict_dataset(
    models: AbawFusionModel | Sequence[AbawFusionModel],
    dataset,
    *,
    window: int | None = None,
    max_gap: int | None = None,
    batch_size: int = 64,
) -> FramePredictions:
    """Predict every row of a feature dataset; several models are averaged (an ensemble).

    ``window`` and ``max_gap`` default to the model's own (`abaw_hf.model_files.inference_settings`), as in the pipeline.
    """
    from .data.windows import window_dataloader
    from .model_files import inference_settings, model_source
    from .modeling import AbawFusionModel

    models = [models] if isinstance(models, AbawFusionModel) else list(models)
    results = []
    for model in models:
        settings = inference_settings(model.config, model_source(model.config))
        length = window or settings.window
        loader = window_dataloader(
            dataset, window_size=length, max_gap=settings.max_gap if max_gap is None else max_gap, mode="eval",
            batch_size=batch_size, feature_names=model.config.feature_names, max_span=model.config.max_window,
        )
        model.eval()
        device = next(model.parameters()).device
        chunks = []
        for batch in loader:
            batch = _to_device(batch, device)
            chunks.append({k: v.cpu().numpy() for k, v in _batch_outputs(model, batch).items()})
        results.append(_collect(chunks, len(dataset)))
    return results[0] if len(results) == 1 else average_predictions(results)


def _to_device(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def dataset_labels(dataset) -> dict[str, np.ndarray]:
    columns = dataset.with_format("numpy")
    return {
        "valence_arousal": np.stack([np.asarray(columns["valence"]), np.asarray(columns["arousal"])], axis=1),
        "expression": np.asarray(columns["expression"]),
        "aus": np.asarray(columns["aus"]),
        "video": np.asarray(dataset.with_format(None)["video"]),
        "frame": np.asarray(columns["frame"]),
    }


# A split scores only the tasks it has labels for: evaluate leaves the others (and P_MTL) out, tune needs all three.
TASK_NAMES = {"va": "valence/arousal", "expression": "expression", "au": "AU"}
TASK_METRICS = {"va": ("ccc_valence", "ccc_arousal", "va"), "expression": ("f1_expression",), "au": ("f1_au",)}
LABELS_RULE = (
    "Labels: a split without any (VA -5, expression -1 and AU -1 on every row, like the test split of MTL.txt) "
    "is refused. evaluate scores the tasks that have labels and says which have none; P_MTL needs all three. "
    "tune chooses by P_MTL, so it needs all three tasks labelled and otherwise writes nothing."
)


class UnlabelledSplitError(UserError, ValueError):
    """A split without the labels a command scores or tunes on (e.g. the test split)."""


def labelled_tasks(labels: dict[str, np.ndarray]) -> list[str]:
    """The tasks ("va", "expression", "au") of `dataset_labels` output that have at least one labelled row."""
    va = labels["valence_arousal"]
    present = {
        "va": bool((va[:, 0] != MISSING_VA).any() and (va[:, 1] != MISSING_VA).any()),
        "expression": bool((labels["expression"] != MISSING_EXPRESSION).any()),
        "au": bool((labels["aus"] != MISSING_AU).any()),
    }
    return [task for task in TASK_NAMES if present[task]]


def require_labels(labels: dict[str, np.ndarray], where: str, command: str) -> list[str]:
    """The labelled tasks of a split; one with no labels at all is an error naming it (no score from nothing)."""
    tasks = labelled_tasks(labels)
    if not tasks:
        raise UnlabelledSplitError(
            f"{where} has no labels (VA -5, expression -1 and AU -1 on every row, like the test split of MTL.txt); "
            f"{command} needs a labelled split such as validation"
        )
    return tasks


def score_predictions(
    predictions: FramePredictions,
    dataset,
    *,
    au_thresholds: Sequence[float] | None = None,
) -> dict[str, float]:
    """ABAW MTL metrics of per-row predictions against the dataset's labels (thresholds default to 0.5)."""
    labels = dataset_labels(dataset)
    rows = predictions.row_index
    thresholds = np.asarray(au_thresholds if au_thresholds is not None else [0.5] * predictions.au_probs.shape[1])
    return compute_abaw_metrics(
        va_pred=predictions.valence_arousal,
        va_true=labels["valence_arousal"][rows],
        expr_pred=predictions.expression_probs.argmax(-1),
        expr_true=labels["expression"][rows],
        au_pred=(predictions.au_probs >= thresholds).astype(np.int64),
        au_true=labels["aus"][rows],
    )


def format_metrics_table(metrics: dict, title: str = "") -> str:
    """The per-task scores as a Markdown table (training's best epoch, `abaw-hf evaluate`)."""
    keys = [("ccc_valence", "CCC valence"), ("ccc_arousal", "CCC arousal"), ("f1_expression", "F1 expression"),
            ("f1_au", "F1 AU"), ("p_mtl", "P_MTL")]
    lines = [f"| {title or 'metric'} | value |", "| --- | ---: |"]
    lines += [f"| {label} | {metrics[key]:.4f} |" for key, label in keys if key in metrics]
    return "\n".join(lines)


def load_split(data: str, split: str):
    """One split of a feature set (`abaw_hf.data.storage` is the one reader)."""
    from .data.storage import load_feature_split

    return load_feature_split(data, split)
