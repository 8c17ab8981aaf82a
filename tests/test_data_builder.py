"""The sharded builder: schema, nulls, bad values, resume after an interruption, extractors, the three outputs."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from abaw_hf.cli import main as cli_main
from abaw_hf.data import Annotations, FeatureError, build_from_arrays, column_array, read_metadata
from abaw_hf.data.builder import write_sharded_dataset
from abaw_hf.data.publish import push_dataset_to_hub, read_card_metadata, stage_parquet_folder


def small_rows(num_videos: int = 3, frames: int = 7) -> Annotations:
    rng = np.random.default_rng(0)
    n = num_videos * frames
    rows = Annotations.unlabelled([f"v{i // frames}" for i in range(n)][::-1], list(range(1, n + 1))[::-1])
    rows.valence = rng.uniform(-1, 1, n).astype(np.float32)
    rows.arousal = rng.uniform(-1, 1, n).astype(np.float32)
    rows.expression = rng.integers(-1, 8, n).astype(np.int8)
    rows.aus = rng.integers(-1, 2, (n, 12)).astype(np.int8)
    return rows


def test_build_from_arrays_schema_nulls_and_order(tmp_path):
    rows = small_rows()  # given in reverse order: the builder sorts
    rng = np.random.default_rng(1)
    vectors = {"resnet18": rng.standard_normal((len(rows), 8)), "fau": rng.uniform(0, 5, (len(rows), 3))}
    present = {"fau": np.arange(len(rows)) % 4 != 0}
    dataset = build_from_arrays(
        rows, vectors, tmp_path / "ds", present=present, shard_size=5, provenance={"fau": {"registry": "fau"}},
        progress=False,
    )  # fmt: skip
    assert dataset.features["resnet18"] == datasets.List(datasets.Value("float16"), length=8)
    assert dataset.features["aus"] == datasets.List(datasets.Value("int8"), length=12)
    assert list(dataset.features) == ["video", "frame", "valence", "arousal", "expression", "aus", "resnet18", "fau"]
    assert len(list((tmp_path / "ds").glob("data-*.arrow"))) == 5
    order = rows.sort_order()
    assert dataset["frame"] == rows.frame[order].tolist()
    assert dataset["video"] == sorted(dataset["video"])
    values, mask = column_array(dataset, "resnet18")
    np.testing.assert_allclose(values, vectors["resnet18"][order].astype(np.float16))
    fau_values, fau_mask = column_array(dataset, "fau")
    assert np.array_equal(fau_mask, present["fau"][order])
    assert dataset[int(np.flatnonzero(~fau_mask)[0])]["fau"] is None
    assert not fau_values[~fau_mask].any()
    np.testing.assert_allclose(dataset["valence"], rows.valence[order])
    assert dataset["aus"] == rows.aus[order].tolist()
    metadata = read_metadata(datasets.load_from_disk(str(tmp_path / "ds")))
    assert metadata["feature_dims"] == {"resnet18": 8, "fau": 3}
    assert metadata["extractors"] == {"fau": {"registry": "fau"}}


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN or Inf"), (1e6, "beyond float16's range")])
def test_bad_feature_values_name_video_and_frame(tmp_path, bad, message):
    rows = Annotations.unlabelled(["a", "a", "b"], [1, 2, 5])
    vectors = np.zeros((3, 4))
    vectors[2, 1] = bad
    with pytest.raises(FeatureError, match=rf"{message}.*video 'b' frame 5"):
        build_from_arrays(rows, {"x": vectors}, tmp_path / "out", progress=False)


def test_duplicate_rows_are_an_error(tmp_path):
    rows = Annotations.unlabelled(["a", "a"], [1, 1])
    with pytest.raises(ValueError, match="duplicate"):
        build_from_arrays(rows, {"x": np.zeros((2, 2))}, tmp_path / "out", progress=False)


def test_interrupted_build_resumes_and_skips_finished_shards(tmp_path):
    rows = small_rows(num_videos=4, frames=5)  # 20 rows -> 4 shards of 5
    vectors = np.random.default_rng(2).standard_normal((len(rows), 6))
    calls: list[int] = []

    def compute(fail_at: int | None):
        def shard(shard_rows, index):
            if fail_at is not None and len(calls) == fail_at:
                raise KeyboardInterrupt("power cut")
            calls.append(int(index[0]))
            return {"x": (vectors[index], np.ones(len(index), bool))}

        return shard

    output = tmp_path / "resume"
    with pytest.raises(KeyboardInterrupt):
        write_sharded_dataset(rows, {"x": 6}, compute(fail_at=2), output, shard_size=5, progress=False)
    assert len(calls) == 2 and len(list(output.glob("data-*.arrow"))) == 2
    assert not (output / "state.json").exists()
    # a half-written shard (the next one) must not count as finished
    (output / "data-00002-of-00004.arrow.tmp").write_bytes(b"half a shard")
    (output / "data-00003-of-00004.arrow").write_bytes(b"")  # a truncated final file is redone too
    done_before = list(calls)
    dataset = write_sharded_dataset(rows, {"x": 6}, compute(fail_at=None), output, shard_size=5, progress=False)
    assert len(calls) - len(done_before) == 2  # only shards 2 and 3 were computed again
    assert len(dataset) == 20
    np.testing.assert_allclose(column_array(dataset, "x")[0], vectors[rows.sort_order()].astype(np.float16))
    assert json.loads((output / "build_manifest.json").read_text())["complete"] is True
    # other inputs into the same folder: refused unless overwrite
    with pytest.raises(FileExistsError, match="not built from these inputs"):
        write_sharded_dataset(rows, {"x": 6}, compute(None), output, shard_size=4, progress=False)
    assert len(write_sharded_dataset(rows, {"x": 6}, compute(None), output, shard_size=4, overwrite=True, progress=False)) == 20


MTL_HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def write_images(root: Path, rows: Annotations) -> None:
    for video, frame in zip(rows.video.tolist(), rows.frame.tolist()):
        (root / video).mkdir(parents=True, exist_ok=True)
        shade = (frame * 37) % 256
        Image.fromarray(np.full((32, 32, 3), shade, np.uint8)).save(root / video / f"{frame:05d}.jpg", quality=100)


def write_mtl(path: Path, rows: Annotations) -> Path:
    lines = [f"{v}/{int(f):05d}.jpg,0.1,-0.2,{int(f) % 8},{','.join(['0'] * 12)}" for v, f in zip(rows.video, rows.frame)]
    path.write_text("\n".join([MTL_HEADER, *lines]) + "\n")
    return path


def _cli(*argv: str) -> int:
    try:
        return cli_main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code)


def test_build_with_extractors_is_the_extraction_path(tmp_path, capsys):
    """`build --extractor --images` runs `abaw-hf extract`'s per-frame extraction: the same vectors and provenance,
    an unusable file a missing vector named in extraction_report.json (the build goes on), missing images listed
    together before any work starts."""
    rows = Annotations.unlabelled(["a"] * 4 + ["b"] * 3, [1, 2, 3, 4, 10, 11, 12])
    images, annotations = tmp_path / "images", write_mtl(tmp_path / "train.txt", rows)
    write_images(images, rows)
    (images / "b" / "00011.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # one bad file
    extractor = ["--extractor", "resnet18", "--random-init"]
    code = _cli("build", "--annotations", f"train={annotations}", "--images", str(images), *extractor,
                "--batch-size", "3", "--output", str(tmp_path / "built"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "train: 1 unusable images stored as missing vectors (first: " in out and "b/00011.jpg" in out
    built = datasets.load_from_disk(str(tmp_path / "built" / "train"))
    report = json.loads((tmp_path / "built" / "train" / "extraction_report.json").read_text())
    assert [f["image"] for f in report["failed_files"]] == [str(images / "b" / "00011.jpg")]
    assert not (tmp_path / "built" / "train.work").exists()  # the work folder is gone once merged

    assert _cli("extract", "--frames", str(images), "--annotations", str(annotations), *extractor, "--runtime", "torch",
                "--batch-size", "3", "--output", str(tmp_path / "extracted"), "--no-progress") == 0
    extracted = datasets.load_from_disk(str(tmp_path / "extracted"))
    built_vectors, built_present = column_array(built, "resnet18")
    vectors, present = column_array(extracted, "resnet18")
    assert built_present.tolist() == [True] * 5 + [False, True] and np.array_equal(built_present, present)
    np.testing.assert_array_equal(built_vectors, vectors)
    assert read_metadata(built)["extractors"] == read_metadata(extracted)["extractors"]
    assert built.split == "train" and list(built["frame"]) == [1, 2, 3, 4, 10, 11, 12]

    (images / "a" / "00002.jpg").unlink()
    (images / "b" / "00012.jpg").unlink()
    capsys.readouterr()
    assert _cli("build", "--annotations", f"train={annotations}", "--images", str(images), *extractor,
                "--output", str(tmp_path / "other")) == 2
    err = capsys.readouterr().err
    assert "2 annotated frames have no image" in err and "a/00002.jpg" in err and "1 more lines" in err
    assert not (tmp_path / "other" / "train").exists()  # listed before any work started


def test_parquet_folder_card_and_push(tmp_path, recording_hub):
    rows = small_rows(num_videos=2, frames=6)
    vectors = {"poster2": np.random.default_rng(3).standard_normal((len(rows), 4))}
    present = {"poster2": np.arange(len(rows)) != 3}
    train = build_from_arrays(rows, vectors, tmp_path / "train", present=present, progress=False, split="train")
    splits = datasets.DatasetDict({"train": train, "validation": train.select(range(5))})
    folder = stage_parquet_folder(splits, tmp_path / "hub", repo_id="org/abaw-features", max_shard_rows=5)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        ".abaw_hf_output",  # the marker: a later staging may replace this folder (never uploaded)
        "README.md",
        "data/train-00000-of-00003.parquet",
        "data/train-00001-of-00003.parquet",
        "data/train-00002-of-00003.parquet",
        "data/validation-00000-of-00001.parquet",
    ]
    card = (folder / "README.md").read_text()
    assert "configs:" in card and "dataset_info:" in card and "org/abaw-features" in card
    assert read_card_metadata(folder)["feature_dims"] == {"poster2": 4}
    loaded = datasets.load_dataset(str(folder))
    assert loaded["train"].features == train.features
    assert len(loaded["train"]) == len(train) and len(loaded["validation"]) == 5
    assert loaded["train"]["frame"] == train["frame"]
    assert np.array_equal(column_array(loaded["train"], "poster2")[1], column_array(train, "poster2")[1])

    # through the one Hub seam that models and Spaces use too
    recording_hub.commit_url = "https://huggingface.co/datasets/org/abaw-features/commit/abc"
    url = push_dataset_to_hub(folder, "org/abaw-features", private=True)
    assert url.endswith("/commit/abc")
    (create, repo_id, create_kwargs), (upload, _, upload_kwargs) = recording_hub.calls
    assert (create, repo_id, create_kwargs) == ("create_repo", "org/abaw-features",
                                                {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert upload == "upload_folder" and upload_kwargs["repo_type"] == "dataset" and upload_kwargs["files"] == files[1:]  # not the marker
    with pytest.raises(FileNotFoundError, match="not a staged dataset folder"):
        push_dataset_to_hub(tmp_path / "train", "org/x")
