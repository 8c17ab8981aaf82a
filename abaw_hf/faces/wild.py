"""Faces in the wild: MTCNN finds every face, MediaPipe adds its 478-point mesh and blendshapes to each.

MediaPipe's own detector is a selfie-distance model (it misses small, distant, turned faces); MTCNN finds
them. The FaceLandmarker then runs on a square crop around each MTCNN face, where the face is large enough
for it. When it finds the face there, the mesh's five points (the ones the rest of the package was built on)
replace MTCNN's and the face gets ``landmarks`` and ``blendshapes``; when it does not (a profile, a tiny
face) the face keeps MTCNN's five points, ``landmarks=None``.

    with WildFaceDetector(device="cpu") as detector:
        faces = detector.detect(rgb_image)            # every face, largest first
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .detection import Face, FaceDetector, box_iou
from .images import as_rgb_uint8
from .mtcnn import MtcnnDetector

# The crop handed to the landmarker: this many face sides, centred on the face (the face then fills about
# half of it, the distance MediaPipe's short-range detector was made for).
MESH_CROP_SCALE = 2.0
# The mesh found in a crop must overlap the MTCNN face this much to be taken as the same face.
MESH_MIN_IOU = 0.3


class WildFaceDetector:
    """MTCNN boxes and scores, with MediaPipe's mesh and blendshapes where the landmarker finds the face.

    ``mesh=False`` skips the landmarker (MTCNN's five points only; faster, no blendshapes).
    Other keyword arguments go to ``MtcnnDetector`` (``device``, ``min_face_size``, ``thresholds``,
    ``max_faces``).
    """

    backend = "mtcnn"

    def __init__(self, mesh: bool = True, min_confidence: float = 0.5, **mtcnn_options):
        self.mtcnn = MtcnnDetector(**mtcnn_options)
        self._landmarker = FaceDetector("mediapipe", max_faces=2, min_confidence=min_confidence) if mesh else None

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        images = [as_rgb_uint8(image) for image in images]
        found = self.mtcnn.detect_batch(images)
        if self._landmarker is None:
            return found
        return [[self._with_mesh(image, face) for face in faces] for image, faces in zip(images, found)]

    def _with_mesh(self, image: np.ndarray, face: Face) -> Face:
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
