"""Write the Space's offline examples from scikit-image's astronaut photograph (run once; the files are committed).

    python space/make_examples.py        # -> abaw_hf/space/examples/astronaut.jpg, astronaut_clip.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from abaw_hf.space import EXAMPLES_DIR  # shipped in the wheel: the Space shows them from the installed package


def astronaut_clip_frames(size: int = 320, frames: int = 30) -> list[np.ndarray]:
    """A camera pan across the photograph: the face moves right to left, then the camera tilts down off it."""
    from skimage import data

    photo = data.astronaut()  # 512x512, face around x 180-270, y 70-180
    pan = np.linspace(0, 150, frames - 8).round().astype(int)
    tilt = np.linspace(0, 192, 8).round().astype(int)
    origins = [(0, int(x)) for x in pan] + [(int(y), 150) for y in tilt]
    return [np.ascontiguousarray(photo[y : y + size, x : x + size]) for y, x in origins]


def write_examples(folder: Path = EXAMPLES_DIR) -> list[Path]:
    from skimage import data

    from abaw_hf.faces import write_video

    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(image, quality=85)
    video = write_video(folder / "astronaut_clip.mp4", astronaut_clip_frames(), fps=10)
    return [image, video]


if __name__ == "__main__":
    for path in write_examples():
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
    sys.exit(0)
