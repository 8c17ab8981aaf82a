"""The in-the-wild detector (our PyTorch MTCNN on the mtcnn wheel's weights, MediaPipe mesh on each face) and the
multi-face tracker, on real photos and on a video made from real faces."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from abaw_hf.faces import FaceDetector, iter_video_frames
from abaw_hf.faces.mtcnn import MtcnnDetector, bundled_mtcnn_weights
from abaw_hf.faces.multi_tracking import MultiFaceTracker, parse_face_selection
from abaw_hf.faces.wild import WildFaceDetector
from abaw_hf.safe_pickle import UnsafePickleError, load_joblib_arrays
from real_faces import (
    CAMERA_FACE, NO_FACE_PHOTOS, T1_FACES, face_hits, insightface_image, multi_face_scene, person_of,
)


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnDetector()


@pytest.fixture(scope="module", params=["mtcnn", "mtcnn+blazeface"])
def tracked_detector(request, mtcnn):
    """MTCNN alone, and the default: MTCNN fused with full-range BlazeFace (the tracking must not change)."""
    return mtcnn if request.param == "mtcnn" else WildFaceDetector(mesh=False)


@pytest.fixture(scope="module")
def t1():
    return insightface_image("t1.jpg")


@pytest.fixture(scope="module")
def scene():
    return multi_face_scene(frames=60)


def test_weights_read_without_joblib_code_equal_joblibs_own_reading():
    import joblib
    import lz4.frame

    path = bundled_mtcnn_weights()["rnet.lz4"]
    ours = load_joblib_arrays(lz4.frame.decompress(path.read_bytes()))
    theirs = joblib.load(path)
    assert len(ours) == len(theirs) == 16
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(ours, theirs))


def test_joblib_reader_refuses_other_classes_before_running_them():
    class Boom:
        def __reduce__(self):
            return (print, ("ran",))

    with pytest.raises(UnsafePickleError, match="builtins.print"):
        load_joblib_arrays(pickle.dumps([Boom()], protocol=4))
    with pytest.raises(UnsafePickleError):
        load_joblib_arrays(pickle.dumps(io.BytesIO(b"x")))


def test_mtcnn_finds_every_face_of_the_group_photo_mediapipe_finds_none_or_few(mtcnn, t1):
    faces = mtcnn.detect(t1)
    found, false = face_hits([face.box for face in faces], list(T1_FACES.values()))
    assert (found, false) == (6, 0)
    with FaceDetector("mediapipe", max_faces=10) as mediapipe:
        assert len(mediapipe.detect(t1)) < 6
    # five points inside the box, eyes above the mouth, image-left eye left of image-right eye
    for face in faces:
        x0, y0, x1, y1 = face.box
        assert ((face.landmarks5 >= [x0, y0]) & (face.landmarks5 <= [x1, y1])).all()
        assert face.landmarks5[0, 0] < face.landmarks5[1, 0]
        assert face.landmarks5[:2, 1].max() < face.landmarks5[3:, 1].min()
        assert 0.8 <= face.score <= 1.0


def test_mtcnn_turned_grayscale_small_faces_and_no_false_faces(mtcnn, t1):
    import cv2
    import skimage.data as data

    camera = mtcnn.detect(data.camera())  # gray input, three-quarter profile
    assert face_hits([face.box for face in camera], [CAMERA_FACE]) == (1, 0)
    small = cv2.resize(t1, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)  # faces of 30-40 px
    truth = [tuple(v * 0.3 for v in box) for box in T1_FACES.values()]
    found, false = face_hits([face.box for face in mtcnn.detect(small)], truth)
    assert found >= 5 and false == 0
    for name in NO_FACE_PHOTOS[:6]:
        assert mtcnn.detect(getattr(data, name)()) == [], name


def test_batches_give_the_faces_of_single_images(mtcnn, scene):
    frames = scene.frames[:3]
    batched = mtcnn.detect_batch(frames)
    for frame, faces in zip(frames, batched):
        single = mtcnn.detect(frame)
        assert len(single) == len(faces) == 3
        for a, b in zip(single, faces):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_mtcnn_on_gpu_matches_cpu(mtcnn, t1):
    on_gpu = MtcnnDetector(device="cuda").detect(t1)
    on_cpu = mtcnn.detect(t1)
    assert len(on_gpu) == len(on_cpu) == 6
    for a, b in zip(on_gpu, on_cpu):
        np.testing.assert_allclose(a.box, b.box, atol=1.0)


def test_wild_detector_adds_mediapipe_mesh_to_the_faces_mtcnn_found(t1):
    with WildFaceDetector() as detector:
        faces = detector.detect(t1)
        assert face_hits([face.box for face in faces], list(T1_FACES.values())) == (6, 0)
        with_mesh = [face for face in faces if face.landmarks is not None]
        assert len(with_mesh) >= 5
        for face in with_mesh:
            assert face.landmarks.shape == (478, 3) and len(face.blendshapes) == 52
            assert face_hits([face.box], [face.box]) == (1, 0)
        assert detector.provenance["backend"] == "mtcnn" and "landmarks" in detector.provenance


# -- tracking ------------------------------------------------------------------------------------------------

def _ids_by_person(frames, scene):
    """person -> list of (frame, face id) over the frames where the tracker reported that person's face."""
    seen: dict[str, list[tuple[int, int]]] = {}
    for frame, truth in zip(frames, scene.truth):
        for tracked in frame.faces:
            person = person_of(tracked.face.box, truth)
            assert person is not None, f"frame {frame.index}: a reported face that is nobody's"
            seen.setdefault(person, []).append((frame.index, tracked.face_id))
    return seen


def test_every_face_tracked_with_stable_ids_through_crossing_and_absence(tracked_detector, scene):
    frames = list(MultiFaceTracker(tracked_detector).track(scene.frames))
    assert [frame.index for frame in frames] == list(range(60))
    seen = _ids_by_person(frames, scene)
    ross, joey = {i for _, i in seen["ross"]}, {i for _, i in seen["joey"]}
    assert len(ross) == 1 and len(joey) == 1 and ross != joey  # one id each, through the crossing
    phoebe_before = {i for f, i in seen["phoebe"] if f < 20}
    phoebe_after = {i for f, i in seen["phoebe"] if f >= 40}
    assert len(phoebe_before) == 1 and len(phoebe_after) == 1  # may come back with a new id...
    assert not (phoebe_before | phoebe_after) & (ross | joey)  # ...but never with someone else's
    assert not any(f for f, _ in seen["phoebe"] if 20 <= f < 40)
    # one row per visible face, except while joey hides ross's face
    for frame, truth in zip(frames, scene.truth):
        hidden = 1 if 24 <= frame.index <= 35 else 0
        assert len(truth) - hidden <= len(frame.faces) <= len(truth)
        assert all(tracked.aligned.shape == (112, 112, 3) for tracked in frame.faces)


def test_single_face_video_keeps_one_id_on_every_frame(tracked_detector):
    from abaw_hf.space import EXAMPLES_DIR

    video = EXAMPLES_DIR / "astronaut_clip.mp4"
    frames = list(MultiFaceTracker(tracked_detector).track(iter_video_frames(video)))
    assert len(frames) == 30
    # the camera pans across the face, then tilts down off it from frame 27 on
    assert all(len(frame.faces) == 1 and frame.faces[0].face_id == 0 for frame in frames[:27])


def test_face_free_frames_are_kept_and_marked(mtcnn, scene):
    blank = np.full_like(scene.frames[0], 100)
    frames = [scene.frames[0], blank, blank, scene.frames[1]]
    tracker = MultiFaceTracker(mtcnn)
    result = list(tracker.track(frames))
    assert [frame.missing for frame in result] == [False, True, True, False]
    assert [len(frame.faces) for frame in result] == [3, 0, 0, 3]
    assert {t.face_id for t in result[0].faces} == {t.face_id for t in result[3].faces}  # short miss: same ids
    assert tracker.summary.frames_without_face == [1, 2]


def test_largest_and_n_faces_keep_the_chosen_faces(mtcnn, scene):
    largest = list(MultiFaceTracker(mtcnn, faces="largest").track(scene.frames[:30]))
    ids = {tracked.face_id for frame in largest for tracked in frame.faces}
    assert all(len(frame.faces) <= 1 for frame in largest) and len(ids) == 1
    two = list(MultiFaceTracker(mtcnn, faces=2).track(scene.frames[:20]))
    assert all(len(frame.faces) == 2 for frame in two)
    assert len({tracked.face_id for frame in two for tracked in frame.faces}) == 2


@pytest.mark.parametrize("value, expected", [("all", None), ("largest", 1), ("3", 3), (2, 2)])
def test_face_selection_values(value, expected):
    assert parse_face_selection(value) == expected


@pytest.mark.parametrize("value", ["0", "some", -1, 0, True, "1.5"])
def test_face_selection_refuses_nonsense(value):
    with pytest.raises(ValueError, match="faces must be"):
        parse_face_selection(value)


def test_a_face_zooming_in_fast_keeps_its_id(mtcnn):
    import cv2

    t1 = insightface_image("t1.jpg")
    x0, y0, x1, y1 = T1_FACES["ross"]
    head = t1[y0 - 40 : y1 + 30, x0 - 40 : x1 + 40]
    frames = []
    for index in range(10):  # the face grows by 10 % a frame
        side = int(round(90 * 1.1**index))
        canvas = np.full((360, 640, 3), 100, np.uint8)
        patch = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        canvas[180 - side // 2 : 180 - side // 2 + side, 320 - side // 2 : 320 - side // 2 + side] = patch
        frames.append(canvas)
    result = list(MultiFaceTracker(mtcnn).track(frames))
    assert all(len(frame.faces) == 1 for frame in result)
    assert {frame.faces[0].face_id for frame in result} == {0}
