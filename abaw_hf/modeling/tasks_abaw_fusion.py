"""The model's tasks as data: one row per head, and the one place that names the model's outputs.

Plain Python (no torch, no transformers) and self-contained: it ships as remote code with the modeling files.
Modeling (`AbawFusionOutput`'s fields, the heads), evaluation, post-processing, the pipeline, the ONNX export and
its runtime read the output names, head widths and activations from `TASKS`; nothing outside modeling/ writes them.

| field | meaning |
| --- | --- |
| ``name`` | the task (``va``, ``expression``, ``au``) |
| ``output`` | the `AbawFusionOutput` field of the head (``[B, T, width]``) |
| ``width`` | the head's width: a number, or the config attribute that holds it |
| ``activation`` | how an output becomes a prediction: ``tanh`` (inside the head: values in [-1, 1]), ``softmax`` (one class of several), ``sigmoid`` (independent labels) |
| ``prediction`` | the field of the per-frame predictions (evaluation's ``FramePredictions``, the pipeline's values) |
| ``missing`` | the dataset's marker of a missing label |
| ``label_columns`` | the dataset columns of its labels |
| ``metric`` | the ABAW score of the task |
| ``table_columns`` | the output table's columns (``{name}`` is each class or AU name) |
| ``submission`` | what the challenge file writes for it |
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

    def head_width(self, config) -> int:
        """The head's width for ``config`` (an `AbawFusionConfig`)."""
        return int(getattr(config, self.width)) if isinstance(self.width, str) else int(self.width)


ACTIVATIONS = ("tanh", "softmax", "sigmoid")

TASKS: tuple[Task, ...] = (
    Task(name="va", output="valence_arousal", width=2, activation="tanh", prediction="valence_arousal",
         missing=MISSING_VA, label_columns=("valence", "arousal"), metric="CCC (mean of valence and arousal)",
         table_columns=("valence", "arousal"), submission="valence,arousal"),
    Task(name="expression", output="expression_logits", width="num_expressions", activation="softmax",
         prediction="expression_probs", missing=MISSING_EXPRESSION, label_columns=("expression",),
         metric="macro F1", table_columns=("expression", "prob_{name}"), submission="expression"),
    Task(name="au", output="au_logits", width="num_aus", activation="sigmoid", prediction="au_probs",
         missing=MISSING_AU, label_columns=("aus",), metric="macro F1 (thresholded)",
         table_columns=("prob_{name}", "{name}"), submission="AU1,...,AU26"),
)

OUTPUT_FIELDS = tuple(task.output for task in TASKS)  # the model's prediction outputs, in head order
PREDICTION_FIELDS = tuple(task.prediction for task in TASKS)  # the same after their activation


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
    return sum(task.head_width(config) for task in TASKS)


def split_predictions(values, config) -> dict:
    """``values [..., prediction_width(config)]`` (the heads' predictions side by side) -> ``{task name: [..., width]}``."""
    parts, start = {}, 0
    for task in TASKS:
        width = task.head_width(config)
        parts[task.name] = values[..., start : start + width]
        start += width
    return parts


def output_tensors(outputs) -> dict:
    """``{output field: tensor}`` of an `AbawFusionOutput` (or anything with those attributes), in head order."""
    return {task.output: getattr(outputs, task.output) for task in TASKS}


def predictions(outputs, *, as_float: bool = False) -> dict:
    """``{prediction field: tensor}``: each output through its activation, in head order (``as_float``: in float32,
    from outputs of any precision)."""
    return {task.prediction: activate(task, getattr(outputs, task.output).float() if as_float else getattr(outputs, task.output))
            for task in TASKS}
