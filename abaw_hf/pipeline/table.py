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
| `note` | str | empty, `no face found`, or `unreadable image: <reason>` |
| `weights` | str | CSV files only (`write_csv`): what the predictions are (`abaw_hf.status.weights_status`) |

Probabilities follow one naming rule: `prob_` + the output's name. Predictions are smoothed over time (videos and
frame sequences, along each face's track) before the decisions; empty cells are NaN / NA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..modeling.tasks_abaw_fusion import prediction_width, split_predictions

NO_FACE_NOTE = "no face found"
UNREADABLE_NOTE = "unreadable image"  # a row's note starts with this when its image file could not be used
PROBABILITY_PREFIX = "prob_"
BOX_COLUMNS = ["face_x0", "face_y0", "face_x1", "face_y1"]


def probability_column(name: str) -> str:
    """The column of an expression's or an AU's probability: ``prob_Happiness``, ``prob_AU12``."""
    return PROBABILITY_PREFIX + name


def prediction_columns(expression_names: list[str], au_names: list[str]) -> list[str]:
    """The per-frame table's columns, in order."""
    return [
        "source", "frame", "face", "time", "face_found", *BOX_COLUMNS,
        "valence", "arousal", "expression",
        *[probability_column(name) for name in expression_names],
        *[probability_column(name) for name in au_names],
        *au_names,
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
    """The table of ``rows``; ``values`` float32 [N, 2 + E + A] holds VA, expression and AU probabilities of each
    row (NaN rows: no face); decisions use the model config's names and per-AU thresholds."""
    from ..postprocess import decide

    expression_names = [config.id2label[i] for i in range(config.num_expressions)]
    au_names = list(config.au_names)
    count = len(rows)
    values = np.asarray(values, dtype=np.float32).reshape(count, prediction_width(config))
    parts = split_predictions(values, config)  # the heads' predictions side by side, in the task table's order
    va, expression_probs, au_probs = parts["va"], parts["expression"], parts["au"]
    face_found = np.array([row.box is not None for row in rows], dtype=bool)
    face_rows = np.flatnonzero(face_found)
    expression = np.full(count, None, dtype=object)
    decisions = np.zeros((count, len(au_names)), dtype=np.int8)
    if len(face_rows):
        expression_index, decisions[face_rows] = decide(expression_probs[face_rows], au_probs[face_rows], config.au_thresholds)
        expression[face_rows] = [expression_names[int(i)] for i in expression_index]
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
        "valence": va[:, 0],
        "arousal": va[:, 1],
        "expression": expression,
        **{probability_column(name): expression_probs[:, i] for i, name in enumerate(expression_names)},
        **{probability_column(name): au_probs[:, i] for i, name in enumerate(au_names)},
        **{name: _decisions(decisions[:, i], face_found) for i, name in enumerate(au_names)},
        "note": notes,
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(count))


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
