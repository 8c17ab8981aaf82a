"""Reading face images and turning them into model inputs, inside DataLoader worker processes.

Every image is checked on its own: a file that cannot be used (0 bytes, not an image, truncated, too small)
becomes a missing vector with a reason instead of stopping the run; grayscale, RGBA, palette and 16-bit images
are converted to RGB and noted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..extractors import Extractor, PreprocessConfig

DEFAULT_MIN_IMAGE_SIZE = 16


class ImageProblem(ValueError):
    """An image file that cannot be used; the message says why."""


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # uint8 [H, W, 3] RGB
    converted_from: str | None  # the PIL mode it was converted from, None when it was RGB already


def read_face_image(path: str | os.PathLike, min_size: int = DEFAULT_MIN_IMAGE_SIZE) -> LoadedImage:
    """Decode an image file to RGB uint8; raises ImageProblem for empty, unreadable, truncated or tiny files."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageProblem("empty file (0 bytes)")
        with Image.open(path) as image:
            image.load()  # decodes fully: a truncated JPEG fails here (PIL's LOAD_TRUNCATED_IMAGES stays off)
            mode = image.mode
            rgb = image if mode == "RGB" else _to_rgb(image)
            pixels = np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only)
    except ImageProblem:
        raise
    except FileNotFoundError as error:
        raise ImageProblem("file not found") from error
    except UnidentifiedImageError as error:
        raise ImageProblem("not a readable image file") from error
    except (OSError, SyntaxError, ValueError) as error:  # PIL reports broken and truncated data this way
        raise ImageProblem(f"corrupt or truncated image ({error})") from error
    height, width = pixels.shape[:2]
    if min(height, width) < min_size:
        raise ImageProblem(f"image is {width}x{height} px, smaller than the {min_size} px minimum")
    return LoadedImage(pixels, None if mode == "RGB" else mode)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits rather than clip.
        values = np.asarray(image, dtype=np.float64)
        peak = values.max() or 1.0
        image = Image.fromarray((values * (255.0 / peak)).round().astype(np.uint8))
    elif image.mode in ("P", "PA", "LA"):
        image = image.convert("RGBA")
    return image.convert("RGB")  # RGBA drops alpha, L repeats, CMYK/YCbCr convert


class Preprocessor(Extractor):
    """An extractor's input preprocessing without its weights, cheap to send to worker processes."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        super().__init__()
        self.preprocess_cfg = cfg
        self.name = f"preprocess[{cfg.input_size}px {cfg.color_order}]"


def preprocess_groups(extractors: Sequence[Extractor]) -> list[PreprocessConfig]:
    """The distinct preprocessing configs of `extractors`, in first-use order (one input tensor per config)."""
    configs: list[PreprocessConfig] = []
    for extractor in extractors:
        if extractor.preprocess_cfg not in configs:
            configs.append(extractor.preprocess_cfg)
    return configs


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
    ) -> None:
        self.paths = list(paths)
        self.preprocessors = [Preprocessor(cfg) for cfg in configs]
        self.skip_reasons = list(skip_reasons) if skip_reasons is not None else [None] * len(self.paths)
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        problem, converted, pixels = self.skip_reasons[index], None, None
        if problem is None:
            try:
                loaded = read_face_image(self.paths[index], self.min_size)
                pixels, converted = loaded.pixels, loaded.converted_from
            except ImageProblem as error:
                problem = str(error)
        inputs = []
        for preprocessor in self.preprocessors:
            size = preprocessor.preprocess_cfg.input_size
            if pixels is None:
                inputs.append(torch.zeros(3, size, size))
            else:
                inputs.append(preprocessor.preprocess([pixels])[0])
        return {
            "index": index,
            "ok": problem is None,
            "problem": problem or "",
            "converted_from": converted or "",
            "inputs": inputs,
        }
