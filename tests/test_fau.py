"""The ``fau`` extractor: OpenFace CSVs, a (fake) OpenFace FeatureExtraction on PATH, and MediaPipe blendshapes."""

from __future__ import annotations

import os
import stat
import sys
import textwrap

import numpy as np
import pytest
import torch
from skimage.data import astronaut

from abaw_hf.extractors import create_extractor, get_extractor_class, list_extractors
from abaw_hf.extractors.fau import (
    OPENFACE_AU_NAMES,
    BLENDSHAPES_FOR_AU,
    OpenFaceError,
    blendshapes_to_aus,
    read_openface_csv,
    run_openface,
)
from abaw_hf.faces import FaceDetector, align_face, write_video

# A stand-in for OpenFace's FeatureExtraction: same arguments, same CSV format (leading spaces in
# the header, AUxx_r then AUxx_c columns). AU k of a frame = 5 * mean(frame) / 255 * (k + 1) / 17;
# an all-black frame fails (success 0, zeros), as OpenFace does where it finds no face.
FAKE_FEATURE_EXTRACTION = textwrap.dedent(
    """\
    #!{python}
    import sys, pathlib
    import numpy as np
    args = sys.argv[1:]
    value = lambda flag: args[args.index(flag) + 1]
    if "-aus" not in args:
        sys.exit("fake FeatureExtraction: -aus missing")
    if "-fdir" in args:
        import cv2
        files = sorted(p for p in pathlib.Path(value("-fdir")).iterdir() if p.suffix in (".png", ".jpg"))
        frames = [cv2.imread(str(p))[:, :, ::-1] for p in files]
    else:
        import av
        with av.open(value("-f")) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    aus = ["01","02","04","05","06","07","09","10","12","14","15","17","20","23","25","26","45"]
    header = ["frame", "face_id", "timestamp", "confidence", "success"]
    header += [f"AU{{a}}_r" for a in aus] + [f"AU{{a}}_c" for a in aus[:-1] + ["28", "45"]]
    out = pathlib.Path(value("-out_dir")) / (value("-of") + ".csv")
    with open(out, "w") as handle:
        handle.write(", ".join(header) + "\\n")
        for index, frame in enumerate(frames):
            success = int(frame.max() > 0)
            level = 5.0 * frame.mean() / 255.0
            r = [round(level * (k + 1) / 17, 2) * success for k in range(17)]
            c = [int(v > 1) for v in r] + [0]
            row = [index + 1, 0, round(index / 25, 3), 0.98 * success, success] + r + c
            handle.write(", ".join(str(v) for v in row) + "\\n")
    """
)


def expected_fake_aus(image: np.ndarray) -> np.ndarray:
    level = 5.0 * image.mean() / 255.0
    return np.array([round(level * (k + 1) / 17, 2) for k in range(17)], dtype=np.float32) * float(image.max() > 0)


@pytest.fixture()
def fake_openface(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "FeatureExtraction"
    program.write_text(FAKE_FEATURE_EXTRACTION.format(python=sys.executable))
    program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("OPENFACE_FEATURE_EXTRACTION", raising=False)
    return program


@pytest.fixture(scope="module")
def aligned_astronaut():
    photo = astronaut()
    with FaceDetector() as detector:
        return align_face(photo, detector.detect(photo)[0].landmarks5)


@pytest.fixture(scope="module")
def mediapipe_fau():
    extractor = create_extractor("fau")
    yield extractor
    extractor.close()


def _images(count: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(count)]
    images[2] = np.zeros((112, 112, 3), np.uint8)  # no face: a missing vector
    return images


# -- (a) OpenFace CSV ----------------------------------------------------------------------------
CSV_HEADER = "frame, face_id, timestamp, confidence, success, " + ", ".join(f"{a}_r" for a in OPENFACE_AU_NAMES)


def _csv_row(frame: int, success: int, values) -> str:
    return ", ".join(str(v) for v in [frame, 0, frame / 25, 0.9, success, *values])


def test_read_openface_csv_with_leading_space_headers(tmp_path):
    path = tmp_path / "video1.csv"
    rows = [_csv_row(1, 1, np.linspace(0, 5, 17)), _csv_row(2, 0, [0] * 17), _csv_row(3, 1, [1.5] * 17)]
    path.write_text("\n".join([CSV_HEADER, *rows]) + "\n")
    result = read_openface_csv(path)
    assert result.features.shape == (3, 17) and result.features.dtype == np.float32
    np.testing.assert_allclose(result.features[0], np.linspace(0, 5, 17), atol=1e-6)
    np.testing.assert_array_equal(result.present, [True, False, True])
    np.testing.assert_array_equal(result.features[1], np.zeros(17))
    np.testing.assert_array_equal(result.frames, [1, 2, 3])
    np.testing.assert_allclose(result.timestamps, [0.04, 0.08, 0.12])
    assert result.provenance == {"backend": "openface_csv", "file": "video1.csv"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("frame, success, AU01_r\n1, 1, 0.5\n", r"missing columns \['AU02_r'"),
        (CSV_HEADER + "\n" + _csv_row(1, 1, [0.5] * 16 + ["abc"]) + "\n", r"line 2: not a number"),
        (CSV_HEADER + "\n" + _csv_row(1, 1, [0.5] * 17) + "\n1, 0\n", r"line 3: 2 fields"),
        (CSV_HEADER + "\n" + _csv_row(1, 1, [0.5] * 16 + [7.0]) + "\n", r"line 2: AU intensities outside 0..5"),
        (CSV_HEADER + "\n" + _csv_row(4, 1, [0.5] * 17) + "\n" + _csv_row(4, 1, [0.5] * 17) + "\n", r"frames \[4\]"),
        ("", "empty file"),
    ],
)
def test_bad_openface_csv_names_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(OpenFaceError, match=message) as raised:
        read_openface_csv(path)
    assert "bad.csv" in str(raised.value)


# -- (b) running FeatureExtraction ---------------------------------------------------------------
def test_openface_variant_runs_feature_extraction(fake_openface):
    extractor = create_extractor("fau", variant="openface")
    images = _images()
    features, present = extractor.extract_with_mask(images)
    assert features.shape == (5, 17) and features.dtype == torch.float32
    np.testing.assert_array_equal(present.numpy(), [True, True, False, True, True])
    np.testing.assert_allclose(features.numpy(), np.stack([expected_fake_aus(image) for image in images]), atol=1e-5)
    # Batch invariance: five images in batches of 2 give the same rows.
    np.testing.assert_allclose(extractor.extract(images, batch_size=2).numpy(), features.numpy(), atol=1e-4)
    assert extractor.provenance()["backend"] == "openface"
    assert extractor.provenance()["program"] == "FeatureExtraction"


def test_run_openface_on_a_video(fake_openface, tmp_path):
    frames = [np.full((64, 64, 3), 40 * (index + 1), np.uint8) for index in range(4)]
    video = write_video(tmp_path / "clip.mp4", frames, fps=25)
    result = run_openface(video)
    np.testing.assert_array_equal(result.frames, [1, 2, 3, 4])
    assert result.present.all()
    # Lossy video coding: compare loosely; intensities grow with the frame brightness.
    assert np.all(np.diff(result.features[:, -1]) > 0)
    np.testing.assert_allclose(result.features[0], expected_fake_aus(frames[0]), atol=0.05)
    assert result.provenance["backend"] == "openface" and result.provenance["source"] == "clip.mp4"


def test_openface_missing_or_failing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("OPENFACE_FEATURE_EXTRACTION", raising=False)
    with pytest.raises(OpenFaceError, match="FeatureExtraction"):
        create_extractor("fau", variant="openface")
    failing = tmp_path / "FeatureExtraction"
    failing.write_text("#!/bin/sh\necho 'could not open camera' >&2\nexit 3\n")
    failing.chmod(0o755)
    (tmp_path / "frames").mkdir()
    with pytest.raises(OpenFaceError, match="exited with 3.*could not open camera"):
        run_openface(tmp_path / "frames")


# -- (c) MediaPipe blendshapes -------------------------------------------------------------------
def test_mediapipe_variant_measures_the_smile(mediapipe_fau, aligned_astronaut):
    features, present = mediapipe_fau.extract_with_mask([aligned_astronaut])
    assert features.shape == (1, 17) and bool(present[0])
    aus = dict(zip(OPENFACE_AU_NAMES, features[0].tolist()))
    assert aus["AU12"] > 2.5  # lip corner puller: she smiles
    assert aus["AU12"] == max(aus.values())
    assert all(0.0 <= value <= 5.0 for value in aus.values())
    assert aus["AU45"] < 1.0  # eyes open


def test_mediapipe_variant_missing_faces_and_batch_invariance(mediapipe_fau, aligned_astronaut):
    images = [aligned_astronaut, np.zeros((112, 112, 3), np.uint8), np.ascontiguousarray(aligned_astronaut[:, ::-1])]
    features, present = mediapipe_fau.extract_with_mask(images, batch_size=3)
    np.testing.assert_array_equal(present.numpy(), [True, False, True])
    assert torch.equal(features[1], torch.zeros(17))
    one_by_one = torch.cat([mediapipe_fau.extract([image]) for image in images])
    torch.testing.assert_close(one_by_one, features, atol=1e-4, rtol=0)
    # A preprocessed float batch (0..1, as the extraction DataLoader gives it) is the same input.
    pixel_values = mediapipe_fau.preprocess(images)
    assert pixel_values.shape == (3, 3, 112, 112)
    torch.testing.assert_close(mediapipe_fau(pixel_values), features, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="uint8"):
        mediapipe_fau.extract([aligned_astronaut.astype(np.float32)])


def test_blendshape_mapping_is_complete_and_documented(aligned_astronaut):
    assert list(BLENDSHAPES_FOR_AU) == list(OPENFACE_AU_NAMES) and len(OPENFACE_AU_NAMES) == 17
    with FaceDetector() as detector:
        blendshapes = detector.detect(aligned_astronaut)[0].blendshapes
    sources = {name for names, _ in BLENDSHAPES_FOR_AU.values() for name in names}
    assert sources <= set(blendshapes)
    assert all(description for _, description in BLENDSHAPES_FOR_AU.values())
    scaled = blendshapes_to_aus(dict.fromkeys(blendshapes, 1.0))
    np.testing.assert_array_equal(scaled, np.full(17, 5.0, np.float32))
    with pytest.raises(ValueError, match="jawOpen"):
        blendshapes_to_aus({k: v for k, v in blendshapes.items() if k != "jawOpen"})


def test_fau_is_registered_with_17_dims_and_no_checkpoint(mediapipe_fau):
    assert "fau" in list_extractors()
    assert get_extractor_class("fau").dim == 17
    record = mediapipe_fau.provenance()
    assert record["name"] == "fau" and record["variant"] == "mediapipe" and record["dim"] == 17
    assert record["backend"] == "mediapipe_blendshapes" and record["checkpoint"] == "face_landmarker.task"
    assert len(record["sha256"]) == 64 and record["random_init"] is False
    assert record["au_names"] == list(OPENFACE_AU_NAMES)
    with pytest.raises(ValueError, match="takes no checkpoint"):
        mediapipe_fau.load_checkpoint("resnet18_msceleb.pth")
