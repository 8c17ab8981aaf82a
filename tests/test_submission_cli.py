"""`abaw-hf submit` end to end: saved models (an ensemble) + a saved feature dataset + MTL.txt -> a valid file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from abaw_hf.cli import main as cli
from abaw_hf.data.synthetic import make_synthetic_dataset
from abaw_hf.evaluation import predict_dataset
from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel
from abaw_hf.postprocess import POSTPROCESSING_FILE
from abaw_hf.submission import SubmissionError, check_submission, read_test_list, submission_text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("submit")
    test_split = make_synthetic_dataset(num_videos=5, frames_per_video=48)["validation"]
    test_split.save_to_disk(str(root / "features"))
    folders = []
    for seed, thresholds in ((1, [0.4] * 12), (2, [0.6] * 12)):
        torch.manual_seed(seed)
        config = AbawFusionConfig(feature_dims={"poster2": 768, "fau": 17}, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, mlp_ratio=2.0, max_window=64, au_thresholds=thresholds)
        AbawFusionModel(config).save_pretrained(root / f"model-{seed}")
        folders.append(root / f"model-{seed}")
    # the test list: every 3rd frame, videos in reverse order (the file's order, not the dataset's, rules)
    video = np.asarray(test_split["video"])
    frame = np.asarray(test_split["frame"])
    listed = [f"{v}/{f:05d}.jpg," for name in sorted(set(video.tolist()), reverse=True)
              for v, f in zip(video[video == name][::3], frame[video == name][::3])]
    (root / "MTL.txt").write_text("image,valence,arousal,expression,aus\n" + "\n".join(listed) + "\n")
    return root, test_split, folders


def test_submit_ensemble_writes_a_checked_file_from_tuned_settings(workspace):
    root, test_split, folders = workspace
    (folders[0] / POSTPROCESSING_FILE).write_text(json.dumps({"smoothing_sigma": 2.0, "max_gap": 8}))
    output = root / "predictions.txt"
    assert cli(["submit", "--model", *map(str, folders), "--data", str(root / "features"),
                "--test-list", str(root / "MTL.txt"), "-o", str(output), "--window", "8"]) == 0
    test_list = read_test_list(root / "MTL.txt")
    assert check_submission(output, test_list) == len(test_list) > 0
    assert output.read_text().splitlines()[1].startswith(test_list.images[0] + ",")

    from transformers import AutoModel

    models = [AutoModel.from_pretrained(str(folder)) for folder in folders]
    predictions = predict_dataset(models, test_split, window=8)
    expected = submission_text(test_list, predictions, np.asarray(test_split["video"]), np.asarray(test_split["frame"]),
                               au_thresholds=[0.5] * 12, smoothing_sigma=2.0, max_gap=8)  # mean of 0.4 and 0.6
    assert output.read_text() == expected
    unsmoothed = submission_text(test_list, predictions, np.asarray(test_split["video"]),
                                 np.asarray(test_split["frame"]), au_thresholds=[0.5] * 12)
    assert expected != unsmoothed  # the tuned width really was applied
    assert cli(["submit", "--check", str(output), "--test-list", str(root / "MTL.txt")]) == 0


def test_submit_refuses_listed_frames_without_features(workspace, capsys):
    root, _, folders = workspace
    bad_list = root / "MTL_extra.txt"
    bad_list.write_text((root / "MTL.txt").read_text() + "nosuchvideo/00001.jpg,\n")
    assert cli(["submit", "--model", str(folders[0]), "--data", str(root / "features"), "--test-list", str(bad_list),
                "-o", str(root / "never.txt")]) == 2
    assert re.search(r"1 listed frame\(s\) have no features.*nosuchvideo/00001\.jpg", capsys.readouterr().err)
    assert not (root / "never.txt").exists()
    with pytest.raises(SubmissionError, match="nosuchvideo"):  # --debug keeps the traceback
        cli(["submit", "--model", str(folders[0]), "--data", str(root / "features"), "--test-list", str(bad_list),
             "-o", str(root / "never.txt"), "--debug"])
    assert cli(["submit", "--test-list", str(bad_list)]) == 2
    assert "--model, --data, --output required" in capsys.readouterr().err
