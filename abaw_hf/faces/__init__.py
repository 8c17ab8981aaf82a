"""Face detection, 5-point alignment and tracking, offline (weights from installed packages).

    from abaw_hf.faces import FaceDetector, MultiFaceTracker, align_face, iter_video_frames

    with FaceDetector() as detector:                      # MediaPipe FaceLandmarker
        face = detector.detect(rgb_image)[0]              # box, 5 points, 478 landmarks, 52 blendshapes
        crop = align_face(rgb_image, face.landmarks5, box=face.box)  # uint8 [112, 112, 3]; a turned head stays centred
        tracker = MultiFaceTracker(detector, faces="largest", search_scale=2.5)  # one face, sought near its track too
        for frame in tracker.track(iter_video_frames("clip.mp4")):
            frame.missing, [tracked.aligned for tracked in frame.faces]  # one result per frame, never dropped

Every face, in the wild (MTCNN fused with full-range BlazeFace for turned heads), each with a stable id
(``MultiFaceTracker`` is ``abaw_hf.faces.multi_tracking``'s and needs scipy; ``abaw_hf.faces.mtcnn``, ``.blazeface``
and ``.wild`` are imported on use, they need torch and LiteRT):

    tracker = MultiFaceTracker(FaceDetector("mtcnn", max_faces=16), faces="all")
    for frame in tracker.track(iter_video_frames("clip.mp4")):
        [(tracked.face_id, tracked.aligned) for tracked in frame.faces]   # empty when no face
"""

from __future__ import annotations

from .._lazy import lazy_exports

# Names load from their modules on first use: a command's --help reads BACKENDS without cv2, av or mediapipe.
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".alignment": ["LANDMARK5_NAMES", "TEMPLATE_112", "align_face", "alignment_matrix", "similarity_transform",
                   "transform_points"],
    ".detection": ["BACKENDS", "DEFAULT_BACKEND", "Face", "FaceDetector", "box_iou", "bundled_landmarker_path"],
    ".images": ["as_rgb_uint8"],
    ".multi_tracking": ["FrameFaces", "MultiFaceTracker", "TrackedFaceInFrame", "TrackingSummary"],
    ".video": ["CorruptVideoError", "DecodedFrame", "EmptyVideoError", "NotAVideoError", "TruncatedVideoError",
               "VideoError", "VideoInfo", "iter_video_frames", "probe_video", "write_video"],
})
