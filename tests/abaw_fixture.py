"""A small ABAW MTL challenge folder made from real face images, for end-to-end workflow tests.

    from abaw_fixture import build_abaw_folder          # in tests/ (pytest puts tests/ on sys.path)
    fixture = build_abaw_folder(tmp_path)               # cropped_aligned/, the two annotation files, MTL.txt, checkpoints

Faces come from the repository's own example media (the astronaut clip and photo, as in ``abaw_hf/space/examples``): each
frame is detected and aligned to 112 px with ``abaw_hf.faces``, exactly like ABAW's ``cropped_aligned`` crops.
Annotation files and the test list follow the challenge's formats (``../shared/design/FACTS.md``): frame gaps,
images without a label row, frames without an image, missing labels (VA −5, expression −1, one AU column −1 at a
time), an ``_left``/``_right`` video pair, a grayscale video, a video that does not start at frame 1.
Extractor checkpoints are the package's own extractors with random weights, saved in the official file layout
(``{"state_dict": {"module.<key>": tensor}}``, from DataParallel), so ``--extractor resnet18=FILE`` loads for real.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from abaw_hf.space import EXAMPLES_DIR as EXAMPLES  # the package's example media

REPO = Path(__file__).resolve().parents[1]  # the workflow test runs the repository's scripts/ and configs/
ANNOTATION_HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
TEST_LIST_HEADER = "image,valence,arousal,expression,aus"

# official checkpoint file names as the README's workflow writes them -> (extractor, variant)
CHECKPOINTS = {
    "resnet18_msceleb.pth": ("resnet18", "msceleb"),
    "poster2_affectnet8.pth": ("poster2", "8cls"),
}


@dataclass(frozen=True)
class VideoSpec:
    """One ABAW video folder: where its faces come from and which frames have an image / a label row."""

    name: str
    split: str  # train, validation or test
    source: str  # "clip" (astronaut_clip.mp4 frames) or "photo" (the astronaut photo, transformed per frame)
    frames: tuple[int, ...]  # frame numbers that have an aligned image
    unlabelled: tuple[int, ...] = ()  # images present but without a row in the annotation file (ABAW has these)
    transform: str = "shift"  # photo: shift, rotate, brightness, mirror; clip: forward, reverse
    grayscale: bool = False  # saved as 8-bit grayscale JPEGs (the extractor must convert them)
    missing: dict[str, tuple[int, ...]] = field(default_factory=dict)  # "va" / "expression" / "AU10" -> frames


def _span(first: int, last: int, *, skip: Iterable[int] = ()) -> tuple[int, ...]:
    skipped = set(skip)
    return tuple(f for f in range(first, last + 1) if f not in skipped)


VIDEOS = (
    # train: 27 labelled rows + 32 = 59
    VideoSpec("clip01", "train", "clip", _span(1, 30), unlabelled=(9, 10, 11), transform="forward",
              missing={"expression": _span(20, 24), "AU4": (2, 3, 4)}),
    VideoSpec("video12_left", "train", "photo", _span(1, 36, skip=range(15, 19)), transform="shift",
              missing={"va": _span(30, 33), "AU10": _span(5, 12), "AU25": (1,)}),
    # validation: 24 + 24 = 48
    VideoSpec("video12_right", "validation", "photo", _span(1, 24), transform="mirror",
              missing={"expression": (3, 4, 5), "AU15": (10,)}),
    VideoSpec("video7", "validation", "photo", _span(101, 124), transform="rotate", missing={"va": (120,)}),
    # test: 16 + 16 = 32 listed frames
    VideoSpec("video30", "test", "photo", _span(1, 16), transform="brightness", grayscale=True),
    VideoSpec("clip02", "test", "clip", _span(1, 19, skip=(9, 10, 11)), transform="reverse"),
)

AU_NAMES = ANNOTATION_HEADER.split(",")[4:]


@dataclass
class AbawFolder:
    root: Path
    videos: tuple[VideoSpec, ...]
    annotations: dict[str, Path]  # train / validation -> annotation file
    test_list: Path
    checkpoints: dict[str, Path]
    images: dict[str, list[int]]  # video -> frames that have an aligned image

    def rows(self, split: str) -> list[str]:
        """The image names of a split in file order (annotation rows, or MTL.txt lines for test)."""
        path = self.test_list if split == "test" else self.annotations[split]
        return [line.split(",", 1)[0] for line in path.read_text().splitlines()[1:] if line]


# --- faces ---------------------------------------------------------------------------------------------------


def _photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "astronaut.jpg").convert("RGB"))


def _photo_variant(photo: np.ndarray, transform: str, step: int) -> np.ndarray:
    """The photo as frame ``step`` of a short 'video': small moves of head and camera, light changes."""
    height, width = photo.shape[:2]
    phase = step / 6.0
    angle, dx, dy, gain = 0.0, 0.0, 0.0, 1.0
    if transform == "shift":
        dx, dy = 18 * np.sin(phase), 12 * np.cos(0.7 * phase)
    elif transform == "rotate":
        angle, dx = 8 * np.sin(phase), 6 * np.cos(phase)
    elif transform == "brightness":
        gain, dx = 0.55 + 0.5 * (0.5 + 0.5 * np.sin(phase)), 10 * np.sin(phase)
    elif transform == "mirror":
        photo = photo[:, ::-1]
        angle, gain = 4 * np.cos(phase), 0.8 + 0.1 * np.sin(phase)
    else:
        raise ValueError(f"unknown photo transform {transform!r}")
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    moved = cv2.warpAffine(np.ascontiguousarray(photo), matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return np.clip(moved.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _clip_frames() -> list[np.ndarray]:
    from abaw_hf.faces import iter_video_frames

    return [frame.image for frame in iter_video_frames(EXAMPLES / "astronaut_clip.mp4")]


def _source_images(spec: VideoSpec, clip: list[np.ndarray], photo: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    for step, frame in enumerate(spec.frames):
        if spec.source == "photo":
            yield frame, _photo_variant(photo, spec.transform, step)
        else:
            order = clip if spec.transform == "forward" else clip[::-1]
            image = order[step % len(order)]
            yield frame, image if spec.transform == "forward" else np.clip(image * 0.7, 0, 255).astype(np.uint8)


def aligned_faces(spec: VideoSpec, detector, clip: list[np.ndarray], photo: np.ndarray) -> dict[int, np.ndarray]:
    """Frame -> 112-px aligned crop, found by the tracker like a real ABAW video. A frame without a face gets no
    image (the clip's last frames turn away), as in ABAW, so it has no label row and is not in MTL.txt either."""
    from abaw_hf.faces import MultiFaceTracker

    tracker = MultiFaceTracker(detector, size=112, faces="largest", search_scale=2.5)
    crops = {}
    for frame, image in _source_images(spec, clip, photo):
        tracked = tracker.update(image, index=frame)
        if not tracked.missing:
            crops[frame] = tracked.faces[0].aligned
    return crops


# --- labels --------------------------------------------------------------------------------------------------


def _labels(spec: VideoSpec, frame: int, offset: int) -> tuple[str, str, str, list[str]]:
    """Smoothly varying VA, expression episodes through all 8 classes, AUs that follow the expression."""
    t = frame + 7 * offset
    valence = 0.7 * np.sin(0.21 * t + offset)
    arousal = 0.1 + 0.5 * np.cos(0.13 * t + 2 * offset)
    expression = (t // 4 + offset) % 8
    aus = [int((expression + index) % 3 == 0 or (t + index) % 11 == 0) for index in range(12)]
    va = ("-5", "-5") if frame in spec.missing.get("va", ()) else (f"{valence:.3f}", f"{arousal:.3f}")
    expr = "-1" if frame in spec.missing.get("expression", ()) else str(expression)
    au_cells = ["-1" if frame in spec.missing.get(name, ()) else str(value) for name, value in zip(AU_NAMES, aus)]
    return va[0], va[1], expr, au_cells


def annotation_lines(specs: Iterable[VideoSpec], images: dict[str, list[int]]) -> list[str]:
    """The annotation file of these videos; ``images`` (video -> frames with an aligned image) decides the rows."""
    lines = [ANNOTATION_HEADER]
    for spec in specs:
        offset = sum(map(ord, spec.name)) % 13  # each video its own label sequence
        for frame in images[spec.name]:
            if frame in spec.unlabelled:
                continue
            valence, arousal, expression, aus = _labels(spec, frame, offset)
            lines.append(",".join([f"{spec.name}/{frame:05d}.jpg", valence, arousal, expression, *aus]))
    return lines


# --- checkpoints ---------------------------------------------------------------------------------------------


def write_official_checkpoint(path: Path, name: str, variant: str | None, seed: int = 0) -> Path:
    """The package's extractor with random weights, saved the way the official repositories saved theirs."""
    import warnings

    from abaw_hf.extractors import create_extractor

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no checkpoint: random weights" is the point here
        extractor = create_extractor(name, variant)
    state = {f"module.{key}": value.contiguous() for key, value in extractor.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 5}, path)
    return path


# --- the folder ----------------------------------------------------------------------------------------------


def build_abaw_folder(root: Path, videos: tuple[VideoSpec, ...] = VIDEOS, checkpoints: Iterable[str] = CHECKPOINTS) -> AbawFolder:
    """Write cropped_aligned/, training_set_annotations.txt, validation_set_annotations.txt, MTL.txt and the
    checkpoint files into ``root``."""
    from abaw_hf.faces import FaceDetector

    root = Path(root)
    clip, photo = _clip_frames(), _photo()
    images: dict[str, list[int]] = {}
    with FaceDetector() as detector:
        for spec in videos:
            folder = root / "cropped_aligned" / spec.name
            folder.mkdir(parents=True, exist_ok=True)
            crops = aligned_faces(spec, detector, clip, photo)
            if len(crops) < len(spec.frames) // 2:
                raise RuntimeError(f"fixture: faces found in only {len(crops)} of {len(spec.frames)} frames of {spec.name}")
            for frame, crop in crops.items():
                image = Image.fromarray(crop).convert("L") if spec.grayscale else Image.fromarray(crop)
                image.save(folder / f"{frame:05d}.jpg", quality=90)
            images[spec.name] = sorted(crops)
    annotations = {}
    for split, file_name in (("train", "training_set_annotations.txt"), ("validation", "validation_set_annotations.txt")):
        annotations[split] = root / file_name
        lines = annotation_lines([s for s in videos if s.split == split], images)
        annotations[split].write_text("\n".join(lines) + "\n")
    test_list = root / "MTL.txt"
    test_rows = [f"{s.name}/{frame:05d}.jpg," for s in videos if s.split == "test" for frame in images[s.name]]
    test_list.write_text("\n".join([TEST_LIST_HEADER, *test_rows]) + "\n")
    written = {}
    for seed, file_name in enumerate(checkpoints):
        name, variant = CHECKPOINTS[file_name]
        written[file_name] = write_official_checkpoint(root / file_name, name, variant, seed)
    return AbawFolder(root, tuple(videos), annotations, test_list, written, images)
