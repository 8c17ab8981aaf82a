"""From a video, images or frames to per-frame affect predictions, streaming.

    from abaw_hf.pipeline import AffectPipeline

    pipeline = AffectPipeline.from_pretrained("org/abaw-fusion")    # or a local folder
    table = pipeline("clip.mp4")                                       # pandas DataFrame, a row per (frame, face)
    pipeline.weights_report                                            # which extractor weights are loaded

    stream = pipeline.stream(source="webcam")                          # frames as they come
    rows = stream.feed(frames)                                         # the rows final so far
    rest = stream.finish()

Frames are decoded one at a time (`inputs`), every face is tracked with its ``face`` id and aligned (112 px;
``faces="all" | "largest" | N``), face crops are batched through the extractors the model's config names in its
``extractors`` provenance block (`weights`), the features of each face's consecutive frames form windows for the
fusion model, and the predictions are smoothed along each face's track and thresholded (`stream`) into the
per-(frame, face) table (`table`, which documents every column). A frame without a face is one row with
``face_found == False`` and empty predictions.
"""

from ..faces.images import IMAGE_SUFFIXES
from ..model_files import DEFAULT_SMOOTHING_SIGMA
from ..segments import DEFAULT_MAX_GAP, DEFAULT_WINDOW
from .core import AffectPipeline
from .errors import ExtractorNotInstalledError, ImageReadError, PipelineError
from .inputs import Frame, read_image
from .stream import FACE_SIZE, PredictionStream
from .table import NO_FACE_NOTE, UNREADABLE_NOTE, prediction_columns, probability_column
from .weights import ExtractorWeights, WeightsReport, build_extractors

__all__ = [
    "DEFAULT_MAX_GAP",
    "DEFAULT_SMOOTHING_SIGMA",
    "DEFAULT_WINDOW",
    "FACE_SIZE",
    "IMAGE_SUFFIXES",
    "NO_FACE_NOTE",
    "UNREADABLE_NOTE",
    "AffectPipeline",
    "ExtractorNotInstalledError",
    "ExtractorWeights",
    "Frame",
    "ImageReadError",
    "PipelineError",
    "PredictionStream",
    "WeightsReport",
    "build_extractors",
    "prediction_columns",
    "probability_column",
    "read_image",
]
