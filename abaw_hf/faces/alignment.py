"""5-point similarity alignment to the standard 112-px face template (ArcFace / ABAW-style crops).

A head turned far from the camera (yaw) bunches its five points towards the nose side: fitted to the frontal
template they put the crop's centre on the cheek, and a 60-degree profile falls half out of the crop. Given the
detector's ``box``, the alignment measures the turn (the nose's offset from the eyes' midpoint) and, for turned
faces only, moves the crop so that the box centre lands where it lands for frontal faces; rotation and scale
still come from the five points, and faces turned less than about 20 degrees get the plain template crop.
"""

from __future__ import annotations

import cv2
import numpy as np

from .images import as_rgb_uint8

# Order of the five landmarks everywhere in abaw_hf.faces, as seen in the image
# (so "left_eye" is the subject's right eye).
LANDMARK5_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# The widely used 5-point template of 112x112 aligned face crops (ArcFace, insightface);
# coordinates in pixels for a 112-px crop, scaled linearly for other sizes.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


# Where the centre of a detector's face box (forehead to chin) falls in the 112-px crop of a frontal face: the mean
# over the frontal faces of tests/faces_labelled.json (spread about 2.5 px).
FRONTAL_BOX_CENTER_112 = np.array([56.4, 64.0])
# Eye distance of the template (px of 112); the nose's offset from the eyes' midpoint, in these units, measures yaw:
# about 0 for a frontal face, 0.2 at 20-25 degrees, 0.5 at 60 degrees.
_TEMPLATE_EYE_DISTANCE = float(np.linalg.norm(TEMPLATE_112[1] - TEMPLATE_112[0]))
# Turn measures between which the crop moves from the template's centring to the box's.
_YAW_RECENTER = (0.2, 0.4)


def template_for_size(size: int) -> np.ndarray:
    """The 5-point template in pixels of a ``size`` x ``size`` crop."""
    if size < 8:
        raise ValueError(f"aligned crop size must be at least 8 px, got {size}")
    return TEMPLATE_112 * (size / 112.0)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``source`` onto ``target``.

    Umeyama's closed form; returns the 2x3 matrix for ``cv2.warpAffine``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"expected two [K, 2] point sets with K >= 2, got {source.shape} and {target.shape}")
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centered, target_centered = source - source_mean, target - target_mean
    source_variance = (source_centered**2).sum() / len(source)
    if source_variance <= 1e-12:
        raise ValueError("landmarks are degenerate (all points coincide)")
    covariance = target_centered.T @ source_centered / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    # Reflection guard: a similarity never mirrors the face.
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = (singular_values * sign).sum() / source_variance
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def alignment_matrix(landmarks5: np.ndarray, size: int = 112, box: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 matrix that takes image pixels to the ``size``-px aligned crop.

    With the detector's ``box`` (``x0, y0, x1, y1``), a face turned more than about 20 degrees is centred on
    its box instead of on its five points (see the module's docstring).
    """
    landmarks5 = np.asarray(landmarks5, dtype=np.float64)
    if landmarks5.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks of shape [5, 2] ({', '.join(LANDMARK5_NAMES)}), got {landmarks5.shape}")
    template = template_for_size(size)
    matrix = similarity_transform(landmarks5, template)
    if box is None:
        return matrix
    points = transform_points(landmarks5, matrix)
    turn = abs(points[2, 0] - points[:2, 0].mean()) / (_TEMPLATE_EYE_DISTANCE * size / 112.0)
    low, high = _YAW_RECENTER
    weight = float(np.clip((turn - low) / (high - low), 0.0, 1.0))
    if weight > 0:
        box = np.asarray(box, dtype=np.float64)
        center = transform_points(((box[:2] + box[2:]) / 2)[None], matrix)[0]
        matrix[:, 2] += weight * (FRONTAL_BOX_CENTER_112 * size / 112.0 - center)
    return matrix


def align_face(image: np.ndarray, landmarks5: np.ndarray, size: int = 112, box: np.ndarray | None = None) -> np.ndarray:
    """Warp ``image`` so that its five landmarks land on the template: ``uint8 [size, size, 3]``.

    Pixels outside the source image are black, as in the ABAW ``cropped_aligned`` frames. With the detector's
    ``box``, a turned face is centred on its box (``alignment_matrix``).
    """
    image = as_rgb_uint8(image)
    matrix = alignment_matrix(landmarks5, size, box)
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to ``[K, 2]`` points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]
