"""Predict a feature dataset with one or several fusion models and score it with the ABAW metric.

The ``abaw-hf evaluate`` subcommand (`abaw_hf.cli.evaluate`)::

    abaw-hf evaluate --model outputs/abaw-fusion --data synthetic --split validation --output eval.json
"""

from __future__ import annotations

from typing import Sequence

import functools

import numpy as np

from .errors import UserError
from .metrics import score_tasks
from .modeling.tasks_abaw_fusion import (ABAW_TASKS, TASKS, output_tensors, prediction_fields, predictions as task_predictions,
                                         task_named)


def _inference_mode(function):
    """``torch.inference_mode()`` as a decorator that imports torch at call time (`evaluate --help` stays light)."""

    @functools.wraps(function)
    def run_without_autograd(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return function(*args, **kwargs)

    return run_without_autograd


class FramePredictions:
    """Per-frame predictions, one row per dataset row, in dataset order: ``row_index [N]`` and each task's prediction
    ``[N, width]`` under its prediction field (`abaw_hf.modeling.TASKS`: VA values, expression and AU probabilities,
    and those of any registered task), given by keyword or in the table's order; read ``of(task name)`` (or as an
    attribute)."""

    def __init__(self, row_index, *values, **fields):
        names = prediction_fields()
        if len(values) > len(names):
            raise TypeError(f"FramePredictions takes at most {len(names)} prediction arrays ({names}), got {len(values)}")
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise TypeError(f"FramePredictions: {unknown} are not prediction fields of the task table ({names})")
        fields = {**dict(zip(names, values)), **fields}
        self.row_index = row_index
        self.values = {name: fields[name] for name in names if name in fields}

    def __getattr__(self, name: str):
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"FramePredictions has no {name!r} (predictions: {list(values)})")

    def __setattr__(self, name: str, value) -> None:
        if name in self.__dict__.get("values", {}):
            self.values[name] = value
        else:
            super().__setattr__(name, value)

    def __len__(self) -> int:
        return len(self.row_index)

    def of(self, task: str) -> np.ndarray:
        """The predictions of the task called ``task`` (a name of the task table: ``va``, ``expression``, ``au``)."""
        return self.values[task_named(task).prediction]

    def tasks(self) -> list:
        """The rows of the task table these predictions hold, in table order."""
        return [task for task in TASKS if task.prediction in self.values]

    def replace(self, **fields) -> FramePredictions:
        """A copy with some arrays replaced (``row_index`` or prediction fields)."""
        return FramePredictions(fields.pop("row_index", self.row_index), **{**self.values, **fields})

    def take(self, rows: np.ndarray) -> FramePredictions:
        """The predictions of ``rows`` (positions in these predictions)."""
        return FramePredictions(self.row_index[rows], **{name: value[rows] for name, value in self.values.items()})


def average_predictions(predictions: Sequence[FramePredictions]) -> FramePredictions:
    """Ensemble: the exact mean of VA and of the probabilities of several models over the same rows."""
    first = predictions[0]
    for other in predictions[1:]:
        if not np.array_equal(other.row_index, first.row_index):
            raise ValueError("ensemble members predicted different rows; they must cover the same dataset")
    return FramePredictions(
        row_index=first.row_index,
        **{name: np.mean([p.values[name] for p in predictions], axis=0) for name in first.values},
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
        for key in chunks[0] if key != "row_index"
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


def dataset_labels(dataset, tasks=None) -> dict[str, np.ndarray]:
    """Each task's labels under its name (``va [N,2]``, ``expression [N]``, ``au [N,12]``, ...: the task table's
    label columns), with ``video`` and ``frame``; ``tasks``: the table's rows to read (default: those the dataset
    has label columns for)."""
    from .data.columns import label_array

    tasks = [task for task in TASKS if set(task.label_columns) <= set(dataset.column_names)] if tasks is None else tasks
    return {
        **{task.name: label_array(dataset, task.label_columns) for task in tasks},
        "video": np.asarray(dataset.with_format(None)["video"]),
        "frame": label_array(dataset, ["frame"]),
    }


# A split scores only the tasks it has labels for: evaluate leaves the others (and P_MTL) out, tune needs all three.
TASK_NAMES = {task.name: task.words for task in ABAW_TASKS}  # how messages name each task's labels
LABELS_RULE = (
    "Labels: a split without any (VA -5, expression -1 and AU -1 on every row, like the test split of MTL.txt) "
    "is refused. evaluate scores the tasks that have labels and says which have none; P_MTL needs all three. "
    "tune chooses by P_MTL, so it needs all three tasks labelled and otherwise writes nothing."
)


class UnlabelledSplitError(UserError, ValueError):
    """A split without the labels a command scores or tunes on (e.g. the test split)."""


def labelled_tasks(labels: dict[str, np.ndarray]) -> list[str]:
    """The tasks ("va", "expression", "au", ...) of `dataset_labels` output that have at least one labelled row
    (for a task of several columns, e.g. valence and arousal: each column has one)."""
    present = []
    for task in TASKS:
        if task.name in labels:
            marked = labels[task.name] != task.missing
            if bool(marked.any(axis=0).all() if len(task.label_columns) > 1 else marked.any()):
                present.append(task.name)
    return present


def require_labels(labels: dict[str, np.ndarray], where: str, command: str) -> list[str]:
    """The labelled tasks of a split; one with no labels at all is an error naming it (no score from nothing)."""
    tasks = labelled_tasks(labels)
    if not tasks:
        raise UnlabelledSplitError(
            f"{where} has no labels (VA -5, expression -1 and AU -1 on every row, like the test split of MTL.txt); "
            f"{command} needs a labelled split such as validation"
        )
    return tasks


def decide_task(task, prediction: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """One task's predictions -> what its metric scores: the class of a ``softmax`` task, 0/1 per label of a
    ``sigmoid`` task (``thresholds``, 0.5 each by default), the values of a ``tanh`` task."""
    if task.activation == "softmax":
        return prediction.argmax(-1)
    if task.activation == "sigmoid":
        limits = np.asarray(thresholds if thresholds is not None else [0.5] * prediction.shape[-1])
        return (prediction >= limits).astype(np.int64)
    return prediction


def score_predictions(
    predictions: FramePredictions,
    dataset,
    *,
    au_thresholds: Sequence[float] | None = None,
    tasks: Sequence[str] | None = None,
) -> dict[str, float]:
    """ABAW MTL metrics of per-row predictions against the dataset's labels (thresholds default to 0.5), and the
    metric of every other task of the table the predictions hold (`abaw_hf.metrics.score_tasks`); ``tasks``: only
    those (e.g. the labelled ones; P_MTL needs all of ABAW's)."""
    tasks = [task for task in predictions.tasks() if tasks is None or task.name in tasks]
    labels = dataset_labels(dataset, tasks)
    rows = predictions.row_index
    thresholds = {"au": au_thresholds}
    decided = {task.name: decide_task(task, predictions.of(task.name), thresholds.get(task.name)) for task in tasks}
    return score_tasks(decided, {task.name: labels[task.name][rows] for task in tasks}, tasks)


def format_metrics_table(metrics: dict, title: str = "") -> str:
    """The per-task scores as a Markdown table (training's best epoch, `abaw-hf evaluate`)."""
    keys = [("ccc_valence", "CCC valence"), ("ccc_arousal", "CCC arousal"), ("f1_expression", "F1 expression"),
            ("f1_au", "F1 AU"), ("p_mtl", "P_MTL")]
    lines = [f"| {title or 'metric'} | value |", "| --- | ---: |"]
    lines += [f"| {label} | {metrics[key]:.4f} |" for key, label in keys if key in metrics]
    # a task added to the table: its score, named by its row
    lines += [f"| {task.metric} ({task.name}) | {metrics[task.score_key]:.4f} |" for task in TASKS
              if not task.in_p_mtl and task.score_key in metrics]
    return "\n".join(lines)


def load_split(data: str, split: str):
    """One split of a feature set (`abaw_hf.data.storage` is the one reader)."""
    from .data.storage import load_feature_split

    return load_feature_split(data, split)
