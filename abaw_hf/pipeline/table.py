"""The per-frame output table: one schema for the pipeline, `abaw-hf predict` (its CSV) and the Space.

One row per (frame, face), in input order and, within a frame, largest face first; a frame or image without a
face is one row too, with empty predictions.

| column | type | meaning |
| --- | --- | --- |
| `source` | str | video file name, image file name, or the name given to the frames |
| `frame` | int | frame number in the video (position for images) |
| `face` | Int64 | the face's track id: the same person keeps it while visible (ids from 0; NA without a face) |
| `time` | float | seconds from the video's start (NaN when unknown) |
| `face_found` | bool | the row is a face (False: the frame had none) |
| `face_x0`, `face_y0`, `face_x1`, `face_y1` | float32 | the face box in pixels of the frame |
| `valence`, `arousal` | float32 | in [-1, 1] |
| `expression` | str | the most probable expression |
| `prob_<expression>` | float32 | one per expression (`prob_Happiness`, ...), summing to 1 |
| `prob_<AU>` | float32 | one per action unit (`prob_AU12`, ...) |
| `<AU>` | Int8 | 0/1: the AU's probability reached the model's threshold for it (`AU12`, ...) |
| ... | | a task added to the table (`abaw_hf.modeling.tasks_abaw_fusion.register_task`): its row's `table_columns` |
| `note` | str | empty, `no face found`, or `unreadable image: <reason>` |
| `weights` | str | CSV files only (`write_csv`): what the predictions are (`abaw_hf.status.weights_status`) |

The prediction columns are each task's `table_columns` in the task table's order (`{name}`: each class or AU).
Probabilities follow one naming rule: `prob_` + the output's name. Predictions are smoothed over time (videos and
frame sequences, along each face's track) before the decisions; empty cells are NaN / NA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..modeling.tasks_abaw_fusion import ABAW_TASKS, prediction_width, split_predictions, tasks_of

NO_FACE_NOTE = "no face found"
UNREADABLE_NOTE = "unreadable image"  # a row's note starts with this when its image file could not be used
PROBABILITY_PREFIX = "prob_"
BOX_COLUMNS = ["face_x0", "face_y0", "face_x1", "face_y1"]


def probability_column(name: str) -> str:
    """The column of an expression's or an AU's probability: ``prob_Happiness``, ``prob_AU12``."""
    return PROBABILITY_PREFIX + name


def task_columns(task, names: list[str]) -> list[str]:
    """One task's columns of the table: its row's ``table_columns``, a ``{name}`` one per class or label."""
    return [column for template in task.table_columns
            for column in ([template.format(name=name) for name in names] if "{name}" in template else [template])]


def prediction_columns(expression_names: list[str], au_names: list[str], config=None) -> list[str]:
    """The per-frame table's columns, in order (with ``config``: those of its tasks, names from the config)."""
    names = {"va": [], "expression": expression_names, "au": au_names}  # VA's columns name no class
    tasks = ABAW_TASKS if config is None else tasks_of(config)
    return [
        "source", "frame", "face", "time", "face_found", *BOX_COLUMNS,
        *[column for task in tasks
          for column in task_columns(task, names[task.name] if config is None else task.class_names(config))],
        "note",
    ]


@dataclass(frozen=True)
class RowInfo:
    """What the table says about a frame besides the model's outputs."""

    source: str
    frame: int
    time: float  # NaN when unknown
    box: np.ndarray | None  # float32 [4] (x0, y0, x1, y1) of the tracked face, None without one
    unreadable: str | None = None  # why the image file could not be used
    face: int | None = None  # the face's track id, None without a face


def prediction_table(rows: list[RowInfo], values: np.ndarray, config) -> pd.DataFrame:
    """The table of ``rows``; ``values`` float32 [N, prediction_width(config)] holds each task's predictions side by
    side (VA, expression and AU probabilities, ...; NaN rows: no face); decisions use the model config's names and
    per-AU thresholds."""
    count = len(rows)
    values = np.asarray(values, dtype=np.float32).reshape(count, prediction_width(config))
    parts = split_predictions(values, config)  # the heads' predictions side by side, in the task table's order
    face_found = np.array([row.box is not None for row in rows], dtype=bool)
    face_rows = np.flatnonzero(face_found)
    boxes = np.full((count, 4), np.nan, dtype=np.float32)
    for position in face_rows:
        boxes[position] = rows[position].box
    notes = [
        f"{UNREADABLE_NOTE}: {row.unreadable}" if row.unreadable is not None else "" if row.box is not None else NO_FACE_NOTE
        for row in rows
    ]
    columns = {
        "source": [row.source for row in rows],
        "frame": np.array([row.frame for row in rows], dtype=np.int64),
        "face": pd.array([row.face for row in rows], dtype="Int64"),
        "time": np.array([row.time for row in rows], dtype=np.float64),
        "face_found": face_found,
        **{name: boxes[:, i] for i, name in enumerate(BOX_COLUMNS)},
        **{column: value for task in tasks_of(config)
           for column, value in _task_columns(task, parts[task.name], face_rows, face_found, config).items()},
        "note": notes,
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(count))


def _task_columns(task, values: np.ndarray, face_rows: np.ndarray, face_found: np.ndarray, config) -> dict:
    """One task's columns (`task_columns`): ``prob_{name}`` its probabilities, ``{name}`` the 0/1 decision of each
    label at the config's thresholds, a plain column of a ``softmax`` task the most probable class (None without a
    face), of a ``tanh`` task its value at that position."""
    names, count, columns = task.class_names(config), len(values), {}
    for position, template in enumerate(task.table_columns):
        if template == "{name}":
            decisions = np.zeros((count, len(names)), dtype=np.int8)
            decisions[face_rows] = values[face_rows] >= np.asarray(task.label_thresholds(config), dtype=np.float64)
            columns.update({name: _decisions(decisions[:, i], face_found) for i, name in enumerate(names)})
        elif "{name}" in template:
            columns.update({template.format(name=name): values[:, i] for i, name in enumerate(names)})
        elif task.activation == "softmax":
            decided = np.full(count, None, dtype=object)
            decided[face_rows] = [names[int(i)] for i in values[face_rows].argmax(axis=1)]
            columns[template] = decided
        else:
            columns[template] = values[:, position]
    return columns


def _decisions(values: np.ndarray, face_found: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """0/1 decisions as a nullable Int8 column, empty (NA) where there is no face."""
    column = pd.array(values, dtype="Int8")
    column[~face_found] = pd.NA
    return column


def concat_tables(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Tables handed out piece by piece (a stream) as one, numbered from 0, with the last part's warnings."""
    nonempty = [part for part in parts if len(part)] or parts[-1:]
    table = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0].reset_index(drop=True)
    table.attrs["warnings"] = list(parts[-1].attrs.get("warnings", [])) if parts else []
    return table


def write_csv(table: pd.DataFrame, path, status: str) -> None:
    """The table as a CSV file (`abaw-hf predict`, the Space's download) with a last column, ``weights``, that
    says on every row what the predictions are: ``status`` (`WeightsReport.status`), the words of every output."""
    from ..status import STATUS_LABEL

    table.assign(**{STATUS_LABEL: status}).to_csv(path, index=False)
