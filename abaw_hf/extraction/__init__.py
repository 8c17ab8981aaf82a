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

from .._lazy import lazy_exports

# names load from their modules on first use, so `abaw-hf extract --help` imports no torch
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".frames": ["ImageProblem", "LoadedImage", "read_face_image"],
    ".runner": ["REPORT_NAME", "ExtractionResult", "MissingImagesError", "extract_features", "rows_from_frames_folder",
                "work_root_for"],
    ".video": ["NoFaceError", "extract_video_features", "track_video_faces"],
})
