"""Input checks shared by the face backends: every image becomes a contiguous uint8 RGB array."""

from __future__ import annotations

import numpy as np


def as_rgb_uint8(image: np.ndarray, source: str | None = None) -> np.ndarray:
    """Return ``image`` as a contiguous ``uint8 [H, W, 3]`` RGB array.

    Grayscale (``[H, W]`` or ``[H, W, 1]``) is repeated to three channels and RGBA loses its
    alpha channel; anything else is an error that says what was expected.
    """
    where = f" ({source})" if source else ""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy uint8 image [H, W, 3], got {type(image).__name__}{where}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image [H, W, 3] (RGB, 0..255), got dtype {image.dtype}{where}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected an image of shape [H, W, 3] (RGB), [H, W] (gray) or [H, W, 4] (RGBA), "
            f"got shape {tuple(image.shape)}{where}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {tuple(image.shape)}{where}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)
