"""Images in: every image file or array becomes a contiguous uint8 RGB array, one way for every command.

`read_image_file` is the one image-file decoder of the package (`build`, `extract`, `predict`, the pipeline and the
Space), so a face looks the same to the extractors in training and in prediction. The policy:

- EXIF orientation is applied; files above `max_pixels` are refused from their header (decompression bombs).
- 16-bit gray (PNG/TIFF ``I;16``, and ``I`` holding 16-bit values) is scaled by 255/65535 - the 8-bit copy of
  the same photo gives the same pixels; wider integers (``I``) scale by 255/(2**32 - 1); float gray (``F``) in
  [0, 1] by 255, above that by its own peak. Values are never clipped to 255.
- Palette, CMYK, gray, 1-bit and YCbCr images are converted to RGB by PIL.
- Alpha (RGBA, LA, PA, a palette's transparency, and RGBA / gray + alpha arrays) is composited over white, as a
  viewer shows it (`flatten_alpha`, the one alpha rule).

A file that cannot be used (empty, not an image, truncated, too large, a folder, unreadable) is one
`ImageProblem` with a short reason, never a crash.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .settings import DEFAULT_MAX_IMAGE_PIXELS  # noqa: F401  (PIL's own limit, about 0.25 GB of RGB pixels)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


class ImageProblem(ValueError):
    """An image file that cannot be used; the message says why (without the path, which the caller knows)."""


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # uint8 [H, W, 3] RGB
    converted_from: str | None  # the PIL mode it was converted from, None when it was RGB already


def read_image_file(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> LoadedImage:
    """Decode an image file to uint8 RGB (EXIF orientation applied, alpha composited over white, gray, palette,
    CMYK and 16-bit converted); raises `ImageProblem` for anything unusable, including images above
    `max_pixels`, which are refused from their header before any pixel is decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageProblem("file not found") from None
    except OSError as error:
        raise ImageProblem(f"cannot read the file ({error.strerror or error})") from None
    if path.is_dir():
        raise ImageProblem("is a folder, not an image file")
    if size == 0:
        raise ImageProblem("empty file (0 bytes)")
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        # PIL refuses above twice its own limit before we see the size; a caller asking for a higher cap
        # raises PIL's (only ever upwards), and the check below still holds every image to `max_pixels`.
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below decides
            image = Image.open(path)  # reads the header only
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageProblem(_too_large(f"{width}x{height} = {width * height:,} px", max_pixels))
            image.load()  # decodes fully: a truncated file fails here (PIL's LOAD_TRUNCATED_IMAGES stays off)
            mode = image.mode
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # PIL's 'corrupt EXIF' notes: the orientation is read or not
                    image = ImageOps.exif_transpose(image)
            except Exception as error:  # noqa: BLE001 - malformed EXIF fails in many ways
                raise ImageProblem(f"unreadable EXIF metadata ({type(error).__name__}: {error})") from None
            pixels = _pil_to_rgb(image)
    except ImageProblem:
        raise
    except Image.DecompressionBombError as error:  # above twice PIL's limit: refused inside Image.open
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise ImageProblem(_too_large(f"{int(found.group(1)):,} px" if found else "too large", max_pixels)) from None
    except PermissionError:
        raise ImageProblem("permission denied") from None
    except IsADirectoryError:
        raise ImageProblem("is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageProblem("not a readable image file") from None
    except (OSError, SyntaxError, EOFError) as error:  # PIL reports broken and truncated data this way
        raise ImageProblem(f"not a readable image: corrupt or truncated data ({error})") from None
    except MemoryError:
        raise ImageProblem("out of memory while decoding") from None
    except Exception as error:  # noqa: BLE001 - one bad file must not end a long run; the reason names it
        raise ImageProblem(f"cannot decode the image ({type(error).__name__}: {error})") from None
    return LoadedImage(pixels, None if mode == "RGB" else mode)


def _too_large(size: str, max_pixels: int) -> str:
    return f"image too large ({size}, above the limit of {max_pixels:,} px; a decompression bomb?)"


def _pil_to_rgb(image) -> np.ndarray:
    """A decoded PIL image as a writable uint8 RGB array (torch.from_numpy warns on read-only arrays)."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((np.clip(values, 0, None) * (255.0 / _gray_full_scale(image.mode, values))).round()
                                .clip(0, 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    try:
        converted = image.convert("RGBA" if has_alpha else "RGB")
    except ValueError as error:
        raise ImageProblem(f"unsupported image mode {image.mode!r} ({error})") from None
    return np.array(flatten_alpha(np.asarray(converted)), dtype=np.uint8)


def _gray_full_scale(mode: str, values: np.ndarray) -> float:
    """The value that maps to white: the format's full scale, so that bit depth does not change the picture."""
    peak = float(values.max()) if values.size else 0.0
    if mode.startswith("I;16") or (mode == "I" and peak <= 65535):  # PIL reads some 16-bit files as "I"
        return 65535.0
    if mode == "I":
        return float(2**32 - 1)
    return 1.0 if peak <= 1.0 else peak  # float gray: [0, 1], else its own range


def flatten_alpha(image: np.ndarray) -> np.ndarray:
    """An RGBA (or gray + alpha) uint8 array composited over white, as a viewer shows it; others unchanged."""
    if image.ndim == 3 and image.shape[2] in (2, 4) and image.dtype == np.uint8:
        alpha = image[:, :, -1:].astype(np.float32) / 255.0
        colour = image[:, :, :-1].astype(np.float32)
        if colour.shape[2] == 1:
            colour = np.repeat(colour, 3, axis=2)
        return np.round(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return image


def as_rgb_uint8(image: np.ndarray, source: str | None = None) -> np.ndarray:
    """Return ``image`` as a contiguous ``uint8 [H, W, 3]`` RGB array.

    Grayscale (``[H, W]`` or ``[H, W, 1]``) is repeated to three channels; RGBA and gray + alpha
    (``[H, W, 2]``) are composited over white (`flatten_alpha`, as image files are); anything else is
    an error that says what was expected.
    """
    where = f" ({source})" if source else ""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy uint8 image [H, W, 3], got {type(image).__name__}{where}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image [H, W, 3] (RGB, 0..255), got dtype {image.dtype}{where}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"expected an image of shape [H, W, 3] (RGB), [H, W] (gray), [H, W, 2] (gray + alpha) or [H, W, 4] (RGBA), "
            f"got shape {tuple(image.shape)}{where}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {tuple(image.shape)}{where}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(flatten_alpha(image))
