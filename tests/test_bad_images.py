"""One bad image file never ends a long job: extraction records it, predict names it (issue 12, item 5).

Real photographs (skimage's astronaut) next to crafted bad files: a PNG whose header declares 30000x30000
(a decompression bomb), one of 10000x10000 (PIL only warns there), a truncated JPEG, random bytes, 0 bytes,
a folder named like a frame, and CMYK / 16-bit images that are simply converted.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.data import astronaut

from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.cli import main as cli_main
from abaw_hf.data.columns import column_array
from abaw_hf.extraction import REPORT_NAME
from abaw_hf.faces.images import DEFAULT_MAX_IMAGE_PIXELS, ImageProblem, read_image_file
from abaw_hf.pipeline import UNREADABLE_NOTE

FACE = 64  # face crops are small to keep the extractor fast
SHARD = 8
LIMIT = 20_000  # --max-image-pixels of the extraction runs: the 160 px photograph is above it
HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
# frame -> what its file holds; every bad file is in the first shard (frames 1-8)
FILES = {
    1: "good", 2: "bomb", 3: "folder", 4: "truncated", 5: "random", 6: "empty", 7: "big", 8: "cmyk",
    9: "gray16", 10: "large", 11: "good", 12: "good", 13: "good", 14: "good", 15: "good", 16: "good",
}
EXPECTED_REASONS = {
    2: "image too large (900,000,000 px, above the limit of 20,000 px",
    3: "is a folder, not an image file",
    4: "not a readable image: corrupt or truncated data",
    5: "not a readable image file",
    6: "empty file (0 bytes)",
    7: "image too large (10000x10000 = 100,000,000 px, above the limit of 20,000 px",
    10: "image too large (160x160 = 25,600 px, above the limit of 20,000 px",
}
CONVERTED = {8: "CMYK", 9: "I;16"}

pytestmark = pytest.mark.filterwarnings("ignore:extractor .resnet18.*RANDOM:UserWarning")  # --random-init, on purpose


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height in its header but holds almost no data (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def face(size: int = FACE) -> Image.Image:
    return Image.fromarray(astronaut()[20:300, 110:390]).resize((size, size), Image.BILINEAR)


def write_file(path: Path, kind: str) -> None:
    if kind == "good":
        face().save(path, format="JPEG", quality=95)
    elif kind == "large":
        face(160).save(path, format="JPEG", quality=95)
    elif kind == "bomb":
        png_header_only(path, 30_000, 30_000)
    elif kind == "big":
        png_header_only(path, 10_000, 10_000)
    elif kind == "folder":
        path.mkdir()
    elif kind == "truncated":
        face().save(path, format="JPEG", quality=95)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "cmyk":
        face().convert("CMYK").save(path, format="JPEG", quality=95)
    elif kind == "gray16":  # a 16-bit PNG under a .jpg name
        gray = np.asarray(face().convert("L"), dtype=np.uint16) * 257
        Image.fromarray(gray).save(path, format="PNG")
    else:
        raise ValueError(kind)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_images")
    video = root / "frames" / "vid1"
    video.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [HEADER]
    for frame, kind in FILES.items():
        write_file(video / f"{frame:05d}.jpg", kind)
        aus = ",".join(str(v) for v in rng.integers(0, 2, 12))
        lines.append(f"vid1/{frame:05d}.jpg,{rng.uniform(-1, 1):.3f},{rng.uniform(-1, 1):.3f},{rng.integers(0, 8)},{aus}")
    annotations = root / "annotations.txt"
    annotations.write_text("\n".join(lines) + "\n")
    return {"root": root, "images": root / "frames", "video": video, "annotations": annotations}


# ----- the decoder both extraction and predict use --------------------------------------------------------------


def test_decoder_reasons_and_conversions(frames):
    video = frames["video"]
    expected = {**EXPECTED_REASONS, 2: "image too large (900,000,000 px, above the limit of 89,478,485 px",
                7: "image too large (10000x10000 = 100,000,000 px, above the limit of 89,478,485 px"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape either
        for frame, reason in expected.items():
            if frame == 10:  # 160 px is fine under the default limit
                assert read_image_file(video / f"{frame:05d}.jpg").pixels.shape == (160, 160, 3)
                continue
            with pytest.raises(ImageProblem) as caught:
                read_image_file(video / f"{frame:05d}.jpg")
            assert str(caught.value).startswith(reason)
        for frame, mode in CONVERTED.items():
            loaded = read_image_file(video / f"{frame:05d}.jpg")
            assert loaded.converted_from == mode and loaded.pixels.shape == (FACE, FACE, 3)
            assert loaded.pixels.dtype == np.uint8 and 40 < loaded.pixels.mean() < 220  # scaled, not clipped
    assert DEFAULT_MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485
    with pytest.raises(ImageProblem, match=r"image too large \(64x64 = 4,096 px, above the limit of 4,000 px"):
        read_image_file(video / "00001.jpg", max_pixels=4_000)
    with pytest.raises(ImageProblem, match="file not found"):
        read_image_file(video / "00099.jpg")


def test_decoder_reports_crashing_exif_and_unreadable_files(frames, tmp_path, monkeypatch):
    good = frames["video"] / "00001.jpg"

    def crash(image, **kwargs):
        raise TypeError("orientation tag of the wrong type")

    monkeypatch.setattr("PIL.ImageOps.exif_transpose", crash)
    with pytest.raises(ImageProblem, match="unreadable EXIF metadata .TypeError: orientation tag"):
        read_image_file(good)
    monkeypatch.undo()
    if os.geteuid() != 0:  # root reads anything: permissions cannot be tested there
        locked = tmp_path / "locked.jpg"
        locked.write_bytes(good.read_bytes())
        locked.chmod(0)
        with pytest.raises(ImageProblem, match="permission denied"):
            read_image_file(locked)


# ----- abaw-hf extract: a missing vector with its reason, exit 0, reruns --------------------------------------


def _extract(frames, output: Path, *extra: str) -> int:
    return cli_main([
        "extract", "--frames", str(frames["images"]), "--annotations", str(frames["annotations"]),
        "--extractor", "resnet18", "--random-init", "--input-size", f"resnet18={FACE}",
        "--max-image-pixels", str(LIMIT), "--shard-size", str(SHARD), "--batch-size", "4", "--num-workers", "1",
        "--output", str(output), "--split", "train", "--no-progress", *extra,
    ])


def _check_report_and_vectors(root: Path) -> dict:
    report = json.loads((root / "train" / REPORT_NAME).read_text())
    assert report["complete"] and report["shards"] == {"total": 2, "done": 2}
    reasons = {int(Path(entry["image"]).stem): entry["reason"] for entry in report["failed_files"]}
    assert set(reasons) == set(EXPECTED_REASONS)
    for frame, reason in EXPECTED_REASONS.items():
        assert reasons[frame].startswith(reason), (frame, reasons[frame])
    assert {int(Path(e["image"]).stem): e["from_mode"] for e in report["converted_files"]} == CONVERTED
    assert report["missing_images"] == [] and report["missing_vectors"] == {"resnet18": len(EXPECTED_REASONS)}

    import datasets

    dataset = datasets.load_from_disk(str(root / "train"))
    vectors, present = column_array(dataset, "resnet18")
    assert dataset["frame"] == sorted(FILES)
    np.testing.assert_array_equal(present, [frame not in EXPECTED_REASONS for frame in dataset["frame"]])
    assert np.abs(vectors[present].astype(np.float32)).sum(axis=1).min() > 0  # good and converted frames
    return report


def test_extract_records_bad_files_and_reruns(frames, tmp_path, capsys):
    # a partial run stops after the first shard, which holds every bad file; the rerun resumes from it
    output = tmp_path / "features"
    assert _extract(frames, output, "--max-shards", "1") == 3
    assert "partial: 1/2 shards" in capsys.readouterr().out
    assert _extract(frames, output) == 0
    out = capsys.readouterr().out
    assert "done: 2/2 shards, 16 rows, 7 unusable files, 0 missing images" in out and "2 converted" in out
    first = _check_report_and_vectors(output)

    # a rerun of the finished extraction (same arguments) changes nothing and exits 0
    assert _extract(frames, output) == 0
    assert "done: 2/2 shards" in capsys.readouterr().out
    assert _check_report_and_vectors(output)["failed_files"] == first["failed_files"]

    # uninterrupted, the same rows fail and the same vectors come out
    import datasets

    once = tmp_path / "once"
    assert _extract(frames, once) == 0
    capsys.readouterr()
    _check_report_and_vectors(once)
    a = column_array(datasets.load_from_disk(str(once / "train")), "resnet18")[0]
    b = column_array(datasets.load_from_disk(str(output / "train")), "resnet18")[0]
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=1e-3)


# ----- abaw-hf predict ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "run"
    provenance = {"resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512, "random_init": True}}
    config = AbawFusionConfig(
        feature_dims={"resnet18": 512}, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_window=16, extractors=provenance,
    )
    AbawFusionModel(config).save_pretrained(folder)
    return folder


def test_predict_on_a_bad_image_is_a_message_naming_it(frames, model_dir, tmp_path):
    bomb = frames["video"] / "00002.jpg"
    out = tmp_path / "x.csv"
    console_script = Path(sys.executable).with_name("abaw-hf")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False")
    done = subprocess.run([str(console_script), "predict", str(bomb), "-o", str(out), "--model", str(model_dir)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("abaw-hf predict:")]
    assert len(errors) == 1 and f"{bomb}: image too large (900,000,000 px" in errors[0]
    assert not out.exists()


def test_predict_names_a_truncated_image(frames, model_dir, tmp_path, capsys):
    truncated = frames["video"] / "00004.jpg"
    assert cli_main(["predict", str(truncated), "-o", str(tmp_path / "x.csv"), "--model", str(model_dir)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("abaw-hf predict:")]
    assert len(errors) == 1 and f"{truncated}: not a readable image: corrupt or truncated data" in errors[0]
    assert not (tmp_path / "x.csv").exists()


def test_predict_on_a_folder_marks_the_bad_image_in_the_note_column(frames, model_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(astronaut()).save(folder / "a_astronaut.jpg")
    Image.fromarray(astronaut()).convert("CMYK").save(folder / "b_cmyk.jpg")
    (folder / "c_broken.jpg").write_bytes(np.random.default_rng(1).bytes(2000))
    (folder / "d_folder.png").mkdir()
    out = tmp_path / "photos.csv"
    assert cli_main(["predict", str(folder), "-o", str(out), "--model", str(model_dir)]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 of 4 images could not be read" in err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["source"]) == ["a_astronaut.jpg", "b_cmyk.jpg", "c_broken.jpg", "d_folder.png"]
    assert list(table["face_found"]) == [True, True, False, False]
    assert list(table["note"]) == ["", "", f"{UNREADABLE_NOTE}: not a readable image file",
                                   f"{UNREADABLE_NOTE}: is a folder, not an image file"]
    assert list(table["valence"].iloc[2:]) == ["", ""]  # no prediction for them

    # nothing readable at all: an error naming the first file
    for name in ("a_astronaut.jpg", "b_cmyk.jpg"):
        (folder / name).unlink()
    assert cli_main(["predict", str(folder), "-o", str(tmp_path / "none.csv"), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "none of the 2 images could be read; first:" in err and "c_broken.jpg: not a readable image file" in err
