"""Converters (authors' .npy dicts, OpenFace CSVs) and `abaw-hf build` end to end on files written here."""

from __future__ import annotations

import re

import datasets
import numpy as np
import pytest

from abaw_hf.cli import main
from abaw_hf.data import Annotations, column_array
from abaw_hf.data.converters import (
    OPENFACE_AU_COLUMNS,
    join_features,
    read_feature_dict_npy,
    read_openface_csv,
    read_openface_folder,
)

MTL_HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def save_feature_dict(path, mapping):
    np.save(path, np.array(mapping, dtype=object), allow_pickle=True)
    return path


def write_openface_csv(path, frames, success, intensities):
    """OpenFace 2.0's layout: header names after the first carry a leading space."""
    header = ["frame", "face_id", "timestamp", "confidence", "success", *OPENFACE_AU_COLUMNS, "AU01_c"]
    lines = [", ".join(header)]
    for frame, ok, row in zip(frames, success, intensities):
        cells = [str(frame), "0", f"{frame / 30:.3f}", "0.98" if ok else "0", str(int(ok))]
        lines.append(", ".join(cells + [f"{v:.2f}" for v in row] + ["1"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_npy_dict_with_mixed_frame_keys(tmp_path):
    path = save_feature_dict(
        tmp_path / "poster2.npy",
        {"116": {"00001.jpg": np.ones(4), 2: np.full(4, 2.0)}, "video45_1": {"00010": np.zeros(4)}},
    )
    table = read_feature_dict_npy(path)
    assert table.name == "poster2" and table.dim == 4
    assert sorted(zip(table.video.tolist(), table.frame.tolist())) == [("116", 1), ("116", 2), ("video45_1", 10)]
    bad = save_feature_dict(tmp_path / "bad.npy", {"116": {1: np.ones(4), 7: np.array([0, np.nan, 0, 0])}})
    with pytest.raises(ValueError, match=r"bad.npy: NaN or Inf in video '116' frame 7"):
        read_feature_dict_npy(bad)
    ragged = save_feature_dict(tmp_path / "ragged.npy", {"1": {1: np.ones(4), 2: np.ones(3)}})
    with pytest.raises(ValueError, match="frame 2 has dim 3, others have 4"):
        read_feature_dict_npy(ragged)


def test_openface_csv_leading_space_header_and_failed_frames(tmp_path):
    intensities = np.linspace(0, 5, 3 * 17).reshape(3, 17)
    path = write_openface_csv(tmp_path / "116.csv", [1, 2, 3], [1, 0, 1], intensities)
    assert (tmp_path / "116.csv").read_text().splitlines()[0].split(",")[5] == " AU01_r"
    table = read_openface_csv(path)
    assert table.name == "fau" and table.dim == 17
    assert table.video.tolist() == ["116"] * 3 and table.frame.tolist() == [1, 2, 3]
    assert table.present.tolist() == [True, False, True]
    np.testing.assert_allclose(table.vectors[0], intensities[0], atol=0.01)
    assert not table.vectors[1].any()
    broken = tmp_path / "broken" / "7.csv"
    broken.parent.mkdir()
    broken.write_text("frame, success, AU01_r\n1, 1, 0.5\n")
    with pytest.raises(ValueError, match=r"7.csv:1: not an OpenFace AU CSV, missing columns"):
        read_openface_folder(broken.parent)


def test_join_reports_both_directions_and_lists_missing(tmp_path):
    rows = Annotations.unlabelled(["116", "116", "116", "200"], [1, 2, 3, 5])
    npy = read_feature_dict_npy(
        save_feature_dict(tmp_path / "r.npy", {"116": {1: np.ones(2), 2: np.ones(2), 3: np.ones(2), 4: np.ones(2)}})
    )
    with pytest.raises(ValueError, match=r"r: 1 annotated frames have no vector \(e.g. 200/00005\)"):
        join_features(rows, [npy])
    vectors, present, report = join_features(rows, [npy], allow_missing=True)
    assert present["r"].tolist() == [True, True, True, False]
    assert report.unannotated_in_features == {"r": 1}
    assert "1 frames have a vector but no annotation row" in report.summary()
    np.testing.assert_allclose(vectors["r"][:, 0], [1, 1, 1, 0])


def test_build_cli_from_annotations_npy_and_openface(tmp_path, capsys):
    aus = ",".join(["0", "1"] * 6)
    lines = [MTL_HEADER] + [f"116/{f:05d}.jpg,0.{f},-0.{f},{f % 8},{aus}" for f in (3, 1, 2)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.txt").write_text("\n".join([MTL_HEADER, f"200/00001.jpg,0.5,0.5,4,{aus}"]) + "\n")
    vectors = {"116": {f: np.full(6, f, np.float32) for f in (1, 2, 3, 9)}, "200": {1: np.full(6, 7.0)}}
    save_feature_dict(tmp_path / "resnet18.npy", vectors)
    openface = tmp_path / "openface"
    openface.mkdir()
    write_openface_csv(openface / "116.csv", [1, 2, 3], [1, 1, 0], np.ones((3, 17)))
    write_openface_csv(openface / "200.csv", [1], [1], np.full((1, 17), 2.0))
    args = [
        "build", "--annotations", f"train={tmp_path / 'train.txt'}", "--annotations", f"validation={tmp_path / 'val.txt'}",
        "--features", f"resnet18={tmp_path / 'resnet18.npy'}", "--openface-dir", str(openface),
        "--output", str(tmp_path / "out"), "--parquet-dir", str(tmp_path / "hub"),
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train: 3 rows (VA 3, expr 3, AU 3)" in printed
    assert "train: resnet18: 2 frames have a vector but no annotation row" in printed  # 116/9 and 200/1
    built = datasets.load_from_disk(str(tmp_path / "out"))
    assert list(built) == ["train", "validation"]
    assert built["train"]["frame"] == [1, 2, 3]
    np.testing.assert_allclose(column_array(built["train"], "resnet18")[0][:, 0], [1, 2, 3])
    assert column_array(built["train"], "fau")[1].tolist() == [True, True, False]
    assert list(datasets.load_dataset(str(tmp_path / "hub"))) == ["train", "validation"]

    # an annotated frame with no feature entry, in any split, is listed before anything is built
    (tmp_path / "val.txt").write_text("\n".join([MTL_HEADER, f"200/00001.jpg,0.5,0.5,4,{aus}", f"201/00001.jpg,0,0,0,{aus}"]))
    assert main([*args[:-4], "--output", str(tmp_path / "out2")]) == 2
    assert re.search(r"(?s)\[validation\].*201/00001", capsys.readouterr().err)
    assert not (tmp_path / "out2").exists()


def test_build_cli_synthetic(tmp_path, capsys):
    assert main(["build", "--synthetic", "--scale", "0.1", "--seed", "3", "--output", str(tmp_path / "synthetic")]) == 0
    built = datasets.load_from_disk(str(tmp_path / "synthetic"))
    assert list(built) == ["train", "validation"] and len(set(built["train"]["video"])) == 4  # 0.1 x 50 videos, 1 validates
    assert "saved train:" in capsys.readouterr().out
    assert main(["build", "--synthetic", "--scale", "0.1", "--output", str(tmp_path / "synthetic")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_one_openface_reader_for_build_and_the_fau_extractor(tmp_path):
    """`build --openface-dir` and the fau extractor's openface variant read a CSV the same way: a CSV the extractor
    refuses (an intensity outside 0..5, a frame twice) is refused by build too, with the same message."""
    from abaw_hf import openface
    from abaw_hf.extractors import fau
    from abaw_hf.modeling.labels_abaw_fusion import AU_NAMES

    assert fau.read_openface_csv is openface.read_openface_csv and fau.OpenFaceError is openface.OpenFaceError
    assert not hasattr(fau, "AU_NAMES") and len(openface.OPENFACE_AU_NAMES) == 17 and len(AU_NAMES) == 12
    intensities = np.full((2, 17), 1.0)
    intensities[1, 3] = 7.0
    path = write_openface_csv(tmp_path / "9.csv", [1, 2], [1, 1], intensities)
    messages = []
    for reader in (read_openface_csv, fau.read_openface_csv):
        with pytest.raises(ValueError, match=r"9.csv, line 3: AU intensities outside 0..5") as raised:
            reader(path)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
