"""Extraction: frames folder / video -> extractors -> feature dataset; resume, 2 processes, bad inputs."""

from __future__ import annotations

import re

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from abaw_hf.cli import main as cli_main
from abaw_hf.data import read_metadata, read_mtl_annotations
from abaw_hf.data.columns import column_array
from abaw_hf.extraction import (
    REPORT_NAME,
    ImageProblem,
    MissingImagesError,
    extract_features,
    extract_video_features,
    read_face_image,
    rows_from_frames_folder,
    work_root_for,
)
from abaw_hf.extraction import runner as extraction_runner
from abaw_hf.specs import parse_extractor_spec
from abaw_hf.extractors import PreprocessConfig, create_extractor, file_sha256
from abaw_hf.faces import write_video


SIZE = 112  # resnet18 runs at 112 px here to keep the tests fast
SHARD, BATCH = 8, 4
GOOD_PER_VIDEO = 12
# File name -> what it holds; each becomes a row of video "vidB".
BAD_FILES = {"00013.jpg": "empty", "00014.jpg": "truncated", "00015.jpg": "text", "00016.jpg": "tiny"}
CONVERTED = {"00017.jpg": "L", "00018.jpg": "RGBA"}
HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def _face_crop(rng) -> np.ndarray:
    y, x = rng.integers(0, 80, 2)
    crop = astronaut()[y : y + 260, 120 + x // 4 : 120 + x // 4 + 260]
    return cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _write_bad(path: Path, kind: str, rng) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        Image.fromarray(_face_crop(rng)).save(path, quality=95)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "text":
        path.write_text("not an image\n")
    elif kind == "tiny":
        Image.fromarray(_face_crop(rng)[:6, :6]).save(path)
    elif kind == "L":
        Image.fromarray(cv2.cvtColor(_face_crop(rng), cv2.COLOR_RGB2GRAY)).save(path)
    elif kind == "RGBA":  # a PNG under a .jpg name, as scraped data sometimes has
        rgba = np.dstack([_face_crop(rng), np.full((SIZE, SIZE, 1), 200, np.uint8)])
        Image.fromarray(rgba, "RGBA").save(path, format="PNG")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """cropped_aligned-style folder (2 videos, 30 rows, 4 unusable files) and an MTL annotation file."""
    root = tmp_path_factory.mktemp("data")
    images = root / "cropped_aligned"
    rng = np.random.default_rng(0)
    lines = [HEADER]
    for video in ("vidA", "vidB"):
        (images / video).mkdir(parents=True)
        for frame in range(1, GOOD_PER_VIDEO + 1):
            Image.fromarray(_face_crop(rng)).save(images / video / f"{frame:05d}.jpg", quality=95)
        names = [f"{f:05d}.jpg" for f in range(1, GOOD_PER_VIDEO + 1)]
        if video == "vidB":
            for name, kind in {**BAD_FILES, **CONVERTED}.items():
                _write_bad(images / video / name, kind, rng)
                names.append(name)
        for name in names:
            aus = ",".join(str(v) for v in rng.integers(0, 2, 12))
            lines.append(f"{video}/{name},{rng.uniform(-1, 1):.3f},{rng.uniform(-1, 1):.3f},{rng.integers(0, 8)},{aus}")
    annotations = root / "annotations.txt"
    annotations.write_text("\n".join(lines) + "\n")
    # A random ResNet-18 in the official checkpoint format ({'state_dict': ...} saved by DataParallel).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = create_extractor("resnet18")
    checkpoint = root / "resnet18_msceleb.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    return {"images": images, "annotations": annotations, "checkpoint": checkpoint, "rows": len(lines) - 1}


def _resnet(checkpoint: Path):
    extractor = create_extractor("resnet18", checkpoint=checkpoint)
    extractor.preprocess_cfg = PreprocessConfig(input_size=SIZE)
    return extractor


def _run(frames, output: Path, extractor=None, **options):
    rows = read_mtl_annotations(frames["annotations"])
    options = {"shard_size": SHARD, "batch_size": BATCH, "num_workers": 2, "progress": False, **options}
    return extract_features(rows, frames["images"], [extractor or _resnet(frames["checkpoint"])], output, **options)


@pytest.fixture(scope="module")
def reference(frames, tmp_path_factory):
    """One uninterrupted single-process run."""
    return _run(frames, tmp_path_factory.mktemp("reference") / "features")


def _table(dataset: datasets.Dataset):
    return dataset.data.table


def test_frames_folder_to_dataset(frames, reference):
    dataset, report = reference.dataset, reference.report
    assert reference.complete and len(dataset) == frames["rows"]
    assert dataset.column_names == ["video", "frame", "valence", "arousal", "expression", "aus", "resnet18"]
    assert dataset.features["resnet18"].length == 512
    # labels come from the annotation file, rows sorted by (video, frame)
    rows = read_mtl_annotations(frames["annotations"]).sorted()
    assert dataset["video"] == rows.video.tolist() and dataset["frame"] == rows.frame.tolist()
    np.testing.assert_allclose(dataset["valence"], rows.valence)
    np.testing.assert_array_equal(np.asarray(dataset["aus"]), rows.aus)

    # unusable files: missing vectors with their reason; grayscale / RGBA converted and extracted
    vectors, present = column_array(dataset, "resnet18")
    reasons = {Path(entry["image"]).name: entry["reason"] for entry in report["failed_files"]}
    assert set(reasons) == set(BAD_FILES)
    assert reasons["00013.jpg"] == "empty file (0 bytes)"
    assert "truncated" in reasons["00014.jpg"]
    assert reasons["00015.jpg"] == "not a readable image file"
    assert "6x6 px" in reasons["00016.jpg"]
    assert {Path(e["image"]).name: e["from_mode"] for e in report["converted_files"]} == CONVERTED
    failed_rows = {(e["video"], e["frame"]) for e in report["failed_files"]}
    expected_present = [(v, f) not in failed_rows for v, f in zip(dataset["video"], dataset["frame"])]
    np.testing.assert_array_equal(present, expected_present)
    assert report["missing_vectors"] == {"resnet18": len(BAD_FILES)}
    assert np.abs(vectors[present].astype(np.float32)).sum(axis=1).min() > 0

    # features equal the extractor's own preprocessing + forward on the same file (worker path == direct path)
    extractor = _resnet(frames["checkpoint"])
    for position in (0, 5, frames["rows"] - 1):
        image = read_face_image(frames["images"] / dataset[position]["video"] / f"{dataset[position]['frame']:05d}.jpg")
        direct = extractor.extract([image.pixels])[0].numpy().astype(np.float16)
        np.testing.assert_allclose(vectors[position].astype(np.float32), direct.astype(np.float32), rtol=2e-3, atol=2e-3)

    # provenance of the extractor in the dataset metadata; the report beside it; the work folder is gone
    record = read_metadata(dataset)["extractors"]["resnet18"]
    assert record["sha256"] == file_sha256(frames["checkpoint"]) and record["preprocessing"]["input_size"] == SIZE
    output = Path(reference.report_path).parent
    assert json.loads((output / REPORT_NAME).read_text())["complete"] is True
    assert not work_root_for(output).exists()


def test_interrupted_and_resumed_equals_uninterrupted(frames, reference, tmp_path, monkeypatch):
    output = tmp_path / "features"
    num_shards = -(-frames["rows"] // SHARD)
    code = cli_main([  # `abaw-hf extract --max-shards 1` stops after its first shard
        "extract", "--frames", str(frames["images"]), "--annotations", str(frames["annotations"]),
        "--extractor", f"resnet18={frames['checkpoint']}", "--input-size", f"resnet18={SIZE}", "--output", str(output),
        "--shard-size", str(SHARD), "--batch-size", str(BATCH), "--num-workers", "1", "--max-shards", "1", "--no-progress",
    ])
    assert code == 3 and not output.exists()
    features_dir = work_root_for(output) / "features"
    assert json.loads((features_dir / REPORT_NAME).read_text())["shards"] == {"total": num_shards, "done": 1}
    # a shard being written when the run died: never taken as finished
    (features_dir / "part-00001.npz.tmp").write_bytes(b"half a shard")

    # an injected failure in the second shard of the next run
    run_batch, calls = extraction_runner._Runner.__call__, []

    def failing(self, pixels):
        calls.append(len(pixels))
        if len(calls) == SHARD // BATCH + 1:
            raise RuntimeError("injected failure")
        return run_batch(self, pixels)

    monkeypatch.setattr(extraction_runner._Runner, "__call__", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        _run(frames, output)
    assert sorted(p.name for p in features_dir.glob("part-*.npz")) == ["part-00000.npz", "part-00001.npz"]

    calls.clear()
    monkeypatch.setattr(extraction_runner._Runner, "__call__", lambda self, pixels: (calls.append(len(pixels)), run_batch(self, pixels))[1])
    resumed = _run(frames, output)
    assert resumed.complete and resumed.shards_done_now == num_shards - 2  # the finished shards were skipped
    assert sum(calls) <= frames["rows"] - 2 * SHARD
    assert _table(resumed.dataset).equals(_table(reference.dataset))
    assert resumed.report["failed_files"] == reference.report["failed_files"]

    # a third run finds the finished dataset and does nothing
    again = _run(frames, output)
    assert again.complete and again.shards_done_now == 0 and len(again.dataset) == frames["rows"]


def _cli(*args: str, launcher: list[str] | None = None, env_extra: dict | None = None):
    env = dict(os.environ, **(env_extra or {}))
    command = [*(launcher or [sys.executable, "-m", "abaw_hf.cli"]), "extract", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_two_processes_equal_one_process(frames, reference, tmp_path, free_port):
    output = tmp_path / "two"
    launcher = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--main_process_port", str(free_port()), "-m", "abaw_hf.cli",
    ]
    result = _cli(
        "--frames", str(frames["images"]), "--annotations", str(frames["annotations"]),
        "--extractor", f"resnet18={frames['checkpoint']}", "--input-size", f"resnet18={SIZE}",
        "--output", str(output), "--shard-size", str(SHARD), "--batch-size", str(BATCH), "--num-workers", "1",
        "--no-progress",
        launcher=launcher, env_extra={"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "done: 4/4 shards" in result.stdout
    report = json.loads((output / REPORT_NAME).read_text())
    assert report["processes"] == 2 and report["shards_by_process"] == {"0": 2, "1": 2}
    assert report["runtime"] == {"resnet18": "onnxruntime"}  # the CPU default; both processes share one export
    two = datasets.load_from_disk(str(output))
    one = reference.dataset
    for column in ("video", "frame", "valence", "arousal", "expression", "aus"):
        assert two[column] == one[column], column
    vectors_two, present_two = column_array(two, "resnet18")
    vectors_one, present_one = column_array(one, "resnet18")
    np.testing.assert_array_equal(present_two, present_one)
    # other thread counts may change the last float32 bits, which float16 storage can round either way
    np.testing.assert_allclose(vectors_two.astype(np.float32), vectors_one.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert read_metadata(two)["extractors"] == read_metadata(one)["extractors"]


def test_annotated_frames_without_image_are_listed_before_work(frames, tmp_path):
    annotations = tmp_path / "more.txt"
    extra = [f"vidC/{f:05d}.jpg,0.1,0.2,3,{','.join(['0'] * 12)}" for f in (1, 2)]
    annotations.write_text(frames["annotations"].read_text() + "\n".join(extra) + "\n")
    output = tmp_path / "features"
    with pytest.raises(MissingImagesError, match=r"2 annotated frames have no image(.|\n)*vidC/00001\.jpg(.|\n)*vidC/00002\.jpg"):
        extract_features(read_mtl_annotations(annotations), frames["images"], [_resnet(frames["checkpoint"])], output)
    assert not output.exists() and not work_root_for(output).exists()  # nothing started

    rows = read_mtl_annotations(annotations)
    result = extract_features(
        rows, frames["images"], [_resnet(frames["checkpoint"])], output, allow_missing_images=True,
        shard_size=64, batch_size=16, num_workers=0, progress=False,
    )
    assert [Path(p).name for p in result.report["missing_images"]] == ["00001.jpg", "00002.jpg"]
    _, present = column_array(result.dataset, "resnet18")
    assert not present[-2:].any() and len(result.dataset) == frames["rows"] + 2


def test_cli_refuses_a_missing_checkpoint_and_an_occupied_output(frames, tmp_path, capsys):
    assert parse_extractor_spec("poster2:8cls=a/b.pth") == ("poster2", "8cls", "a/b.pth")
    assert parse_extractor_spec("fau") == ("fau", None, None)
    common = ["extract", "--frames", str(frames["images"]), "--annotations", str(frames["annotations"])]
    assert cli_main([*common, "--extractor", "resnet18", "--output", str(tmp_path / "x")]) == 2
    assert re.search("has no checkpoint.*--random-init", capsys.readouterr().err)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert cli_main([*common, "--extractor", f"resnet18={frames['checkpoint']}", "--output", str(occupied)]) == 2
    assert "not a folder abaw_hf wrote" in (err := capsys.readouterr().err) and "notes.txt" in err
    assert (occupied / "notes.txt").read_text() == "mine"


def test_frames_folder_without_annotations_lists_every_frame(frames):
    rows = rows_from_frames_folder(frames["images"])
    assert len(rows) == frames["rows"] and sorted(set(rows.video.tolist())) == ["vidA", "vidB"]
    assert (rows.valence == -5).all() and (rows.expression == -1).all()  # unlabelled
    with pytest.raises(FileNotFoundError, match="no '<video>/<frame number>.png' images"):
        rows_from_frames_folder(frames["images"], suffix=".png")


@pytest.mark.parametrize(
    ("kind", "message"),
    [("empty", "empty file"), ("truncated", "truncated"), ("text", "not a readable image"), ("tiny", "smaller than")],
)
def test_read_face_image_rejects_unusable_files(tmp_path, kind, message):
    path = tmp_path / "face.jpg"
    _write_bad(path, kind, np.random.default_rng(1))
    with pytest.raises(ImageProblem, match=message):
        read_face_image(path)


@pytest.mark.parametrize("kind", ["L", "RGBA"])
def test_read_face_image_converts_gray_and_rgba(tmp_path, kind):
    path = tmp_path / "face.jpg"
    _write_bad(path, kind, np.random.default_rng(1))
    loaded = read_face_image(path)
    assert loaded.pixels.shape == (SIZE, SIZE, 3) and loaded.pixels.dtype == np.uint8
    assert loaded.converted_from == kind


# ----- video input ---------------------------------------------------------------------------------------------


def _moving_face_video(path: Path, blank: set[int], count: int = 10) -> Path:
    head = astronaut()[20:260, 110:350]
    frames = []
    for index in range(count):
        canvas = np.full((240, 320, 3), 90, np.uint8)
        if index not in blank:
            side = 180 - 6 * index
            x, y = 20 + 10 * index, (240 - side) // 2
            canvas[y : y + side, x : x + side] = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    return write_video(path, frames, fps=10)


def test_video_to_dataset_keeps_faceless_frames_as_missing(frames, tmp_path):
    video = _moving_face_video(tmp_path / "clip.mp4", blank={3, 4})
    # two extractors with different preprocessing (ImageNet-normalised vs 0..1): one input tensor each
    extractors = [_resnet(frames["checkpoint"]), create_extractor("fau")]
    result = extract_video_features(
        [video], extractors, tmp_path / "features", shard_size=4, batch_size=4, num_workers=1, progress=False,
    )
    dataset = result.dataset
    assert result.complete and dataset["video"] == ["clip"] * 10 and dataset["frame"] == list(range(1, 11))
    _, present = column_array(dataset, "resnet18")
    np.testing.assert_array_equal(present, [i not in {3, 4} for i in range(10)])
    aus, fau_present = column_array(dataset, "fau")
    assert not fau_present[[3, 4]].any() and fau_present.sum() >= 6  # MediaPipe finds the face again in most crops
    assert aus.shape == (10, 17) and (aus[fau_present] >= 0).all() and (aus[fau_present] <= 5).all()
    assert result.report["missing_vectors"]["fau"] == 10 - int(fau_present.sum())
    assert result.report["frames_without_face"] == [{"video": "clip", "frame": 4}, {"video": "clip", "frame": 5}]
    assert result.report["failed_files"] == [] and result.report["videos_decoded"][0]["frames"] == 10
    faces = read_metadata(dataset)["extractors"]["resnet18"]["faces"]
    assert faces["backend"] == "mtcnn" and faces["face_size"] == 112
    assert dataset["valence"] == [-5.0] * 10 and dataset["expression"] == [-1] * 10  # unlabelled rows


def test_bad_videos_get_a_clear_message(frames, tmp_path, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    blank = _moving_face_video(tmp_path / "blank.mp4", blank=set(range(6)), count=6)
    checkpoint = ["--extractor", f"resnet18={frames['checkpoint']}", "--input-size", f"resnet18={SIZE}"]
    for path, message in ((empty, "empty file (0 bytes)"), (text, "not a video file"), (blank, "no face found in any of its 6 frames")):
        code = cli_main(["extract", "--video", str(path), *checkpoint, "--output", str(tmp_path / f"out_{path.stem}"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and str(path) in err and message in err, err[-2000:]


def test_one_bad_video_is_a_failed_video_and_the_run_goes_on(frames, tmp_path, capsys):
    good = _moving_face_video(tmp_path / "good.mp4", blank=set(), count=4)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    blank = _moving_face_video(tmp_path / "blank.mp4", blank=set(range(4)), count=4)
    checkpoint = ["--extractor", f"resnet18={frames['checkpoint']}", "--input-size", f"resnet18={SIZE}"]
    output = tmp_path / "features"
    code = cli_main(["extract", "--video", str(text), str(good), str(blank), *checkpoint, "--output", str(output),
                     "--num-workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "2 failed videos" in captured.out
    report = json.loads((output / "extraction_report.json").read_text())
    failed = {entry["video"]: entry["reason"] for entry in report["failed_videos"]}
    assert set(failed) == {"notes", "blank"}
    assert "not a video file" in failed["notes"] and "no face found" in failed["blank"]
    dataset = datasets.load_from_disk(str(output))
    assert set(dataset["video"]) == {"good"} and len(dataset) == 4
