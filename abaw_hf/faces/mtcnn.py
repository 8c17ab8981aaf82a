"""MTCNN face detection in PyTorch, with the weights that the ``mtcnn`` wheel ships (MIT).

MTCNN (Zhang et al., 2016) is a cascade of three small networks: P-Net proposes face windows on an image
pyramid, R-Net and O-Net re-score and refine them on 24- and 48-px crops; O-Net also gives five landmarks.
It finds small (from ``min_face_size`` px), turned, grayscale and partly occluded faces that MediaPipe's
selfie-distance detector misses. The networks and the cascade are written here; only the weight files come
from the installed ``mtcnn`` package (``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``), located through its
distribution metadata so that its TensorFlow code is never imported. Those files are LZ4-compressed joblib
dumps of Keras weights; they are read by ``safe_pickle.load_joblib_arrays``, which rebuilds numpy arrays and
refuses anything else, and converted to PyTorch layouts (conv HWIO -> OIHW; dense layers see the features
flattened in Keras's width-major order, see ``_flatten_like_keras``).

    detector = MtcnnDetector(device="cpu")
    faces = detector.detect(rgb_image)                 # list[Face], largest first, with score and 5 landmarks
    per_frame = detector.detect_batch(frames)          # one pyramid pass for a batch of same-size frames
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..safe_pickle import load_joblib_arrays
from .backends import Face
from .images import as_rgb_uint8

WEIGHT_FILES = ("pnet.lz4", "rnet.lz4", "onet.lz4")

# P-Net sees 12-px windows with a stride of 2 px (one pooling of 2).
_CELL, _STRIDE = 12, 2


def bundled_mtcnn_weights() -> dict[str, Path]:
    """Paths of the three MTCNN weight files inside the installed ``mtcnn`` package (not imported)."""
    try:
        distribution = metadata.distribution("mtcnn")
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            "the mtcnn face detector needs the 'mtcnn' package, which ships its weights: pip install 'mtcnn>=1.0,<2' "
            "(its TensorFlow code is not used)"
        ) from None
    paths = {name: Path(str(distribution.locate_file(f"mtcnn/assets/weights/{name}"))) for name in WEIGHT_FILES}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise RuntimeError(f"MTCNN weight files are missing from the installed mtcnn package: {', '.join(missing)}")
    return paths


def _read_keras_weights(path: Path) -> list[np.ndarray]:
    import lz4.frame

    arrays = load_joblib_arrays(lz4.frame.decompress(path.read_bytes()))
    if not isinstance(arrays, list) or not all(isinstance(array, np.ndarray) for array in arrays):
        raise RuntimeError(f"{path} does not hold a list of weight arrays")
    return arrays


def _flatten_like_keras(x: torch.Tensor) -> torch.Tensor:
    """The Keras models permute to (N, W, H, C) before flattening (the Caffe original's layout)."""
    return x.permute(0, 3, 2, 1).flatten(1)


class _ConvPReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel), nn.PReLU(out_channels))


class PNet(nn.Module):
    """Proposal network: fully convolutional, 12-px receptive field; box offsets [N,4,h,w], face prob [N,h,w]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            _ConvPReLU(3, 10, 3), nn.MaxPool2d(2, 2, ceil_mode=True), _ConvPReLU(10, 16, 3), _ConvPReLU(16, 32, 3)
        )
        self.box = nn.Conv2d(32, 4, 1)
        self.face = nn.Conv2d(32, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.body(x)
        return self.box(x), self.face(x).softmax(1)[:, 1]


class RNet(nn.Module):
    """Refinement network on 24-px crops: box offsets [N,4], face prob [N]."""

    def __init__(self):
        super().__init__()
        # ceil_mode pools equal Keras "same" pooling here (the padding falls at the end).
        self.body = nn.Sequential(
            _ConvPReLU(3, 28, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
            _ConvPReLU(28, 48, 3), nn.MaxPool2d(3, 2),
            _ConvPReLU(48, 64, 2),
        )
        self.dense = nn.Sequential(nn.Linear(576, 128), nn.PReLU(128))
        self.box = nn.Linear(128, 4)
        self.face = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dense(_flatten_like_keras(self.body(x)))
        return self.box(x), self.face(x).softmax(1)[:, 1]


class ONet(nn.Module):
    """Output network on 48-px crops: box offsets [N,4], landmarks [N,10] (x0..x4, y0..y4), face prob [N]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            _ConvPReLU(3, 32, 3), nn.MaxPool2d(3, 2, ceil_mode=True),
            _ConvPReLU(32, 64, 3), nn.MaxPool2d(3, 2),
            _ConvPReLU(64, 64, 3), nn.MaxPool2d(2, 2, ceil_mode=True),
            _ConvPReLU(64, 128, 2),
        )
        self.dense = nn.Sequential(nn.Linear(1152, 256), nn.PReLU(256))
        self.box = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)
        self.face = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dense(_flatten_like_keras(self.body(x)))
        return self.box(x), self.landmarks(x), self.face(x).softmax(1)[:, 1]


def _load_keras_weights(network: nn.Module, arrays: list[np.ndarray], name: str) -> None:
    """Copy Keras weights (in Keras's layer order, which is the order of our parameters) into ``network``."""
    parameters = list(network.parameters())
    if len(parameters) != len(arrays):
        raise RuntimeError(f"{name}: expected {len(parameters)} weight arrays, the file has {len(arrays)}")
    with torch.no_grad():
        for parameter, array in zip(parameters, arrays):
            if array.ndim == 4:
                array = array.transpose(3, 2, 0, 1)  # conv kernel HWIO -> OIHW
            elif array.ndim == 2:
                array = array.T  # dense kernel [in, out] -> [out, in]
            else:
                array = array.reshape(-1)  # biases and PReLU slopes (Keras keeps [1, 1, C] for shared axes)
            if tuple(array.shape) != tuple(parameter.shape) or not np.isfinite(array).all():
                raise RuntimeError(f"{name}: weight of shape {array.shape} does not fit {tuple(parameter.shape)}")
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def _nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union") -> torch.Tensor:
    """Indices kept by greedy non-maximum suppression; ``mode="min"`` divides the overlap by the smaller box
    (O-Net's last step: drops a box lying inside a stronger one)."""
    if mode == "union":
        from torchvision.ops import nms

        return nms(boxes, scores, threshold)
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(-1) / torch.minimum(areas[:, None], areas[None, :]).clamp(min=1e-6)
    keep: list[int] = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for index in range(len(boxes)):
        if not suppressed[index]:
            keep.append(index)
            suppressed |= overlap[index] > threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def _nms_per_image(boxes: torch.Tensor, scores: torch.Tensor, image_ids: torch.Tensor, threshold: float) -> torch.Tensor:
    from torchvision.ops import batched_nms

    return batched_nms(boxes, scores, image_ids, threshold)


def _squared(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes made square around their centre (side = the longer side): the crops R-Net and O-Net expect."""
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdim=True).values / 2
    return torch.cat([center - half, center + half], 1)


def _refined(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply regression offsets, given in box widths/heights, to ``x0, y0, x1, y1`` boxes."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


class MtcnnDetector:
    """MTCNN on CPU or GPU: ``detect(image)`` or ``detect_batch(images)`` -> ``Face`` lists, largest first.

    ``min_face_size`` is the smallest face side searched for, in pixels (smaller is slower: the pyramid
    starts larger). ``thresholds`` are the P/R/O-Net face probabilities a window needs to go on (the
    published 0.6, 0.7, 0.7 with O-Net raised to 0.8 against false detections, as in the ``mtcnn``
    package). ``max_faces`` keeps the largest faces only.
    """

    backend = "mtcnn"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        min_face_size: float = 20.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
        scale_factor: float = 0.709,
        max_faces: int | None = None,
    ):
        if min_face_size < _CELL:
            raise ValueError(f"min_face_size must be at least {_CELL} px, got {min_face_size}")
        if not 0 < scale_factor < 1:
            raise ValueError(f"scale_factor must lie in (0, 1), got {scale_factor}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.device = torch.device(device)
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = scale_factor
        self.max_faces = max_faces
        self.weight_paths = bundled_mtcnn_weights()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for network, name in zip((self.pnet, self.rnet, self.onet), WEIGHT_FILES):
            _load_keras_weights(network, _read_keras_weights(self.weight_paths[name]), name)
            # channels-last runs these small convolutions and poolings several times faster on CPU
            network.to(self.device, memory_format=torch.channels_last).eval()

    # -- public API ---------------------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one image (uint8 RGB; gray and RGBA are converted), largest first."""
        return self.detect_batch([image])[0]

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each image; images of the same size share one pyramid pass."""
        images = [as_rgb_uint8(image) for image in images]
        results: list[list[Face]] = [[] for _ in images]
        by_size: dict[tuple[int, int], list[int]] = {}
        for position, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(position)
        for positions in by_size.values():
            for position, faces in zip(positions, self._detect_same_size([images[p] for p in positions])):
                results[position] = faces
        return results

    @property
    def provenance(self) -> dict:
        """Which package files gave the weights (for dataset metadata)."""
        digest = hashlib.sha256()
        for name in WEIGHT_FILES:
            digest.update(self.weight_paths[name].read_bytes())
        return {"backend": self.backend, "model_file": "mtcnn/assets/weights/{pnet,rnet,onet}.lz4",
                "package": f"mtcnn {metadata.version('mtcnn')}", "sha256": digest.hexdigest()}

    def close(self) -> None:
        pass

    def __enter__(self) -> MtcnnDetector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the cascade ----------------------------------------------------------------------------------------

    def _pyramid_scales(self, height: int, width: int) -> list[float]:
        """Scales at which a ``min_face_size`` face becomes P-Net's 12-px window, down to a 12-px image."""
        scale = _CELL / self.min_face_size
        scales = []
        while min(height, width) * scale >= _CELL:
            scales.append(scale)
            scale *= self.scale_factor
        return scales

    def _detect_same_size(self, images: list[np.ndarray]) -> list[list[Face]]:
        batch = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float()
        batch = ((batch - 127.5) / 128.0).contiguous(memory_format=torch.channels_last)  # input range about [-1, 1]
        height, width = images[0].shape[:2]
        boxes, image_ids = self._propose(batch, height, width)
        if len(boxes):
            boxes, image_ids = self._refine(batch, boxes, image_ids)
        landmarks = scores = None
        if len(boxes):
            boxes, landmarks, scores, image_ids = self._output(batch, boxes, image_ids)
        return self._faces(len(images), boxes, landmarks, scores, image_ids, width, height)

    def _propose(self, batch: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        all_boxes, all_scores, all_ids = [], [], []
        scaled = batch
        for scale in self._pyramid_scales(height, width):
            scaled_h, scaled_w = math.ceil(height * scale), math.ceil(width * scale)
            # Each level from the previous, smaller one (a third of the cost of resizing the frame each time);
            # antialiased bilinear is close to area averaging, and faster.
            scaled = F.interpolate(scaled, size=(scaled_h, scaled_w), mode="bilinear", antialias=True, align_corners=False)
            offsets, probability = self.pnet(scaled)
            image_ids, rows, cols = torch.nonzero(probability > self.thresholds[0], as_tuple=True)
            if not len(image_ids):
                continue
            cells = torch.stack([cols, rows, cols, rows], 1).float() * _STRIDE
            cells[:, 2:] += _CELL
            windows = cells / torch.tensor([scaled_w / width, scaled_h / height] * 2, device=cells.device)
            boxes = _refined(windows, offsets[image_ids, :, rows, cols])
            scores = probability[image_ids, rows, cols]
            keep = _nms_per_image(boxes, scores, image_ids, 0.5)
            all_boxes.append(boxes[keep]), all_scores.append(scores[keep]), all_ids.append(image_ids[keep])
        if not all_boxes:
            return torch.empty(0, 4, device=batch.device), torch.empty(0, dtype=torch.long, device=batch.device)
        boxes, scores, image_ids = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_ids)
        keep = _nms_per_image(boxes, scores, image_ids, 0.7)
        return _squared(boxes[keep]), image_ids[keep]

    @staticmethod
    def _crops(batch: torch.Tensor, boxes: torch.Tensor, image_ids: torch.Tensor, size: int) -> torch.Tensor:
        from torchvision.ops import roi_align

        # Outside the image the crop reads 0, mid-gray in the networks' input range.
        rois = torch.cat([image_ids[:, None].to(boxes.dtype), boxes], 1)
        return roi_align(batch, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)

    def _refine(self, batch, boxes, image_ids):
        offsets, scores = self.rnet(self._crops(batch, boxes, image_ids, 24))
        passed = scores > self.thresholds[1]
        boxes, scores, image_ids = _refined(boxes[passed], offsets[passed]), scores[passed], image_ids[passed]
        keep = _nms_per_image(boxes, scores, image_ids, 0.7)
        return _squared(boxes[keep]), image_ids[keep]

    def _output(self, batch, boxes, image_ids):
        offsets, points, scores = self.onet(self._crops(batch, boxes, image_ids, 48))
        passed = scores > self.thresholds[2]
        boxes, offsets, points, scores, image_ids = boxes[passed], offsets[passed], points[passed], scores[passed], image_ids[passed]
        size = boxes[:, 2:] - boxes[:, :2]
        landmarks = torch.stack([boxes[:, None, 0] + points[:, :5] * size[:, None, 0],
                                 boxes[:, None, 1] + points[:, 5:] * size[:, None, 1]], -1)  # [N, 5, 2]
        boxes = _refined(boxes, offsets)
        kept = []
        for image_id in image_ids.unique():
            members = torch.nonzero(image_ids == image_id).flatten()
            kept.append(members[_nms(boxes[members], scores[members], 0.7, mode="min")])
        keep = torch.cat(kept) if kept else torch.empty(0, dtype=torch.long, device=boxes.device)
        return boxes[keep], landmarks[keep], scores[keep], image_ids[keep]

    def _faces(self, count, boxes, landmarks, scores, image_ids, width, height) -> list[list[Face]]:
        faces: list[list[Face]] = [[] for _ in range(count)]
        if landmarks is None or not len(boxes):
            return faces
        limits = np.array([width, height, width, height], dtype=np.float32)
        boxes = np.clip(boxes.float().cpu().numpy(), 0, limits)
        landmarks, scores, image_ids = landmarks.float().cpu().numpy(), scores.float().cpu().numpy(), image_ids.cpu().numpy()
        for box, points, score, image_id in zip(boxes, landmarks, scores, image_ids):
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                faces[image_id].append(Face(box=box.astype(np.float32), landmarks5=points.astype(np.float32), score=float(score)))
        for position in range(count):
            faces[position].sort(key=lambda face: face.area, reverse=True)
            if self.max_faces is not None:
                faces[position] = faces[position][: self.max_faces]
        return faces
