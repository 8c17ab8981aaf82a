"""What the Space shows: figures of a per-frame prediction table, the frame with its face box, the header.

Everything here takes the table ``abaw_hf.pipeline.AffectPipeline`` returns (one row per frame and face, with
the face's track id in ``face``; one row with NaN predictions where a frame has no face) and returns matplotlib
figures, images or Markdown, so the Gradio wiring in ``app.py`` stays thin and these can be tested without a
server. The plots show one face at a time: ``face_rows`` gives that face's table, one row per frame.
"""

from __future__ import annotations

import html
import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from abaw_hf.pipeline.table import PROBABILITY_PREFIX, probability_column

# Russell's circumplex: a few affect words at their usual angle on the valence/arousal plane.
CIRCUMPLEX_WORDS = {
    "excited": 60, "happy": 25, "content": -25, "calm": -60, "tired": -110,
    "sad": -155, "angry": 125, "afraid": 150,
}
PALETTE = {"valence": "#2563eb", "arousal": "#dc2626"}


def face_ids(table: pd.DataFrame) -> list[int]:
    """The faces of a table, the one with the most frames first (ties: the lower id)."""
    counts = table["face"].dropna().astype(int).value_counts()
    return sorted(counts.index.tolist(), key=lambda face: (-counts[face], face))


def face_rows(table: pd.DataFrame, face: int | None) -> pd.DataFrame:
    """One row per frame for the plots of one face: its row where it was seen, an empty no-face row elsewhere."""
    if face is None or "face" not in table.columns:
        return table.drop_duplicates("frame").reset_index(drop=True)
    mine = table["face"].eq(face).fillna(False).to_numpy(dtype=bool)
    first_of_frame = ~table.duplicated("frame").to_numpy()
    others = table[first_of_frame & ~table["frame"].isin(table.loc[mine, "frame"]).to_numpy()].copy()
    empty = [c for c in others.columns if c not in ("source", "frame", "time", "face_found", "note")]
    others[empty] = None
    others["note"] = np.where(others["face_found"].to_numpy(dtype=bool), "face not seen", others["note"])
    others["face_found"] = False
    rows = pd.concat([table[mine], others]).sort_values("frame", kind="stable")
    return rows.astype(table.dtypes.to_dict()).reset_index(drop=True)


def frame_rows(table: pd.DataFrame, position: int) -> pd.DataFrame:
    """The rows of the ``position``-th frame of the table (frames in order, each with one row per face)."""
    frames = table["frame"].drop_duplicates().to_numpy()
    return table[table["frame"] == frames[position]]


def _probability_names(table: pd.DataFrame) -> list[str]:
    return [column[len(PROBABILITY_PREFIX):] for column in table.columns if column.startswith(PROBABILITY_PREFIX)]


def expression_names(table: pd.DataFrame) -> list[str]:
    """Outputs with a probability column and no decision column (`abaw_hf.pipeline.table`)."""
    return [name for name in _probability_names(table) if name not in table.columns]


def au_names(table: pd.DataFrame) -> list[str]:
    """Outputs with a probability column and a 0/1 decision column of their own name."""
    return [name for name in _probability_names(table) if name in table.columns]


def time_axis(table: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Seconds when the table has timestamps, frame numbers otherwise."""
    times = table["time"].to_numpy(dtype=float)
    if len(times) and np.isfinite(times).all():
        return times, "time (s)"
    return table["frame"].to_numpy(dtype=float), "frame"


def _circumplex_axes(axes) -> None:
    angle = np.linspace(0, 2 * np.pi, 200)
    axes.plot(np.cos(angle), np.sin(angle), color="#9ca3af", linewidth=0.8)
    axes.axhline(0, color="#d1d5db", linewidth=0.8)
    axes.axvline(0, color="#d1d5db", linewidth=0.8)
    for word, degrees in CIRCUMPLEX_WORDS.items():
        radians = np.deg2rad(degrees)
        axes.text(1.12 * np.cos(radians), 1.12 * np.sin(radians), word, ha="center", va="center", fontsize=8, color="#6b7280")
    axes.set_xlim(-1.35, 1.35)
    axes.set_ylim(-1.35, 1.35)
    axes.set_aspect("equal")
    axes.set_xlabel("valence")
    axes.set_ylabel("arousal")


def va_figure(table: pd.DataFrame, temporal: bool) -> Figure:
    """Valence and arousal over time beside their circumplex trajectory (video); the circumplex alone (images)."""
    valence = table["valence"].to_numpy(dtype=float)
    arousal = table["arousal"].to_numpy(dtype=float)
    if not temporal:
        figure = Figure(figsize=(4.6, 4.2), layout="constrained")
        axes = figure.add_subplot()
        _circumplex_axes(axes)
        axes.scatter(valence, arousal, s=80, color="#7c3aed", zorder=3)
        for position, (v, a) in enumerate(zip(valence, arousal)):
            if np.isfinite(v) and len(table) > 1:
                axes.annotate(str(table["source"].iloc[position]), (v, a), textcoords="offset points", xytext=(6, 6), fontsize=8)
        axes.set_title("valence / arousal (circumplex)")
        return figure
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    over_time, circumplex = figure.subplots(1, 2, width_ratios=[2.4, 1])
    x, x_label = time_axis(table)
    over_time.plot(x, valence, color=PALETTE["valence"], label="valence")
    over_time.plot(x, arousal, color=PALETTE["arousal"], label="arousal")
    missing = ~table["face_found"].to_numpy(dtype=bool)
    if missing.any():
        over_time.fill_between(x, -1, 1, where=missing, color="#e5e7eb", step="mid", label="no face")
    over_time.set_ylim(-1.05, 1.05)
    over_time.axhline(0, color="#9ca3af", linewidth=0.6)
    over_time.set_xlabel(x_label)
    over_time.legend(loc="upper right", fontsize=8)
    over_time.set_title("valence and arousal over time")
    _circumplex_axes(circumplex)
    points = circumplex.scatter(valence, arousal, c=x, cmap="viridis", s=10, zorder=3)
    figure.colorbar(points, ax=circumplex, label=x_label, shrink=0.8)
    circumplex.set_title("circumplex")
    return figure


def expression_figure(table: pd.DataFrame, temporal: bool) -> Figure:
    """Expression probabilities (mean over face frames) and, for a video, their timeline as a heat-map."""
    names = expression_names(table)
    probabilities = table[[probability_column(name) for name in names]].to_numpy(dtype=float)
    found = table["face_found"].to_numpy(dtype=bool)
    mean = probabilities[found].mean(axis=0) if found.any() else np.zeros(len(names))
    if not temporal:
        figure = Figure(figsize=(5, 3.6), layout="constrained")
        bars = figure.add_subplot()
    else:
        figure = Figure(figsize=(10, 4.4), layout="constrained")
        bars, timeline = figure.subplots(1, 2, width_ratios=[1, 2.4])
    order = np.arange(len(names))[::-1]
    colours = ["#f59e0b" if i == int(np.argmax(mean)) else "#93c5fd" for i in range(len(names))]
    bars.barh(order, mean, color=colours)
    bars.set_yticks(order, names)
    bars.set_xlim(0, 1)
    bars.set_xlabel("probability" + (" (mean over face frames)" if temporal else ""))
    bars.set_title("expression")
    if temporal:
        x, x_label = time_axis(table)
        extent = [x[0], x[-1] if len(x) > 1 else x[0] + 1, len(names) - 0.5, -0.5]
        image = timeline.imshow(probabilities.T, aspect="auto", cmap="magma", vmin=0, vmax=1, extent=extent, interpolation="nearest")
        winners = np.where(found, np.nanargmax(np.nan_to_num(probabilities, nan=-1), axis=1), -1)
        timeline.scatter(x[found], winners[found], s=6, color="#22d3ee", label="most probable")
        timeline.set_yticks(range(len(names)), names)
        timeline.set_xlabel(x_label)
        timeline.set_title("expression timeline (probability; dots: most probable)")
        figure.colorbar(image, ax=timeline, shrink=0.8)
    return figure


def au_figure(table: pd.DataFrame, temporal: bool, thresholds: list[float] | None = None) -> Figure:
    """AU probabilities over time as a heat-map (video); bars against their thresholds (images)."""
    names = au_names(table)
    probabilities = table[[probability_column(name) for name in names]].to_numpy(dtype=float)
    if not temporal:
        figure = Figure(figsize=(5, 3.6), layout="constrained")
        axes = figure.add_subplot()
        last = probabilities[-1]
        on = table[names].iloc[-1].to_numpy(dtype=float) if set(names) <= set(table.columns) else last >= 0.5
        axes.bar(range(len(names)), np.nan_to_num(last), color=["#16a34a" if flag == 1 else "#cbd5e1" for flag in on])
        if thresholds is not None:
            axes.scatter(range(len(names)), thresholds, marker="_", s=300, color="#111827", label="threshold")
            axes.legend(fontsize=8, loc="upper right")
        axes.set_xticks(range(len(names)), names, rotation=45)
        axes.set_ylim(0, 1)
        axes.set_ylabel("probability (green: on)")
        axes.set_title("action units")
        return figure
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    axes = figure.add_subplot()
    x, x_label = time_axis(table)
    extent = [x[0], x[-1] if len(x) > 1 else x[0] + 1, len(names) - 0.5, -0.5]
    image = axes.imshow(probabilities.T, aspect="auto", cmap="viridis", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel(x_label)
    axes.set_title("action unit probability over time (blank: no face)")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure



# The Space's plot of each ABAW task, keyed by its name in the task table (`abaw_hf.modeling.TASKS`); a task added
# to the table shows in the table and the CSV (its row's columns), without a plot.
FIGURES = {"va": va_figure, "expression": expression_figure, "au": au_figure}


def task_figures(table: pd.DataFrame, temporal: bool, thresholds: list[float] | None = None) -> tuple[Figure, ...]:
    """The plots of `FIGURES`, in order (the AU plot marks ``thresholds``)."""
    return tuple(figure(table, temporal, thresholds) if name == "au" else figure(table, temporal)
                 for name, figure in FIGURES.items())

def frame_caption(row: pd.Series, faces_in_frame: int = 1) -> str:
    if not bool(row["face_found"]):
        return f"frame {int(row['frame'])}: {row['note'] if row.get('note') else 'no face found'}"
    active = [name for name in au_names(row.to_frame().T) if name in row.index and row[name] == 1]
    who = f" · face {int(row['face'])} of {faces_in_frame}" if faces_in_frame > 1 and pd.notna(row.get("face")) else ""
    return (
        f"frame {int(row['frame'])}{who}: {row['expression']} · valence {row['valence']:+.2f} · arousal {row['arousal']:+.2f}"
        f" · AUs on: {', '.join(active) or 'none'}"
    )


class FramePreviews:
    """Every analysed frame as a small JPEG (longest side at most ``size`` px), so the frame viewer shows any frame
    without decoding the video again: a 20 s, 30 fps video keeps about 600 x 50 kB."""

    def __init__(self, size: int = 720, quality: int = 90):
        self.size, self.quality = size, quality
        self.scale = 1.0  # preview pixels per frame pixel (one video: one frame size)
        self._jpegs: list[bytes] = []

    def __len__(self) -> int:
        return len(self._jpegs)

    def add(self, image: np.ndarray) -> None:
        picture = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
        self.scale = min(1.0, self.size / max(picture.size))
        if self.scale < 1.0:
            picture = picture.resize((max(1, round(picture.width * self.scale)), max(1, round(picture.height * self.scale))))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=self.quality)
        self._jpegs.append(buffer.getvalue())

    def image(self, position: int) -> np.ndarray:
        with Image.open(io.BytesIO(self._jpegs[position])) as picture:
            return np.asarray(picture.convert("RGB"))


def draw_face_boxes(image: np.ndarray, rows: pd.DataFrame, scale: float = 1.0, selected: int | None = None) -> Image.Image:
    """The frame with every face's box and id; the ``selected`` face (default: the first row's) in green with its
    predicted expression, the others in amber. ``scale``: image pixels per box pixel."""
    picture = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    faces = rows[rows["face_found"].astype(bool)]
    if faces.empty:
        return picture
    if selected is None or selected not in set(faces["face"].dropna().astype(int)):
        selected = int(faces["face"].iloc[0]) if "face" in faces and pd.notna(faces["face"].iloc[0]) else None
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 200))
    font = ImageFont.load_default(size=max(11, round(max(picture.size) / 40)))
    for _, row in faces.iterrows():
        face = int(row["face"]) if "face" in row and pd.notna(row["face"]) else None
        chosen = face == selected
        colour, ink = ("#22c55e", "#052e16") if chosen else ("#f59e0b", "#451a03")
        box = [scale * float(row[column]) for column in ("face_x0", "face_y0", "face_x1", "face_y1")]
        draw.rectangle(box, outline=colour, width=width)
        label = "" if face is None else f"face {face}"
        if chosen:
            label += f"  {row['expression']}  V {row['valence']:+.2f}  A {row['arousal']:+.2f}"
        label = label.strip()
        if not label:
            continue
        text_height = draw.textbbox((0, 0), label, font=font)[3]
        left, top = box[0], max(0.0, box[1] - text_height - 2 * width)
        text_box = draw.textbbox((left, top), label, font=font)
        draw.rectangle([text_box[0] - 2, text_box[1] - 2, text_box[2] + 2, text_box[3] + 2], fill=colour)
        draw.text((left, top), label, fill=ink, font=font)
    return picture


def header_markdown(model_id: str, report, package: str, runtimes: dict[str, str] | None = None) -> str:
    """Which model and which extractor weights are loaded, and what runs each network (`AffectPipeline.runtimes`)."""
    if report is None:
        return f"### Model: `{model_id}` (not loaded)\n\n{package}"
    training = {True: "synthetic demo data", False: "real data"}.get(report.synthetic_training, "not recorded")
    runtimes = runtimes or {}
    fusion = f" · fusion model on {runtimes['fusion']}" if "fusion" in runtimes else ""
    lines = [
        f"### Model: `{model_id}` · training data: {training}{fusion}",
        "",
        "| feature | extractor / variant | weights | checkpoint | runs on |",
        "| --- | --- | --- | --- | --- |",
    ]
    for item in report.extractors:
        weights = {"random": "**random init**", "hub": "model repo", "checkpoint": "official checkpoint",
                   "built-in": "built-in"}.get(item.source, item.source)
        checkpoint = item.checkpoint or "-"
        if item.sha256:
            checkpoint += f" (sha256 {item.sha256[:12]}…)"
        runtime = runtimes.get(item.feature, "-").replace("own", "its own code")
        lines.append(f"| {item.feature} | {item.extractor} / {item.variant or '-'} | {weights} | {checkpoint} | {runtime} |")
    lines += ["", package]
    return "\n".join(lines)


def banner_html(messages: list[str]) -> str:
    """A red banner listing why the predictions should not be believed (empty when nothing is wrong)."""
    if not messages:
        return ""
    items = "".join(f"<li>{html.escape(message)}</li>" for message in messages)
    return (
        '<div id="abaw-banner" style="background:#fee2e2;border:2px solid #dc2626;color:#7f1d1d;'
        'padding:10px 14px;border-radius:8px;font-weight:600">'
        f"⚠️ Do not read these predictions as real affect recognition:<ul style='margin:6px 0 0 18px'>{items}</ul></div>"
    )
