"""Faces in the wild: MTCNN and full-range BlazeFace find every face, MediaPipe adds its mesh and blendshapes to each.

MediaPipe's own detector is a selfie-distance model (it misses small, distant, turned faces); MTCNN finds
them. The FaceLandmarker then runs on a square crop around each MTCNN face, where the face is large enough
for it. When it finds the face there, the mesh's five points (the ones the rest of the package was built on)
replace MTCNN's and the face gets ``landmarks`` and ``blendshapes``; when it does not (a profile, a tiny
face) the face keeps MTCNN's five points, ``landmarks=None``.

MTCNN misses faces turned far from the camera (a soldier shouting with his face turned 60 degrees); MediaPipe's
full-range BlazeFace (``abaw_hf.faces.blazeface``) finds them. By default it looks at every image and its faces
that no MTCNN face overlaps are added (``blazeface="fuse"``; the choice and its cost are measured by
``benchmarks/bench_detectors.py``); ``"fallback"`` asks it only where MTCNN found nothing, ``None`` never.

    with WildFaceDetector(device="cpu") as detector:
        faces = detector.detect(rgb_image)            # every face, largest first
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import logging

import numpy as np

from .backends import BackendDetector, Face, MediaPipeBackend, box_iou
from .images import as_rgb_uint8
from .mtcnn import MtcnnDetector

# The crop handed to the landmarker: this many face sides, centred on the face (the face then fills about
# half of it, the distance MediaPipe's short-range detector was made for).
MESH_CROP_SCALE = 2.0
# The mesh found in a crop must overlap the MTCNN face this much to be taken as the same face.
MESH_MIN_IOU = 0.3
BLAZEFACE_MODES = ("fuse", "fallback", None)

logger = logging.getLogger(__name__)


def _same_face(a: Face, b: Face) -> bool:
    """Two detectors' boxes of one face: they overlap, or one's centre lies inside the other's box."""
    def inside(point, box) -> bool:
        return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])

    return box_iou(a.box, b.box) > 0.3 or inside(a.center, b.box) or inside(b.center, a.box)


def fuse_faces(first: list[Face], second: list[Face]) -> list[Face]:
    """``first`` plus the faces of ``second`` that are none of ``first``'s, largest first."""
    added = [face for face in second if not any(_same_face(face, kept) for kept in first)]
    return sorted([*first, *added], key=lambda face: face.area, reverse=True)


class WildFaceDetector:
    """MTCNN boxes and scores, with MediaPipe's mesh and blendshapes where the landmarker finds the face.

    ``mesh=False`` skips the landmarker (MTCNN's five points only; faster, no blendshapes).
    ``blazeface``: ``"fuse"`` (default) adds the faces full-range BlazeFace finds and MTCNN does not,
    ``"fallback"`` asks BlazeFace only where MTCNN finds no face, ``None`` uses MTCNN alone; when its model
    package is not installed, a warning says so and MTCNN works alone. ``blazeface_confidence`` is its face
    score threshold. Other keyword arguments go to ``MtcnnDetector`` (``device``, ``min_face_size``,
    ``thresholds``, ``max_faces``).
    """

    backend = "mtcnn"

    def __init__(self, mesh: bool = True, min_confidence: float = 0.5, blazeface: str | None = "fuse",
                 blazeface_confidence: float = 0.6, **mtcnn_options):
        if blazeface not in BLAZEFACE_MODES:
            raise ValueError(f"blazeface must be one of {BLAZEFACE_MODES}, got {blazeface!r}")
        self.mtcnn = MtcnnDetector(**mtcnn_options)
        self.blazeface_mode = blazeface
        self.blazeface = None
        if blazeface is not None:
            from .blazeface import BlazeFaceDetector, BlazeFaceUnavailable

            try:
                self.blazeface = BlazeFaceDetector(min_confidence=blazeface_confidence)
            except BlazeFaceUnavailable as error:
                logger.warning("turned faces may be missed: %s", error)
        self._landmarker = (BackendDetector("mediapipe", MediaPipeBackend(2, min_confidence, None)) if mesh
                            else None)

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        images = [as_rgb_uint8(image) for image in images]
        found = self.mtcnn.detect_batch(images)
        if self.blazeface is not None:
            found = [fuse_faces(faces, self.blazeface.detect(image))
                     if not faces or self.blazeface_mode == "fuse" else faces
                     for image, faces in zip(images, found)]
            if self.mtcnn.max_faces is not None:
                found = [faces[: self.mtcnn.max_faces] for faces in found]
        if self._landmarker is None:
            return found
        return [[self.with_mesh(image, face) for face in faces] for image, faces in zip(images, found)]

    def with_mesh(self, image: np.ndarray, face: Face) -> Face:
        """``face`` with the mesh, blendshapes and five points of the landmarker where it finds the face in a crop
        around it; unchanged where it does not."""
        center, side = face.center, MESH_CROP_SCALE * float(max(face.box[2:] - face.box[:2]))
        region = (center[0] - side / 2, center[1] - side / 2, center[0] + side / 2, center[1] + side / 2)
        try:
            meshes = self._landmarker.detect(image, region=region)
        except ValueError:  # the region fell outside the image
            return face
        overlaps = [box_iou(face.box, mesh.box) for mesh in meshes]
        if not overlaps or max(overlaps) < MESH_MIN_IOU:
            return face
        mesh = meshes[int(np.argmax(overlaps))]
        return replace(face, landmarks5=mesh.landmarks5, landmarks=mesh.landmarks, blendshapes=mesh.blendshapes)

    @property
    def provenance(self) -> dict:
        provenance = self.mtcnn.provenance
        if self.blazeface is not None:
            provenance["second_detector"] = {"mode": self.blazeface_mode, **self.blazeface.provenance}
        if self._landmarker is not None:
            provenance["landmarks"] = self._landmarker.provenance
        return provenance

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()

    def __enter__(self) -> WildFaceDetector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
