"""Safe by default: no code runs from a data file, names from data are not paths, broken weights never predict,
and random-weight extractors are the same network in every process."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from skimage.data import astronaut

from abaw_hf.cli import main as cli_main
from abaw_hf.data import read_mtl_annotations
from abaw_hf.data.converters import read_feature_dict_npy
from abaw_hf.data.synthetic import make_synthetic_dataset
from abaw_hf.extractors import create_extractor
from abaw_hf.extractors.checkpoints import CheckpointError, read_checkpoint
from abaw_hf.model_loading import ModelLoadError, load_fusion_model
from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel
from abaw_hf.safe_pickle import UnsafePickleError, load_npy

HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
AUS = ",".join(["0"] * 12)


class Payload:
    """Unpickling this creates a file: the side effect a hostile data file would have."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def hostile_npy(path: Path, marker: Path) -> Path:
    """An authors'-style feature file whose dict holds one object that runs code when unpickled."""
    np.save(path, np.array({"116": {1: np.ones(4, np.float32), 2: Payload(marker)}}, dtype=object), allow_pickle=True)
    return path


def test_hostile_feature_file_runs_nothing_without_the_opt_in(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = hostile_npy(tmp_path / "evil.npy", marker)
    with pytest.raises(UnsafePickleError, match=r"evil\.npy.*pathlib.*touch.*--allow-pickle"):
        read_feature_dict_npy(evil)
    (tmp_path / "train.txt").write_text(f"{HEADER}\n116/00001.jpg,0.1,0.2,3,{AUS}\n")
    code = cli_main(["build", "--annotations", f"train={tmp_path / 'train.txt'}", "--features", f"fau={evil}",
                     "--output", str(tmp_path / "out")])
    assert code == 2 and "evil.npy" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()
    # the explicit opt-in unpickles it (and so runs it): that is what the flag means
    with pytest.raises(Exception):
        read_feature_dict_npy(evil, allow_pickle=True)  # the payload is no vector, but it ran
    assert marker.exists()


def test_authors_feature_format_loads_without_a_flag(tmp_path):
    mapping = {"116": {1: np.arange(4, dtype=np.float32), "00002.jpg": np.ones(4, np.float64)},
               "video12_left": {np.int64(7): np.float32([1, 2, 3, 4])}}
    np.save(tmp_path / "f.npy", np.array(mapping, dtype=object), allow_pickle=True)
    table = read_feature_dict_npy(tmp_path / "f.npy", "resnet18")
    assert sorted(zip(table.video.tolist(), table.frame.tolist())) == [("116", 1), ("116", 2), ("video12_left", 7)]
    # a Python-2-era pickle protocol and plain arrays load too
    with open(tmp_path / "p2.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array(mapping, dtype=object), handle, protocol=2)
    assert len(read_feature_dict_npy(tmp_path / "p2.npy").frame) == 3
    np.save(tmp_path / "plain.npy", np.ones((2, 3)))
    assert load_npy(tmp_path / "plain.npy").shape == (2, 3)


def test_hostile_checkpoint_pickles_run_nothing(tmp_path):
    marker = tmp_path / "pwned"
    plain = tmp_path / "weights.pkl"
    plain.write_bytes(pickle.dumps({"conv1.weight": np.ones((2, 2), np.float32), "x": Payload(marker)}))
    with pytest.raises(CheckpointError, match=r"weights\.pkl.*pathlib.*--allow-pickle"):
        read_checkpoint(plain)
    zipped = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": Payload(marker)}, zipped)
    with pytest.raises(CheckpointError, match=r"weights\.pth.*--allow-pickle"):
        read_checkpoint(zipped)
    assert not marker.exists()
    with pytest.raises(CheckpointError):  # with the opt-in the file is unpickled (the payload ran), then refused
        read_checkpoint(plain, allow_pickle=True)
    assert marker.exists()


def test_path_like_names_from_data_are_refused_before_anything_is_written(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    for video in ("../../etc", "/abs", "a/../../b"):
        (tmp_path / "train.txt").write_text(f"{HEADER}\n{video}/00001.jpg,0.1,0.2,3,{AUS}\n")
        with pytest.raises(ValueError, match="not a plain folder name|is not '<video>"):
            read_mtl_annotations(tmp_path / "train.txt")
        code = cli_main(["extract", "--frames", str(tmp_path), "--annotations", str(tmp_path / "train.txt"),
                         "--extractor", "fau", "--output", str(tmp_path / "features"), "--split", "train"])
        assert code == 2 and "train.txt:2" in capsys.readouterr().err
    for split in (str(outside), "../outside", "a/b"):
        (tmp_path / "train.txt").write_text(f"{HEADER}\n116/00001.jpg,0.1,0.2,3,{AUS}\n")
        code = cli_main(["build", "--output", str(tmp_path / "features"), "--overwrite", "--annotations",
                         f"{split}={tmp_path / 'train.txt'}", "--features", f"fau={tmp_path / 'none.npy'}"])
        assert code == 2
    assert not (tmp_path / "features").exists() and (outside / "keep.txt").read_text() == "mine"
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    config = AbawFusionConfig(feature_dims={"fau": 17}, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              mlp_ratio=2.0, max_window=64,
                              extractors={"fau": {"name": "fau", "variant": "mediapipe", "dim": 17}})
    AbawFusionModel(config).save_pretrained(root / "good")
    weights = load_file(str(root / "good" / "model.safetensors"))
    keys = sorted(weights)
    variants = {
        "partial": {k: v for k, v in weights.items() if k not in keys[: len(keys) // 2]},
        "nan": {**weights, keys[1]: torch.full_like(weights[keys[1]], float("nan"))},
        "inf": {**weights, keys[2]: torch.full_like(weights[keys[2]], float("inf"))},
        "reshaped": {**weights, keys[0]: weights[keys[0]].reshape(-1)[:3].clone()},
    }
    for name, tensors in variants.items():
        folder = root / name
        folder.mkdir()
        for item in (root / "good").iterdir():
            if item.name != "model.safetensors":
                (folder / item.name).write_bytes(item.read_bytes())
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    data = make_synthetic_dataset(num_videos=5, frames_per_video=24)
    data.save_to_disk(str(root / "features"))
    (root / "MTL.txt").write_text("image,valence,arousal,expression,aus\n" + "".join(
        f"{v}/{f:05d}.jpg,\n" for v, f in zip(data["validation"]["video"], data["validation"]["frame"])))
    Image.fromarray(astronaut()).save(root / "photo.jpg")
    return root


@pytest.mark.parametrize("variant,words", [("partial", "missing"), ("nan", "NaN or Inf"), ("inf", "NaN or Inf"),
                                           ("reshaped", "wrong shape")])
def test_broken_weights_are_refused_by_every_entry_point(broken_models, capsys, variant, words):
    model = str(broken_models / variant)
    with pytest.raises(ModelLoadError, match=words):
        load_fusion_model(model)
    from abaw_hf.pipeline import AffectPipeline  # the Space loads through the pipeline

    with pytest.raises(ModelLoadError, match=words):
        AffectPipeline.from_pretrained(model)
    data = str(broken_models / "features")
    commands = [
        ["evaluate", "--model", model, "--data", data],
        ["tune", "--model", model, "--data", data],
        ["submit", "--model", model, "--data", data, "--split", "validation", "--test-list",
         str(broken_models / "MTL.txt"), "-o", str(broken_models / f"{variant}.txt")],
        ["predict", str(broken_models / "photo.jpg"), "--model", model, "-o", str(broken_models / f"{variant}.csv")],
    ]
    for argv in commands:
        assert cli_main(argv) == 2, argv
        assert words in capsys.readouterr().err, argv
    assert not (broken_models / f"{variant}.txt").exists() and not (broken_models / f"{variant}.csv").exists()
    assert not (broken_models / variant / "postprocessing.json").exists()
    assert load_fusion_model(str(broken_models / "good")).config.feature_names == ["fau"]


def test_non_finite_outputs_are_errors_not_decisions(broken_models):
    from abaw_hf.evaluation import predict_dataset
    from abaw_hf.data.storage import load_feature_split

    model = load_fusion_model(str(broken_models / "good"))
    with torch.no_grad():
        model.va_head.bias.fill_(float("nan")) if hasattr(model, "va_head") else next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ModelLoadError, match="NaN/Inf"):
        predict_dataset([model], load_feature_split(str(broken_models / "features"), "validation"), batch_size=8)


def test_random_init_extractors_are_the_same_in_two_processes(tmp_path):
    """Two separate `abaw-hf predict` runs of a model whose resnet18 has no weights give identical tables."""
    torch.manual_seed(3)
    provenance = {"resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512, "checkpoint": "missing.pth"}}
    config = AbawFusionConfig(feature_dims={"resnet18": 512}, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                              max_window=64, extractors=provenance)
    AbawFusionModel(config).save_pretrained(tmp_path / "model")
    Image.fromarray(astronaut()).save(tmp_path / "photo.jpg")
    script = Path(sys.executable).with_name("abaw-hf")
    tables = []
    for run in (1, 2):
        out = tmp_path / f"run{run}.csv"
        done = subprocess.run([str(script), "predict", str(tmp_path / "photo.jpg"), "--model", str(tmp_path / "model"),
                               "-o", str(out)], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "RANDOM" in done.stderr  # still loudly flagged
        tables.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert tables[0]["face_found"].all()
    # and in process, the seed does not depend on the global RNG state
    torch.manual_seed(123)
    a = create_extractor("resnet18", random_seed=7)
    torch.manual_seed(456)
    b = create_extractor("resnet18", random_seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_feature_names_in_a_config_are_not_paths(broken_models, tmp_path):
    import json
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(broken_models / "good", folder)
    config = json.loads((folder / "config.json").read_text())
    config["feature_dims"] = {"../../x": 17}
    config["feature_names"] = ["../../x"]
    config["extractors"] = {}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"plain words.*\.\./\.\./x"):
        load_fusion_model(str(folder))
