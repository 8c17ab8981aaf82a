"""Face detection, alignment, tracking and video decoding on a real photograph (offline)."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from abaw_hf.faces import (
    CorruptVideoError,
    EmptyVideoError,
    FaceDetector,
    MultiFaceTracker,
    NotAVideoError,
    TruncatedVideoError,
    align_face,
    alignment_matrix,
    box_iou,
    iter_video_frames,
    probe_video,
    similarity_transform,
    transform_points,
    write_video,
)

# The astronaut's face in skimage.data.astronaut() (512x512), checked by eye: forehead to chin.
ASTRONAUT_FACE_REGION = np.array([150, 40, 300, 210])


@pytest.fixture(scope="module")
def detector():
    with FaceDetector("mediapipe") as face_detector:
        yield face_detector


@pytest.fixture(scope="module")
def photo():
    return astronaut()


def _eye_tilt_degrees(landmarks5: np.ndarray) -> float:
    dx, dy = landmarks5[1] - landmarks5[0]
    return float(np.degrees(np.arctan2(dy, dx)))


def test_one_face_with_plausible_box_and_landmarks(detector, photo):
    faces = detector.detect(photo)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    rx0, ry0, rx1, ry1 = ASTRONAUT_FACE_REGION
    assert rx0 <= x0 < x1 <= rx1 and ry0 <= y0 < y1 <= ry1
    assert 60 <= x1 - x0 <= 150 and 60 <= y1 - y0 <= 170
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks5
    assert left_eye[0] < nose[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert face.landmarks.shape == (478, 3)
    assert len(face.blendshapes) == 52
    assert face.blendshapes["mouthSmileLeft"] > 0.5  # she smiles


def test_aligned_crop_has_right_size_and_level_eyes(detector, photo):
    face = detector.detect(photo)[0]
    for size in (112, 224):
        crop = align_face(photo, face.landmarks5, size=size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        moved = transform_points(face.landmarks5, alignment_matrix(face.landmarks5, size))
        assert abs(moved[0, 1] - moved[1, 1]) < 0.03 * size
    # Independent check: detect again inside the 112-px crop.
    again = detector.detect(align_face(photo, face.landmarks5))
    assert len(again) == 1
    assert abs(_eye_tilt_degrees(again[0].landmarks5)) < 3.0
    assert 40 <= again[0].landmarks5[:, 0].mean() <= 72  # centred horizontally


def test_alignment_undoes_rotation(detector, photo):
    canvas = cv2.copyMakeBorder(photo, 128, 128, 128, 128, cv2.BORDER_CONSTANT, value=0)
    center = (canvas.shape[1] / 2, canvas.shape[0] / 2)
    rotated = cv2.warpAffine(canvas, cv2.getRotationMatrix2D(center, 25, 1.0), canvas.shape[1::-1])
    face = detector.detect(rotated)[0]
    assert abs(_eye_tilt_degrees(face.landmarks5)) > 15  # the input really is tilted
    again = detector.detect(align_face(rotated, face.landmarks5))
    assert len(again) == 1 and abs(_eye_tilt_degrees(again[0].landmarks5)) < 3.0


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = np.radians(20), 1.7, np.array([12.0, -7.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = scale * points @ rotation.T + shift
    matrix = similarity_transform(points, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    with pytest.raises(ValueError, match="5 landmarks"):
        alignment_matrix(np.zeros((4, 2)))


def test_haar_backend_finds_the_same_face(detector, photo):
    with FaceDetector("haar") as haar:
        faces = haar.detect(photo)
        assert haar.provenance["model_file"] == "haarcascade_frontalface_default.xml"
    assert len(faces) == 1 and faces[0].landmarks_estimated and faces[0].score > 0
    assert box_iou(faces[0].box, detector.detect(photo)[0].box) > 0.5
    assert align_face(photo, faces[0].landmarks5).shape == (112, 112, 3)


def test_image_inputs_are_checked_and_converted(detector, photo):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    assert len(detector.detect(gray)) == 1
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert len(detector.detect(rgba)) == 1
    with pytest.raises(TypeError, match="uint8"):
        detector.detect(photo.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        detector.detect(np.zeros((4, 4, 5), np.uint8))
    gray_alpha = np.dstack([gray, np.full(gray.shape, 255, np.uint8)])  # gray + alpha: composited like RGBA
    assert len(detector.detect(gray_alpha)) == 1
    assert detector.detect(np.zeros((16, 16, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="unknown face backend"):
        FaceDetector("retinaface")


def test_provenance_names_the_bundled_model(detector):
    provenance = detector.provenance
    assert provenance["backend"] == "mediapipe" and provenance["model_file"] == "face_landmarker.task"
    assert len(provenance["sha256"]) == 64


def _head() -> np.ndarray:
    """The astronaut's head and shoulders (240x240, face about 90 px wide)."""
    return astronaut()[20:260, 110:350]


def _moving_head_frames(count: int = 12, width: int = 640, height: int = 360):
    """The photograph shifted right and shrunk (face ~110 px down to ~50 px) on a grey 640x360 canvas."""
    head = _head()
    for index in range(count):
        side = int(round(300 - 160 * index / (count - 1)))
        canvas = np.full((height, width, 3), 90, np.uint8)
        x, y = 40 + index * 30, (height - side) // 2
        canvas[y : y + side, x : x + side] = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        yield canvas


def test_video_of_the_photograph_keeps_one_tracked_face(detector, tmp_path):
    video = write_video(tmp_path / "astronaut.mp4", _moving_head_frames(), fps=10)
    info = probe_video(video)
    assert (info.width, info.height, info.frames_expected) == (640, 360, 12)
    frames = iter_video_frames(video)
    assert isinstance(frames, types.GeneratorType)  # streamed, not loaded at once
    tracker = MultiFaceTracker(detector, size=112, faces="largest", search_scale=2.5)
    results = list(tracker.track(frames))
    assert [r.index for r in results] == list(range(12))
    assert all(len(r.faces) == 1 for r in results)
    assert [r.faces[0].face_id for r in results] == [0] * 12  # one track from the first frame to the last
    assert tracker.summary.tracks_started == {0: 0} and tracker.summary.frames_with_face == 12
    centers_x = [float(r.faces[0].face.center[0]) for r in results]
    assert all(b > a for a, b in zip(centers_x, centers_x[1:]))  # follows the motion
    widths = [float(r.faces[0].face.box[2] - r.faces[0].face.box[0]) for r in results]
    assert widths[0] > 1.8 * widths[-1]  # and the shrinking
    assert all(r.faces[0].aligned.shape == (112, 112, 3) for r in results)
    # The last face is too small for a whole-frame search: the search around the track keeps it.
    last_frame = list(iter_video_frames(video))[-1].image
    assert detector.detect(last_frame) == []
    assert results[-1].faces_detected == 1
    whole_frame_only = list(MultiFaceTracker(detector, faces="largest").track(iter_video_frames(video)))
    assert whole_frame_only[-1].missing and not any(r.missing for r in whole_frame_only[:6])


def test_search_near_the_track_needs_a_detector_that_takes_a_region(detector):
    class BoxesOnly:
        def detect(self, image):
            return []

    with pytest.raises(ValueError, match="region="):
        MultiFaceTracker(BoxesOnly(), search_scale=2.5)
    with pytest.raises(ValueError, match="search_scale"):
        MultiFaceTracker(detector, search_scale=0.5)


def test_small_faces_are_found_in_tiles(detector):
    canvas = np.full((360, 640, 3), 90, np.uint8)
    canvas[100:220, 400:520] = cv2.resize(_head(), (120, 120), interpolation=cv2.INTER_AREA)  # face ~45 px
    assert detector.detect(canvas) == []
    with FaceDetector(small_faces=True) as tiled:
        faces = tiled.detect(canvas)
    assert len(faces) == 1
    assert 400 <= faces[0].box[0] < faces[0].box[2] <= 520 and 100 <= faces[0].box[1] < faces[0].box[3] <= 220


def test_tracker_follows_its_face_when_another_grows_larger(detector):
    head = _head()
    frames = []
    for index in range(6):
        canvas = np.full((360, 760, 3), 90, np.uint8)
        canvas[30:330, 20:320] = cv2.resize(head, (300, 300))  # first face: the largest at the start
        side = 230 + 25 * index  # second face: grows past the first
        canvas[(360 - side) // 2 : (360 - side) // 2 + side, 360 : 360 + side] = cv2.resize(head, (side, side))
        frames.append(canvas)
    largest_first = [detector.detect(frame) for frame in frames]
    assert all(len(faces) == 2 for faces in largest_first)
    assert largest_first[-1][0].center[0] > 360  # by the end the other face is the most prominent
    tracker = MultiFaceTracker(detector, faces="largest")
    results = list(tracker.track(frames))
    assert all(len(r.faces) == 1 and r.faces[0].face.center[0] < 320 for r in results)
    assert [r.faces[0].face_id for r in results] == [0] * 6 and all(r.faces_detected == 2 for r in results)
    assert tracker.summary.tracks_started == {0: 0}  # the other face is tracked, never reported


def test_blank_video_reports_every_frame_missing(detector, tmp_path):
    video = write_video(tmp_path / "blank.mp4", (np.full((360, 640, 3), 30, np.uint8) for _ in range(8)), fps=10)
    tracker = MultiFaceTracker(detector, faces="largest", search_scale=2.5)
    results = list(tracker.track(iter_video_frames(video)))
    assert len(results) == 8
    assert all(r.missing and r.faces == () and r.faces_detected == 0 for r in results)
    assert tracker.summary.frames_without_face == list(range(8)) and tracker.summary.frames_with_face == 0
    assert tracker.summary.frames == 8 and tracker.summary.tracks_started == {}


def test_bad_video_files_give_typed_errors(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(EmptyVideoError, match="empty.mp4"):
        next(iter_video_frames(empty))

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(NotAVideoError, match="notes.mp4"):
        next(iter_video_frames(text))

    image = tmp_path / "face.jpg"
    cv2.imwrite(str(image), astronaut()[:, :, ::-1])
    with pytest.raises(NotAVideoError, match="image or text"):
        next(iter_video_frames(image))

    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        next(iter_video_frames(tmp_path / "missing.mp4"))

    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(20)]
    mp4 = write_video(tmp_path / "ok.mp4", frames, fps=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(CorruptVideoError, match="truncated or corrupt"):
        next(iter_video_frames(cut))

    noise = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    mkv = write_video(tmp_path / "ok.mkv", noise, fps=10, codec="mpeg4")
    assert len(list(iter_video_frames(mkv))) == 20
    cut_mkv = tmp_path / "cut.mkv"
    cut_mkv.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    decoded = []
    with pytest.raises(TruncatedVideoError, match="cut.mkv") as raised:
        for frame in iter_video_frames(cut_mkv):
            decoded.append(frame.index)
    assert 0 < raised.value.frames_decoded == len(decoded) < raised.value.frames_expected == 20

    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", [np.zeros((63, 64, 3), np.uint8)])
