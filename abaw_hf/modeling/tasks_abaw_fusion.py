"""The model's tasks as data: one row per head, and the one place that names the model's outputs.

Plain Python (no torch, no transformers) and self-contained: it ships as remote code with the modeling files.
Modeling (`AbawFusionOutput`'s fields, the heads, the losses), evaluation (`FramePredictions`, the metrics),
post-processing, the pipeline's table, the Space, the submission writer, the ONNX export and its runtime read the
output names, head widths, activations, labels, losses and metrics from `TASKS`; nothing outside modeling/ writes
an output's name.

| field | meaning |
| --- | --- |
| ``name`` | the task (``va``, ``expression``, ``au``); also the key of its labels in `evaluation.dataset_labels` |
| ``output`` | the `AbawFusionOutput` field of the head (``[B, T, width]``) |
| ``width`` | the head's width: a number, or the config attribute that holds it |
| ``activation`` | how an output becomes a prediction: ``tanh`` (inside the head: values in [-1, 1]), ``softmax`` (one class of several), ``sigmoid`` (independent labels) |
| ``prediction`` | the field of the per-frame predictions (evaluation's ``FramePredictions``, the pipeline's values) |
| ``missing`` | the dataset's marker of a missing label |
| ``label_columns`` | the dataset columns of its labels (several scalar columns side by side, or one list column) |
| ``metric`` | the ABAW score of the task, in words |
| ``table_columns`` | the output table's columns (``{name}`` is each class or AU name) |
| ``submission`` | what the challenge file writes for it |
| ``labels`` | the model's keyword for its labels (and the training batch's key) |
| ``loss`` | its loss: a name in ``losses_abaw_fusion.LOSSES`` |
| ``loss_weight`` | its weight in the total loss: a number, or the config attribute that holds it |
| ``score`` | its metric: a name in ``abaw_hf.metrics.TASK_SCORES`` (returns the task's metric keys) |
| ``score_key`` | the metric key that is the task's score (a term of P_MTL for the ABAW tasks) |
| ``classes`` | the names of its classes or labels (the ``{name}`` of the table): a tuple, or the config attribute that holds them |
| ``thresholds`` | for ``sigmoid``: the config attribute of the per-label thresholds (0.5 without one) |
| ``in_p_mtl`` | whether its score is a term of ABAW's P_MTL |
| ``words`` | how messages name its labels (``valence/arousal``, ``AU``; default: its name) |

A new task is a new row (`register_task`) plus, at most, a named loss (`register_loss`) and metric
(`abaw_hf.metrics.register_score`). Training builds a model of every registered task and records them in its config
(``config.tasks``, `registered_task_names`; absent for ABAW's three), so ``from_pretrained`` rebuilds the same heads
(with the row registered again).
"""

from __future__ import annotations

from dataclasses import dataclass

from .labels_abaw_fusion import MISSING_AU, MISSING_EXPRESSION, MISSING_VA


@dataclass(frozen=True)
class Task:
    name: str
    output: str
    width: int | str
    activation: str
    prediction: str
    missing: float | int
    label_columns: tuple[str, ...]
    metric: str
    table_columns: tuple[str, ...]
    submission: str
    labels: str
    loss: str
    loss_weight: float | str
    score: str
    score_key: str
    classes: tuple[str, ...] | str | None = None
    thresholds: str | None = None
    in_p_mtl: bool = False
    words: str | None = None

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"task {self.name!r}: activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    def head_width(self, config) -> int:
        """The head's width for ``config`` (an `AbawFusionConfig`)."""
        return int(getattr(config, self.width)) if isinstance(self.width, str) else int(self.width)

    def weight(self, config) -> float:
        """Its weight in the total loss for ``config``."""
        return getattr(config, self.loss_weight) if isinstance(self.loss_weight, str) else self.loss_weight

    def class_names(self, config) -> list[str]:
        """The names of its classes or labels for ``config`` (``id2label`` is read in class order)."""
        if self.classes is None:
            return [str(i) for i in range(self.head_width(config))]
        if not isinstance(self.classes, str):
            return list(self.classes)
        names = getattr(config, self.classes)
        return [names[i] for i in range(self.head_width(config))] if isinstance(names, dict) else list(names)

    def label_thresholds(self, config) -> list[float]:
        """The per-label decision thresholds of a ``sigmoid`` task for ``config`` (its config attribute, else 0.5)."""
        if self.thresholds is not None:
            return [float(t) for t in getattr(config, self.thresholds)]
        return [0.5] * self.head_width(config)


ACTIVATIONS = ("tanh", "softmax", "sigmoid")

# The ABAW tasks: the default table, and every model's heads unless its config names other tasks.
ABAW_TASKS: tuple[Task, ...] = (
    Task(name="va", output="valence_arousal", width=2, activation="tanh", prediction="valence_arousal",
         missing=MISSING_VA, label_columns=("valence", "arousal"), metric="CCC (mean of valence and arousal)",
         table_columns=("valence", "arousal"), submission="valence,arousal", labels="valence_arousal_labels",
         loss="va_mse_ccc", loss_weight="va_loss_weight", score="ccc_va", score_key="va", classes=("valence", "arousal"),
         in_p_mtl=True, words="valence/arousal"),
    Task(name="expression", output="expression_logits", width="num_expressions", activation="softmax",
         prediction="expression_probs", missing=MISSING_EXPRESSION, label_columns=("expression",),
         metric="macro F1", table_columns=("expression", "prob_{name}"), submission="expression",
         labels="expression_labels", loss="cross_entropy", loss_weight="expression_loss_weight", score="f1_expression",
         score_key="f1_expression", classes="id2label", in_p_mtl=True, words="expression"),
    Task(name="au", output="au_logits", width="num_aus", activation="sigmoid", prediction="au_probs",
         missing=MISSING_AU, label_columns=("aus",), metric="macro F1 (thresholded)",
         table_columns=("prob_{name}", "{name}"), submission="AU1,...,AU26", labels="au_labels",
         loss="weighted_asymmetric", loss_weight="au_loss_weight", score="f1_au", score_key="f1_au", classes="au_names",
         thresholds="au_thresholds", in_p_mtl=True, words="AU"),
)
ABAW_TASK_NAMES = tuple(task.name for task in ABAW_TASKS)

# The registered tasks, in head order: the ABAW tasks, then any `register_task` added (one list, mutated in place,
# so every module that imported it sees a registered task).
TASKS: list[Task] = list(ABAW_TASKS)

OUTPUT_FIELDS = tuple(task.output for task in ABAW_TASKS)  # the ABAW tasks' prediction outputs, in head order
PREDICTION_FIELDS = tuple(task.prediction for task in ABAW_TASKS)  # the same after their activation


def register_task(task: Task) -> Task:
    """Add a row to the table (after the ABAW tasks): models built from then on have its head, evaluation scores it,
    the table and the pipeline show it. Its names must be new."""
    for other in TASKS:
        clash = {task.name, task.output, task.prediction, task.labels} & {other.name, other.output, other.prediction, other.labels}
        if clash:
            raise ValueError(f"task {task.name!r}: {sorted(clash)} already used by task {other.name!r}")
    TASKS.append(task)
    return task


def unregister_task(name: str) -> None:
    """Remove a task added by `register_task` (the ABAW tasks stay)."""
    if name in ABAW_TASK_NAMES:
        raise ValueError(f"the ABAW task {name!r} cannot be removed")
    TASKS[:] = [task for task in TASKS if task.name != name]


def task_named(name: str) -> Task:
    """The registered task called ``name``."""
    for task in TASKS:
        if task.name == name:
            return task
    raise KeyError(f"no task {name!r} is registered; tasks: {[task.name for task in TASKS]} (register_task adds one)")


def tasks_of(config) -> list[Task]:
    """The tasks of a model: those its config names (``config.tasks``), else ABAW's three."""
    names = getattr(config, "tasks", None)
    return [task_named(name) for name in names] if names is not None else list(ABAW_TASKS)


def registered_task_names() -> list[str] | None:
    """``config.tasks`` for a model of every registered task (what training builds): None for ABAW's three."""
    names = [task.name for task in TASKS]
    return None if tuple(names) == ABAW_TASK_NAMES else names


def output_fields() -> list[str]:
    """The registered tasks' outputs, in head order."""
    return [task.output for task in TASKS]


def prediction_fields() -> list[str]:
    """The registered tasks' predictions, in head order."""
    return [task.prediction for task in TASKS]


def task_of(output_or_prediction: str) -> Task:
    """The task whose output or prediction field is ``output_or_prediction``."""
    for task in TASKS:
        if output_or_prediction in (task.output, task.prediction):
            return task
    raise KeyError(f"no task has the output {output_or_prediction!r}; tasks: {[task.name for task in TASKS]}")


def activate(task: Task, output):
    """One output tensor -> its prediction (probabilities for classes and labels; tanh is inside the head)."""
    if task.activation == "softmax":
        return output.softmax(-1)
    if task.activation == "sigmoid":
        return output.sigmoid()
    return output


def prediction_width(config) -> int:
    """The width of one frame's predictions side by side (all heads, in table order)."""
    return sum(task.head_width(config) for task in tasks_of(config))


def split_predictions(values, config) -> dict:
    """``values [..., prediction_width(config)]`` (the heads' predictions side by side) -> ``{task name: [..., width]}``."""
    parts, start = {}, 0
    for task in tasks_of(config):
        width = task.head_width(config)
        parts[task.name] = values[..., start : start + width]
        start += width
    return parts


def output_tensors(outputs) -> dict:
    """``{output field: tensor}`` of an `AbawFusionOutput` (or anything with those attributes), in head order; the
    tasks it has (a model's own tasks)."""
    return {task.output: getattr(outputs, task.output) for task in TASKS if getattr(outputs, task.output, None) is not None}


def predictions(outputs, *, as_float: bool = False) -> dict:
    """``{prediction field: tensor}``: each output through its activation, in head order (``as_float``: in float32,
    from outputs of any precision)."""
    return {task_of(name).prediction: activate(task_of(name), value.float() if as_float else value)
            for name, value in output_tensors(outputs).items()}
