"""The abaw_hf Gradio Space: per-frame valence/arousal, expressions and action units of a video, an image or a webcam.

    python space/app.py [--model outputs/abaw-fusion] [--port 7860] [--host 127.0.0.1]   # from a checkout
    python app.py [...]                                                                  # in a staged Space

The model is ``--model``, else ``$ABAW_MODEL_ID`` (a Hub id or a local folder), else the ``make demo``
output ``outputs/abaw-fusion``. Without a loadable model the app still starts and says why in a
banner. Bad input (not a video, too large, too long, no face) gives a message in the status box, never
a stack trace, and the server stays up. A video's cost is capped from its container header before decoding
(length, pixels per second, total pixels: `Limits`, set by the ABAW_SPACE_* variables of `LIMIT_VARIABLES`), and each
visitor has one analysis at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

import abaw_hf
from abaw_hf.faces import VideoError, probe_video
from abaw_hf.pipeline import AffectPipeline, PipelineError, read_image
from abaw_hf.pipeline.inputs import VideoProblem, video_frames
from abaw_hf.pipeline.table import concat_tables, write_csv
from abaw_hf.status import status_line

from . import EXAMPLES_DIR, views

logger = logging.getLogger("abaw_space")

DEFAULT_MODEL = "outputs/abaw-fusion"
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_VIDEO_SECONDS = 20.0
WEBCAM_HISTORY = 120  # streamed frames kept for the webcam plots


DEFAULT_MAX_PIXELS_PER_SECOND = 1920 * 1080 * 30  # 1080p at 30 fps
DEFAULT_MAX_TOTAL_PIXELS = 1920 * 1080 * 30 * 20  # 20 s of it
DEFAULT_MAX_CONCURRENT = 4  # analyses admitted at once (the networks still run one batch at a time)
# each limit and the environment variable that sets it (the README's Space section lists them)
LIMIT_VARIABLES = {
    "max_upload_mb": "ABAW_SPACE_MAX_UPLOAD_MB",
    "max_video_seconds": "ABAW_SPACE_MAX_SECONDS",
    "max_pixels_per_second": "ABAW_SPACE_MAX_PIXELS_PER_SECOND",
    "max_total_pixels": "ABAW_SPACE_MAX_TOTAL_PIXELS",
    "max_concurrent": "ABAW_SPACE_MAX_CONCURRENT",
}


@dataclass
class Limits:
    """What one request may cost. Videos are checked from the container header before any frame is decoded:
    length, pixels per second (width x height x fps) and total pixels (width x height x frames)."""

    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_video_seconds: float = DEFAULT_MAX_VIDEO_SECONDS
    max_pixels_per_second: float = DEFAULT_MAX_PIXELS_PER_SECOND
    max_total_pixels: float = DEFAULT_MAX_TOTAL_PIXELS
    max_concurrent: int = DEFAULT_MAX_CONCURRENT

    @classmethod
    def from_env(cls) -> Limits:
        values = {}
        for name, variable in LIMIT_VARIABLES.items():
            text = os.environ.get(variable)
            if text is None:
                continue
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not (value > 0 and value != float("inf")):
                raise SystemExit(f"{variable}={text!r}: expected a finite number > 0")
            values[name] = int(value) if name == "max_concurrent" else value
        return cls(**values)


class InputProblem(Exception):
    """Input the Space declines, with the message the user sees."""


def package_line() -> str:
    return f"abaw_hf {abaw_hf.__version__} · gradio {gr.__version__}"


def load_pipeline(model_id: str) -> tuple[AffectPipeline | None, str | None]:
    """The pipeline for ``model_id``, or None and the reason it could not be loaded."""
    # "org/name" may be a Hub id; the default (the `make demo` output) and paths are folders
    looks_local = (model_id == DEFAULT_MODEL or model_id.startswith((".", "/", "~")) or model_id.count("/") != 1
                   or Path(model_id).exists())
    if looks_local and not Path(model_id).expanduser().is_dir():
        return None, (
            f"No model loaded: the model folder '{model_id}' does not exist ({Path(model_id).expanduser().resolve()}). "
            "Run `make demo` in the clone to train the demo model there, or pass --model / set ABAW_MODEL_ID to a Hub "
            "id or a model folder."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the banner says each cause once (and `main` logs it once)
            pipeline = AffectPipeline.from_pretrained(str(Path(model_id).expanduser()) if looks_local else model_id)
        return pipeline, None
    except Exception as error:  # any failure must leave a running app that says why
        logger.exception("loading %s failed", model_id)
        return None, f"No model loaded: '{model_id}' could not be loaded ({type(error).__name__}: {error})."


class AffectSpace:
    """The Space's request handlers around one pipeline (one request at a time; the pipeline is not thread-safe)."""

    def __init__(self, model_id: str, *, pipeline: AffectPipeline | None = None, limits: Limits | None = None):
        self.model_id = model_id
        self.limits = limits or Limits()
        if pipeline is None:
            self.pipeline, self.load_error = load_pipeline(model_id)
        else:
            self.pipeline, self.load_error = pipeline, None
        self.lock = threading.Lock()
        self.active_visitors: set[str] = set()  # visitors with an analysis running (`visitor_slot`)
        self._visitors_lock = threading.Lock()
        self.csv_dir = Path(tempfile.mkdtemp(prefix="abaw_space_csv_"))
        self.last_timings: dict[str, float] = {}

    # ----- header ------------------------------------------------------------------------------------------

    @property
    def banner_messages(self) -> list[str]:
        if self.pipeline is None:
            return [self.load_error]
        return list(self.pipeline.weights_report.warnings)

    def header(self) -> str:
        if self.pipeline is None:
            return views.header_markdown(self.model_id, None, package_line())
        return views.header_markdown(self.model_id, self.pipeline.weights_report, package_line(), self.pipeline.runtimes)

    def prepare_runtime_in_background(self) -> threading.Thread | None:
        """Start-up's ONNX step: export the graphs ``--runtime auto`` lacks in a low-priority thread, then switch to
        them between requests (under the lock). Requests never wait for it: until then those networks run under
        torch. Returns the thread (None without a model)."""
        if self.pipeline is None:
            return None

        def prepare() -> None:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: this thread only
            except (AttributeError, OSError):
                pass
            try:
                done = self.pipeline.prepare_runtime(lock=self.lock, retry_refused=False)
            except Exception:  # a server must stay up: torch keeps running those networks
                logger.exception("preparing the ONNX graphs failed; the networks stay on torch")
                return
            for feature, what in done.items():
                logger.info("ONNX graph of %s: %s", feature, what)
            logger.info("runtime: %s", self.pipeline.runtime_summary)

        thread = threading.Thread(target=prepare, name="abaw-onnx-prepare", daemon=True)
        thread.start()
        return thread

    # ----- checks ------------------------------------------------------------------------------------------

    def _require_model(self) -> AffectPipeline:
        if self.pipeline is None:
            raise InputProblem(self.load_error)
        return self.pipeline

    def _check_size(self, path: str) -> None:
        megabytes = Path(path).stat().st_size / 2**20
        if megabytes > self.limits.max_upload_mb:
            raise InputProblem(
                f"{Path(path).name} is {megabytes:.1f} MB; this Space takes files up to {self.limits.max_upload_mb:g} MB."
            )

    def _check_video(self, path: str) -> tuple[int | None, int | None]:
        """Refuse unreadable or too-long videos before decoding; (frames announced, frame cap when the length is unknown)."""
        name = Path(path).name
        try:
            info = probe_video(path)
        except VideoError as error:
            raise InputProblem(f"{name}: {error.reason}. Upload a video file (mp4, webm, mov, mkv, avi).") from None
        seconds = info.duration
        if seconds is None and info.frames_expected and info.fps:
            seconds = info.frames_expected / info.fps
        limit = self.limits.max_video_seconds
        if seconds is not None and seconds > limit + 0.5 / (info.fps or 25):
            raise InputProblem(
                f"{name} is {seconds:.1f} s long; this Space analyses videos up to {limit:g} s. Trim it and upload again."
            )
        # the work a video costs, from its header: frames of this size at this rate, and all of them together
        fps = info.fps or 30.0
        frame_pixels = (info.width or 0) * (info.height or 0)
        rate, total = frame_pixels * fps, frame_pixels * (info.frames_expected or (seconds or limit) * fps)
        size = f"{info.width}x{info.height} at {fps:g} fps"
        if rate > self.limits.max_pixels_per_second:
            raise InputProblem(
                f"{name} is {size} ({rate / 1e6:.0f} megapixels per second); this Space takes up to "
                f"{self.limits.max_pixels_per_second / 1e6:g} (e.g. 1080p at 30 fps). Scale it down and upload again."
            )
        if total > self.limits.max_total_pixels:
            raise InputProblem(
                f"{name} is {size}, {total / 1e6:.0f} megapixels in all; this Space takes up to "
                f"{self.limits.max_total_pixels / 1e6:g}. Trim or scale it down and upload again."
            )
        cap = int(limit * fps) if seconds is None else None
        if frame_pixels:  # a header that understates the frame count never decodes past the total-pixel cap
            cap = min(cap or 2**62, max(1, int(self.limits.max_total_pixels // frame_pixels)))
        return info.frames_expected, cap

    # ----- handlers ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def visitor_slot(self, request: gr.Request | None):
        """One analysis at a time per visitor: a second upload while the first runs is refused at once, so one
        visitor cannot fill the queue (the networks still take one batch at a time, `self.lock`)."""
        visitor = _visitor(request)
        with self._visitors_lock:
            if visitor in self.active_visitors:
                raise InputProblem("Your previous upload is still being analysed; wait for its result, then try again.")
            self.active_visitors.add(visitor)
        try:
            yield
        finally:
            with self._visitors_lock:
                self.active_visitors.discard(visitor)

    def analyse_video(self, video_path: str | None, request: gr.Request = None):
        """A video upload or webcam recording -> every output of the results area, progressively.

        Frames are decoded once and fed to one `pipeline.stream()` as they come; the outputs are shown each time
        rows become final, and the final table is the one `abaw-hf predict` writes for the same video. A small
        JPEG of every frame is kept for the frame viewer, so moving the slider never decodes the video again.
        """
        slot = None
        try:
            if not video_path:
                raise InputProblem("Upload a video (or record one with the webcam) first.")
            pipeline = self._require_model()
            self._check_size(video_path)
            frames = VideoFrames(video_path, *self._check_video(video_path))  # the header's caps, before decoding
            visitor = self.visitor_slot(request)
            visitor.__enter__()  # left in `finally` below: the generator may stop early (the visitor left)
            slot = visitor
            name, started = Path(video_path).name, time.perf_counter()
            yield self._progress(f"⏳ Analysing {name}…")
            stream, parts = pipeline.stream(source=name, audio=video_path), []
            while frames.has_more():
                with self.lock:
                    parts.append(stream.feed(frames.take(pipeline.batch_size)))
                if len(parts[-1]) and frames.has_more():
                    yield self._results(concat_tables(parts), kind="video", previews=frames.previews,
                                        timings=stream.timings, seconds=time.perf_counter() - started, final=False,
                                        expected=frames.expected, source_path=video_path)
            if frames.problem.error is not None:  # the frames before a break are kept (`VideoProblem`: one rule)
                stream.warnings.append(frames.problem.note(stream.count, name))
            with self.lock:
                parts.append(stream.finish())
            yield self._results(concat_tables(parts), kind="video", previews=frames.previews, timings=stream.timings,
                                seconds=time.perf_counter() - started, source_path=video_path)
        except (InputProblem, VideoError, PipelineError) as error:
            yield self._failure(self._message(error, video_path))
        except Exception as error:  # a message, never a stack trace, and the server stays up
            logger.exception("analysing %s failed", video_path)
            yield self._failure(f"Could not analyse {Path(str(video_path)).name}: {type(error).__name__}: {error}")
        finally:
            if slot is not None:
                slot.__exit__(None, None, None)

    def analyse_image(self, image_path: str | None, request: gr.Request = None):
        """An image upload -> every output of the results area (circumplex, bars instead of timelines)."""
        try:
            if not image_path:
                raise InputProblem("Upload an image first.")
            pipeline = self._require_model()
            self._check_size(image_path)
            started = time.perf_counter()
            with self.visitor_slot(request), self.lock:  # the file as uploaded reaches our decoder (no re-encode)
                table = pipeline.predict_images([image_path])
            previews = views.FramePreviews()
            previews.add(read_image(image_path))  # the table names the file; the viewer needs its pixels once
            return self._results(table, kind="image", previews=previews, timings=dict(pipeline.timings),
                                 seconds=time.perf_counter() - started, source_path=image_path)
        except (InputProblem, PipelineError) as error:
            return self._failure(self._message(error, image_path))
        except Exception as error:
            logger.exception("analysing %s failed", image_path)
            return self._failure(f"Could not analyse {Path(str(image_path)).name}: {type(error).__name__}: {error}")

    def webcam_frame(self, frame: np.ndarray | None, history: list[dict] | None):
        """One streamed webcam frame: its face box, and plots of the recent frames (no temporal model context)."""
        history = list(history or [])
        if frame is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), history
        try:
            pipeline = self._require_model()
            with self.lock:
                faces = pipeline.predict_images([frame])
            row = faces.iloc[0].copy()  # the largest face
        except (InputProblem, PipelineError) as error:
            return f"❌ {error}", gr.update(), gr.update(), gr.update(), gr.update(), history
        now = time.monotonic()
        start = history[0]["_clock"] if history else now
        row["frame"] = history[-1]["frame"] + 1 if history else 0
        row["time"] = now - start
        history = [*history, {**row.to_dict(), "_clock": start}][-WEBCAM_HISTORY:]
        table = pd.DataFrame(history).drop(columns="_clock")
        status = "🎥 " + views.frame_caption(row) + "\n\n" + status_line(pipeline.weights_report.status)
        return (
            status,
            views.draw_face_boxes(frame, faces),
            *views.task_figures(table, temporal=True),
            history,
        )

    def show_frame(self, result: dict | None, frame_number: float | None):
        """The chosen frame of the last result with every face's box and id, and the selected face's predictions."""
        if not result or frame_number is None:
            return gr.update(), gr.update()
        table: pd.DataFrame = result["table"]
        position = int(np.clip(round(frame_number), 0, table["frame"].nunique() - 1))
        result["position"] = position
        rows = views.frame_rows(table, position)
        chosen = rows[rows["face"].eq(result.get("face")).fillna(False).to_numpy(dtype=bool)]
        caption = views.frame_caption((chosen if len(chosen) else rows).iloc[0], faces_in_frame=len(rows))
        previews: views.FramePreviews = result["previews"]
        if position >= len(previews):
            return None, caption
        return views.draw_face_boxes(previews.image(position), rows, scale=previews.scale, selected=result.get("face")), caption

    def select_face(self, result: dict | None, face: int | None):
        """Another face chosen: its plots, and the current frame with that face highlighted."""
        if not result or face is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), result
        result["face"] = int(face)
        frame_image, caption = self.show_frame(result, result.get("position", 0))
        return (frame_image, caption, *self._figures(result), result)

    def _figures(self, result: dict) -> tuple:
        """The three plots of the selected face (one row per frame: `views.face_rows`)."""
        temporal = result["kind"] == "video"
        shown = views.face_rows(result["table"], result.get("face"))
        thresholds = list(self.pipeline.config.au_thresholds) if self.pipeline.config.au_thresholds else None
        return views.task_figures(shown, temporal, thresholds)

    # ----- outputs -----------------------------------------------------------------------------------------

    OUTPUT_COUNT = 11  # status, frame, caption, VA plot, expression plot, AU plot, table, CSV, state, slider, face

    @staticmethod
    def _message(error: Exception, path: str | None) -> str:
        if isinstance(error, VideoError) and path:
            return f"{Path(path).name}: {error.reason}."
        text = str(error)
        return text.replace(str(path), Path(path).name) if path else text

    def _failure(self, message: str):
        gr.Warning(message)
        return (f"❌ {message}", None, "", None, None, None, None, None, None, gr.update(visible=False),
                gr.update(visible=False))

    def _progress(self, message: str):
        """Only the status changes; every other output keeps what it shows."""
        return (message, *[gr.update()] * (self.OUTPUT_COUNT - 1))

    def _results(self, table: pd.DataFrame, *, kind: str, previews: views.FramePreviews, source_path: str,
                 timings: dict, seconds: float, final: bool = True, expected: int | None = None):
        temporal = kind == "video"
        self.last_timings = dict(timings)  # seconds per pipeline stage of the latest result (benchmarks read it)
        found = table.groupby("frame", sort=False)["face_found"].any().to_numpy(dtype=bool)  # per frame
        faces = views.face_ids(table)
        result = {"kind": kind, "table": table, "previews": previews, "face": faces[0] if faces else None}
        first = int(np.argmax(found)) if found.any() else 0
        frame_image, caption = self.show_frame(result, first)
        csv_path = Path(tempfile.mkdtemp(dir=self.csv_dir)) / f"{Path(source_path).stem}_predictions.csv"
        write_csv(table, csv_path, self.pipeline.weights_report.status)  # its `weights` column says what it is
        notes = [message for message in table.attrs.get("warnings", [])
                 if message not in self.banner_messages and not message.startswith("no face found in any")]
        frames = f"{len(found)} frame{'s' if len(found) != 1 else ''}"
        if not final:
            frames = f"{len(found)} of {'about ' + str(expected) if expected else 'the'} frames"
        people = f", {len(faces)} faces" if len(faces) > 1 else ""
        status = (
            f"{'✅' if final else '⏳'} {frames} ({int(found.sum())} with a face{people}) in {seconds:.1f} s"
            f" — decode {timings.get('decode', 0):.1f} s · faces {timings.get('faces', 0):.1f} s · extractors "
            f"{timings.get('extractors', 0):.1f} s · fusion {timings.get('fusion', 0):.2f} s"
            + ("" if final else " · still analysing…")
        )
        if final and not found.any():
            gr.Warning(f"No face found in {Path(source_path).name}.")
            status = f"⚠️ No face found in {'any of the ' + str(len(found)) + ' frames' if temporal else 'the image'}. " + status
        status += "\n\n" + status_line(self.pipeline.weights_report.status)  # what API users read, every time
        status += "".join(f"\n\n⚠️ {note}" for note in notes)
        slider = gr.update(visible=temporal and len(found) > 1, minimum=0, maximum=max(len(found) - 1, 1), value=first)
        selector = gr.update(choices=[(f"face {face}", face) for face in faces], value=result["face"],
                             visible=len(faces) > 1)
        return (
            status,
            frame_image,
            caption,
            *self._figures(result),
            display_table(table),
            str(csv_path),
            result,
            slider,
            selector,
        )


def _visitor(request: gr.Request | None) -> str:
    """Who sent a request: the first address of X-Forwarded-For (behind the Spaces proxy), else the client's."""
    if request is None:
        return "local"
    forwarded = (request.headers.get("x-forwarded-for") or "").split(",")[0].strip()
    return forwarded or getattr(request.client, "host", None) or "unknown"


class VideoFrames:
    """The frames of one video, decoded once and handed out chunk by chunk; keeps a small JPEG of each frame for the
    frame viewer and remembers a broken tail."""

    def __init__(self, path: str, expected: int | None = None, max_frames: int | None = None):
        self.problem = VideoProblem()  # a truncated or damaged tail: the frames before it are kept
        self._decoded = video_frames(Path(path), self.problem)
        self.expected = expected
        self.max_frames = max_frames
        self.previews = views.FramePreviews()
        self._next = None
        self._done = False

    @property
    def count(self) -> int:
        return len(self.previews)

    def has_more(self) -> bool:
        if self._next is None and not self._done:
            if self.max_frames is not None and self.count >= self.max_frames:
                self._done = True
                return False
            try:
                self._next = next(self._decoded)  # nothing decodable at all: the VideoError reaches the caller
            except StopIteration:
                self._done = True
        return self._next is not None

    def take(self, count: int):
        """Up to ``count`` decoded frames (numbers and timestamps included), streamed (never held as a list)."""
        for _ in range(count):
            if not self.has_more():
                return
            frame, self._next = self._next, None
            self.previews.add(frame.image)
            yield frame


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-frame, per-face table rounded for reading, empty cells where no face was found."""
    shown = table.drop(columns=["source"])
    floats = shown.select_dtypes("floating").columns
    rounded = shown.astype({column: "float64" for column in floats}).round(3)  # float32 would print 180.71600341796875
    return rounded.astype(object).where(rounded.notna(), None)


# ----- the page ----------------------------------------------------------------------------------------------


def _examples(names: list[str]) -> list[list[str]]:
    return [[str(EXAMPLES_DIR / name)] for name in names if (EXAMPLES_DIR / name).is_file()]


def build_app(space: AffectSpace) -> gr.Blocks:
    """The Blocks page: header and banner, inputs in tabs, one results area shared by all inputs."""
    with gr.Blocks(title="ABAW affect recognition") as app:
        gr.Markdown(
            "# ABAW affect recognition\nPer-frame **valence/arousal**, **8 expressions** and **12 action units** "
            "from a video, an image or your webcam (abaw_hf fusion model). Every face is detected and tracked with "
            "its own id (boxes on the frame, a selector for the face whose plots are shown, the `face` column); "
            "frames without a face are marked, not dropped."
        )
        gr.HTML(views.banner_html(space.banner_messages), elem_id="banner", visible=bool(space.banner_messages))
        with gr.Accordion("Loaded model and extractor weights", open=space.pipeline is None or bool(space.banner_messages)):
            # a function: rendered again at each page load, so "runs on" follows the start-up's ONNX step
            gr.Markdown(space.header, elem_id="model-header")
        limits = space.limits
        with gr.Tabs():
            with gr.Tab("Video", id="video"):
                video_input = gr.Video(
                    label=f"Video (up to {limits.max_video_seconds:g} s, {limits.max_upload_mb:g} MB) or webcam recording",
                    sources=["upload", "webcam"],
                    include_audio=True,  # keeps the file as uploaded (no ffmpeg pass); the audio is ignored
                    height=320,
                    elem_id="video-input",
                )
                video_button = gr.Button("Analyse video", variant="primary", elem_id="analyse-video")
                video_examples = _examples(["astronaut_clip.mp4"])
                if video_examples:
                    gr.Examples(video_examples, inputs=[video_input], label="Example (offline)")
            with gr.Tab("Image", id="image"):
                # a File, not an Image: the upload reaches our decoder byte for byte (an Image input re-encodes it as
                # 8-bit RGB first, and its own decoding errors would not be our message)
                image_input = gr.File(label=f"Image (up to {limits.max_upload_mb:g} MB)", type="filepath",
                                      height=120, elem_id="image-input")
                image_button = gr.Button("Analyse image", variant="primary", elem_id="analyse-image")
                image_examples = _examples(["astronaut.jpg"])
                if image_examples:
                    gr.Examples(image_examples, inputs=[image_input], label="Example (offline)")
            with gr.Tab("Webcam (live)", id="webcam"):
                gr.Markdown("Streams webcam frames and predicts each one on its own (no temporal context). For the "
                            "temporal model, record a short clip in the Video tab.")
                webcam_input = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="numpy", height=320)
        status = gr.Markdown("Upload a video or an image, or start the webcam.", label="status", elem_id="status")
        with gr.Row():
            with gr.Column(scale=1):
                frame_image = gr.Image(label="Frame with face box", type="pil", interactive=False, elem_id="frame-image")
                frame_caption = gr.Markdown(label="frame caption", elem_id="frame-caption")
                frame_slider = gr.Slider(label="Frame", minimum=0, maximum=1, step=1, value=0, visible=False)
                face_selector = gr.Dropdown(label="Face shown in the plots", choices=[], visible=False,
                                            elem_id="face-selector")
            with gr.Column(scale=2):
                va_plot = gr.Plot(label="Valence / arousal", elem_id="va-plot")
        expression_plot = gr.Plot(label="Expressions", elem_id="expression-plot")
        au_plot = gr.Plot(label="Action units", elem_id="au-plot")
        table = gr.Dataframe(label="Per-frame predictions", interactive=False, max_height=360, elem_id="table")
        csv_file = gr.File(label="Per-frame CSV", interactive=False, elem_id="csv")
        result_state = gr.State()
        webcam_history = gr.State([])

        outputs = [status, frame_image, frame_caption, va_plot, expression_plot, au_plot, table, csv_file,
                   result_state, frame_slider, face_selector]
        # admitted together up to max_concurrent (the header checks answer at once; the networks take one batch at
        # a time under space.lock, so two videos share them batch by batch), one per visitor (visitor_slot)
        video_button.click(space.analyse_video, [video_input], outputs, api_name="analyse_video",
                           concurrency_id="analysis", concurrency_limit=limits.max_concurrent)
        image_button.click(space.analyse_image, [image_input], outputs, api_name="analyse_image",
                           concurrency_id="analysis", concurrency_limit=limits.max_concurrent)
        webcam_input.stream(space.webcam_frame, [webcam_input, webcam_history],
                            [status, frame_image, va_plot, expression_plot, au_plot, webcam_history],
                            api_name="webcam_frame", stream_every=1.0, time_limit=300,
                            concurrency_id="model", concurrency_limit=1)
        frame_slider.release(space.show_frame, [result_state, frame_slider], [frame_image, frame_caption],
                             api_name="show_frame")
        face_selector.input(space.select_face, [result_state, face_selector],
                            [frame_image, frame_caption, va_plot, expression_plot, au_plot, result_state],
                            api_name="select_face")
    return app


def launch(space: AffectSpace, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve the page; ``block=False`` returns at once (tests), with the app still running."""
    app = build_app(space)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        max_file_size=f"{space.limits.max_upload_mb:g}mb",
        show_error=False,
        quiet=not block,
    )
    return app


def serve(model: str, host: str = "127.0.0.1", port: int | None = None) -> int:
    """Run the Space until it is stopped (its command line: `abaw_hf.cli.space`)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logger.info("abaw_hf %s from %s", abaw_hf.__version__, abaw_hf.__file__)
    from abaw_hf.threads import configure_threads

    # one analysis at a time (concurrency_limit=1): it takes the cores free to this process
    logger.info("threads: %s", configure_threads(processes=1))
    space = AffectSpace(model, limits=Limits.from_env())
    for message in space.banner_messages:
        logger.warning(message)
    space.prepare_runtime_in_background()
    launch(space, host=host, port=port)
    return 0
