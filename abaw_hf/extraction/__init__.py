"""Frames folder or raw video -> faces -> extractors -> feature dataset (`abaw-hf extract`).

    from abaw_hf.data import read_mtl_annotations
    from abaw_hf.extraction import extract_features, extract_video_features
    from abaw_hf.extractors import create_extractor

    rows = read_mtl_annotations("validation_set_annotations.txt")
    extractors = [create_extractor("resnet18", checkpoint="resnet18_msceleb.pth")]
    result = extract_features(rows, "cropped_aligned", extractors, "features/val")
    result.dataset, result.report                      # the dataset and its extraction report
"""

from __future__ import annotations

from .frames import ImageProblem, LoadedImage, read_face_image
from .runner import (
    REPORT_NAME,
    ExtractionResult,
    MissingImagesError,
    extract_features,
    rows_from_frames_folder,
    work_root_for,
)
from .video import NoFaceError, extract_video_features, track_video_faces

__all__ = [
    "REPORT_NAME",
    "ExtractionResult",
    "ImageProblem",
    "LoadedImage",
    "MissingImagesError",
    "NoFaceError",
    "extract_features",
    "extract_video_features",
    "read_face_image",
    "rows_from_frames_folder",
    "track_video_faces",
    "work_root_for",
]
