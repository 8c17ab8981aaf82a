"""Reading face images and turning them into model inputs, inside DataLoader worker processes.

Every image is checked on its own: a file that cannot be used (0 bytes, not an image, truncated, too large,
too small, a folder, unreadable) becomes a missing vector with a reason instead of stopping the run; grayscale,
RGBA, palette, CMYK and 16-bit images are converted to RGB and noted. Decoding is `abaw_hf.faces.images`'s,
the same as the inference pipeline's.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from ..extractors import Extractor, PreprocessConfig, preprocess_images
from ..faces.images import DEFAULT_MAX_IMAGE_PIXELS, ImageProblem, LoadedImage, read_image_file
from .settings import DEFAULT_MIN_IMAGE_SIZE

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "DEFAULT_MIN_IMAGE_SIZE", "FaceFrames", "ImageProblem", "LoadedImage",
           "preprocess_groups", "read_face_image"]


def read_face_image(
    path: str | os.PathLike, min_size: int = DEFAULT_MIN_IMAGE_SIZE, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> LoadedImage:
    """Decode a face crop to RGB uint8; raises ImageProblem for unusable files and crops under `min_size` px."""
    loaded = read_image_file(path, max_pixels)
    height, width = loaded.pixels.shape[:2]
    if min(height, width) < min_size:
        raise ImageProblem(f"image is {width}x{height} px, smaller than the {min_size} px minimum")
    return loaded


def preprocess_groups(extractors: Sequence[Extractor]) -> list[PreprocessConfig]:
    """The distinct preprocessing configs of `extractors`, in first-use order (one input tensor per config)."""
    configs: list[PreprocessConfig] = []
    for extractor in extractors:
        if extractor.modality == "image" and extractor.preprocess_cfg not in configs:
            configs.append(extractor.preprocess_cfg)
    return configs


def _describe(cfg) -> str:
    if isinstance(cfg, PreprocessConfig):
        return f"{cfg.input_size}px {cfg.color_order}"
    return f"{cfg.to_dict().get('library')} {'x'.join(map(str, cfg.input_shape[1:]))}px"


class FaceFrames(torch.utils.data.Dataset):
    """Item i: the image `paths[i]` preprocessed for each config, or zeros and the reason it cannot be used.

    `skip_reasons[i]` (when not None) marks a row as missing without reading anything (no image file, no face).
    """

    def __init__(
        self,
        paths: Sequence[str],
        configs: Sequence[PreprocessConfig],
        skip_reasons: Sequence[str | None] | None = None,
        min_size: int = DEFAULT_MIN_IMAGE_SIZE,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.paths = list(paths)
        self.configs = list(configs)  # plain data, cheap to send to worker processes
        self.skip_reasons = list(skip_reasons) if skip_reasons is not None else [None] * len(self.paths)
        self.min_size = min_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        problem, converted, pixels = self.skip_reasons[index], None, None
        if problem is None:
            try:
                loaded = read_face_image(self.paths[index], self.min_size, self.max_pixels)
                pixels, converted = loaded.pixels, loaded.converted_from
            except ImageProblem as error:
                problem = str(error)
        inputs = []
        for cfg in self.configs:
            if pixels is None:
                inputs.append(torch.zeros(cfg.input_shape))
            else:
                inputs.append(preprocess_images([pixels], cfg, f"preprocess[{_describe(cfg)}]")[0])
        return {
            "index": index,
            "ok": problem is None,
            "problem": problem or "",
            "converted_from": converted or "",
            "inputs": inputs,
        }
