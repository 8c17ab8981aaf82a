"""Feature sets on disk: `extract --split` builds a DatasetDict root that every reader takes; splits must agree."""

from __future__ import annotations

import json
import shutil
import warnings

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from abaw_hf.cli import main as cli_main
from abaw_hf.data.storage import (
    DATASET_DICT_FILE,
    DatasetLayoutError,
    check_split_name,
    load_feature_data,
    load_feature_split,
    register_split,
)
from abaw_hf.data.synthetic import make_synthetic_dataset
from abaw_hf.extractors import create_extractor

HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def _checkpoint(path, seed: int):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = create_extractor("resnet18")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    face = astronaut()[20:280, 120:380]
    lines = {"train": [HEADER], "validation": [HEADER]}
    for split, videos in (("train", ("a", "b_left")), ("validation", ("c",))):
        for video in videos:
            (root / "frames" / video).mkdir(parents=True)
            for frame in (1, 2, 4):
                crop = np.roll(face, 7 * frame, axis=1)
                Image.fromarray(crop).resize((112, 112)).save(root / "frames" / video / f"{frame:05d}.jpg")
                lines[split].append(f"{video}/{frame:05d}.jpg,0.1,-0.2,{frame % 8},1,0,0,1,0,0,1,0,0,0,1,0")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return {"root": root, "ckpt": _checkpoint(root / "resnet18.pth", 0), "other": _checkpoint(root / "other.pth", 1)}


def _extract(inputs, output, split, checkpoint=None, size="64", annotations=None):
    return cli_main([
        "extract", "--frames", str(inputs["root"] / "frames"),
        "--annotations", str(annotations or inputs["root"] / f"{split}.txt"),
        "--extractor", f"resnet18={checkpoint or inputs['ckpt']}", "--input-size", f"resnet18={size}",
        "--num-workers", "0", "--no-progress", "--output", str(output), "--split", split,
    ])  # fmt: skip


def test_extracted_splits_are_one_feature_set(inputs, tmp_path, capsys):
    features = tmp_path / "features"
    assert _extract(inputs, features, "train") == 0
    assert _extract(inputs, features, "validation") == 0
    assert "now has splits ['train', 'validation']" in capsys.readouterr().out
    assert json.loads((features / DATASET_DICT_FILE).read_text()) == {"splits": ["train", "validation"]}
    loaded = datasets.load_from_disk(str(features))  # the plain datasets reader takes the root
    assert isinstance(loaded, datasets.DatasetDict) and list(loaded) == ["train", "validation"]
    assert loaded["train"]["video"] == ["a"] * 3 + ["b_left"] * 3 and loaded["validation"]["frame"] == [1, 2, 4]
    ours = load_feature_data(features)
    assert {split: len(ours[split]) for split in ours} == {"train": 6, "validation": 3}
    assert load_feature_split(features, "validation")["video"] == ["c"] * 3
    # a rerun of a finished split changes nothing and lists it once
    assert _extract(inputs, features, "validation") == 0
    assert json.loads((features / DATASET_DICT_FILE).read_text()) == {"splits": ["train", "validation"]}


@pytest.mark.parametrize("change", ["checkpoint", "input_size"])
def test_a_split_from_other_extractors_is_refused_before_work(inputs, tmp_path, capsys, change):
    features = tmp_path / "features"
    assert _extract(inputs, features, "train") == 0
    capsys.readouterr()
    kwargs = {"checkpoint": inputs["other"]} if change == "checkpoint" else {"size": "96"}
    assert _extract(inputs, features, "validation", **kwargs) == 2
    err = capsys.readouterr().err
    assert "'validation'" in err and "'train'" in err and ("sha256" if change == "checkpoint" else "preprocessing") in err
    assert not (features / "validation").exists() and not (features / "validation.work").exists()
    assert json.loads((features / DATASET_DICT_FILE).read_text()) == {"splits": ["train"]}


def test_reader_refuses_splits_that_disagree(tmp_path):
    data = make_synthetic_dataset(num_videos=5, frames_per_video=24)
    data["train"].save_to_disk(str(tmp_path / "features" / "train"))
    data["validation"].remove_columns(["eac"]).save_to_disk(str(tmp_path / "features" / "validation"))
    register_split(tmp_path / "features", "train")
    with pytest.raises(DatasetLayoutError, match=r"'train' and 'validation' disagree.*eac"):
        register_split(tmp_path / "features", "validation")
    (tmp_path / "features" / DATASET_DICT_FILE).write_text(json.dumps({"splits": ["train", "validation"]}))
    with pytest.raises(DatasetLayoutError, match=r"'train' and 'validation' disagree"):
        load_feature_data(tmp_path / "features")


def test_reader_layouts_and_messages(tmp_path):
    data = make_synthetic_dataset(num_videos=5, frames_per_video=24)
    # split folders without dataset_dict.json (e.g. extracted with --output features/train) still read
    for split in data:
        data[split].save_to_disk(str(tmp_path / "loose" / split))
    assert list(load_feature_data(tmp_path / "loose")) == ["train", "validation"]
    # a single saved split is that split whatever --split says
    assert len(load_feature_split(tmp_path / "loose" / "train", "validation")) == len(data["train"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="not a feature dataset"):
        load_feature_data(tmp_path / "empty")
    with pytest.raises(DatasetLayoutError, match="no such dataset folder"):
        load_feature_data(tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / DATASET_DICT_FILE).write_text(json.dumps({"splits": ["train", "../../etc"]}))
    with pytest.raises(DatasetLayoutError, match="split"):
        load_feature_data(tmp_path / "broken")
    shutil.copytree(tmp_path / "loose" / "train", tmp_path / "broken" / "train")
    (tmp_path / "broken" / DATASET_DICT_FILE).write_text(json.dumps({"splits": ["train", "validation"]}))
    with pytest.raises(DatasetLayoutError, match=r"\['validation'\].*no saved dataset"):
        load_feature_data(tmp_path / "broken")


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "..", "", "x" * 80, "tr ain"])
def test_split_names_are_plain_words(name):
    with pytest.raises(DatasetLayoutError):
        check_split_name(name)


def test_training_reads_an_extracted_feature_set(inputs, tmp_path):
    from abaw_hf.training import TrainConfig, load_training_data

    features = tmp_path / "features"
    assert _extract(inputs, features, "train") == 0 and _extract(inputs, features, "validation") == 0
    data, provenance = load_training_data(TrainConfig(dataset=str(features), features=["resnet18"]))
    assert list(data) == ["train", "validation"] and provenance["resnet18"]["name"] == "resnet18"
    assert provenance["resnet18"]["preprocessing"]["input_size"] == 64
