"""Training with Accelerate: config parsing, AU weights, learning on synthetic data, exact resume, DDP, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from abaw_hf.errors import UserError
from abaw_hf.training import (
    TrainConfig,
    au_loss_weights_from_labels,
    fold_of_videos,
    train,
)
from abaw_hf.cli.train import parse_train_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"


def tiny_run(tmp_path: Path, **overrides) -> TrainConfig:
    params = dict(
        dataset="synthetic", synthetic_size="tiny", features=["resnet18", "fau"], window=8, train_stride=8,
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2.0, dropout=0.1, epochs=2,
        batch_size=8, eval_batch_size=16, learning_rate=1e-3, output_dir=str(tmp_path / "run"), progress=False,
        plot=False, feature_noise_prob=0.5,
    )
    params.update(overrides)
    return TrainConfig(**params)


# ----- configuration --------------------------------------------------------------------------------------------


def test_yaml_config_with_overrides_and_unknown_keys(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump({"fusion": "tokens", "epochs": 3, "features": ["resnet18", "fau"]}))
    config = parse_train_config(["--config", str(config_file), "--epochs", "5", "--learning_rate", "0.01"])
    assert (config.fusion, config.epochs, config.learning_rate, config.features) == ("tokens", 5, 0.01, ["resnet18", "fau"])
    config_file.write_text(yaml.safe_dump({"fusion": "concat", "epochz": 3}))
    with pytest.raises(ValueError, match="unknown key.*epochz"):
        parse_train_config(["--config", str(config_file)])
    with pytest.raises(ValueError, match="not-a-flag"):
        parse_train_config(["--not-a-flag", "1"])
    with pytest.raises(ValueError, match="fusion"):
        TrainConfig(fusion="sum")


@pytest.mark.parametrize("name", ["default.yaml", "abaw7_paper.yaml"])
def test_shipped_configs_parse_and_name_their_fusion(name):
    path = ROOT / "configs" / name
    assert "fusion" in yaml.safe_load(path.read_text())
    config = parse_train_config(["--config", str(path)])
    assert config.fusion in ("concat", "tokens")


def test_paper_config_matches_released_hyperparameters():
    config = parse_train_config(["--config", str(ROOT / "configs" / "abaw7_paper.yaml")])
    assert config.features == ["resnet18", "poster2", "fau"]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.mlp_ratio) == (384, 4, 4, 4.0)
    assert (config.dropout, config.learning_rate, config.lr_gamma, config.epochs, config.batch_size, config.seed) == (
        0.5, 1e-4, 0.9, 50, 512, 32
    )


def test_au_weights_inverse_positive_rate_mean_one():
    aus = np.full((100, 12), 0, dtype=np.int8)
    aus[:50, 0] = 1  # rate 0.5
    aus[:10, 1] = 1  # rate 0.1
    aus[:, 2] = -1  # never labelled -> weight of the rarest observed rate
    aus[:25, 3:] = 1  # rate 0.25
    weights = np.array(au_loss_weights_from_labels(aus))
    assert weights.mean() == pytest.approx(1.0, abs=1e-5)
    assert weights[1] / weights[0] == pytest.approx(5.0, rel=1e-4)
    assert weights[3] / weights[0] == pytest.approx(2.0, rel=1e-4)
    assert weights[2] == pytest.approx(weights[1], rel=1e-4)


def test_folds_are_video_disjoint_and_balanced():
    videos = [f"v{i}" for i in range(10)] * 3
    assignment = fold_of_videos(videos, 5)
    assert sorted(assignment) == sorted(set(videos))
    assert np.bincount(list(assignment.values())).tolist() == [2, 2, 2, 2, 2]


# ----- training ------------------------------------------------------------------------------------------------


def test_training_learns_most_of_the_oracle(tmp_path):
    from abaw_hf.data.synthetic import make_synthetic_dataset, synthetic_oracle_score
    from abaw_hf.training import SYNTHETIC_PRESETS

    # the easy generator: a quick learnable signal (the calibrated default is as hard as s-Aff-Wild2)
    config = tiny_run(tmp_path, synthetic_size="easy", features=["resnet18", "poster2", "poster", "eac", "fau"],
                      hidden_size=32, window=16, epochs=4, batch_size=32, learning_rate=2e-3, feature_noise_prob=0.0,
                      plot=True)
    result = train(config)
    easy = make_synthetic_dataset(**SYNTHETIC_PRESETS["easy"])
    oracle = synthetic_oracle_score(easy["validation"])["p_mtl"]
    best = result["best"]["p_mtl"]
    assert best >= 0.8 * oracle, (best, oracle)
    run = Path(config.output_dir)
    assert (run / "model.safetensors").is_file() and (run / "config.json").is_file()
    assert (run / "training_curves.png").stat().st_size > 1000
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
    saved = json.loads((run / "config.json").read_text())
    assert saved["au_loss_weights"] != [1.0] * 12 and abs(np.mean(saved["au_loss_weights"]) - 1) < 1e-4
    # abaw-hf evaluate on the saved model reproduces the best epoch's validation score
    out = tmp_path / "eval.json"
    easy.save_to_disk(str(tmp_path / "easy"))
    subprocess.run(
        [sys.executable, "-m", "abaw_hf.cli", "evaluate", "--model", str(run), "--data", str(tmp_path / "easy"), "--output", str(out)],
        check=True, capture_output=True, text=True,
    )
    assert json.loads(out.read_text())["p_mtl"] == pytest.approx(best, abs=1e-4)


def test_resume_mid_epoch_equals_uninterrupted_run(tmp_path):
    full = train(tiny_run(tmp_path / "full"))
    interrupted = tiny_run(tmp_path / "resumed", max_steps=5)  # epoch 1 has more than 5 steps
    stop = train(interrupted)
    assert stop["stopped_at_step"] == 5
    resumed = train(tiny_run(tmp_path / "resumed", resume="latest"))
    a = load_file(Path(full["output_dir"]) / "model.safetensors")
    b = load_file(Path(resumed["output_dir"]) / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)
    assert resumed["best"]["p_mtl"] == pytest.approx(full["best"]["p_mtl"], abs=1e-5)
    assert [r["train_loss"] for r in resumed["history"]] == pytest.approx([r["train_loss"] for r in full["history"]], abs=1e-5)


def test_two_process_ddp_keeps_parameters_identical(tmp_path, free_port):
    run = tmp_path / "ddp"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--main_process_port", str(free_port()), str(TRAIN_SCRIPT),
        "--dataset", "synthetic", "--synthetic_size", "tiny", "--features", "resnet18", "fau", "--window", "8",
        "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--epochs", "1",
        "--batch_size", "8", "--output_dir", str(run), "--no_progress", "--no_plot",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["num_processes"] == 2
    assert len(summary["parameter_checksums"]) == 2
    assert summary["parameter_checksums"][0] == summary["parameter_checksums"][1]
    assert summary["eval_rows"] == summary["eval_split_rows"]


# ----- bad input -----------------------------------------------------------------------------------------------


def test_missing_feature_columns_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"lacks feature column\(s\) \['openface'\]"):
        train(tiny_run(tmp_path, features=["resnet18", "openface"]))


def test_label_less_validation_split_is_rejected_before_training(tmp_path):
    from abaw_hf.data.synthetic import make_synthetic_dataset
    from abaw_hf.training import SYNTHETIC_PRESETS

    data = make_synthetic_dataset(**SYNTHETIC_PRESETS["tiny"])
    unlabelled = data["validation"].map(
        lambda row: {"valence": -5.0, "arousal": -5.0, "expression": -1, "aus": [-1] * 12}, features=data["validation"].features
    )
    data["validation"] = unlabelled
    data.save_to_disk(str(tmp_path / "data"))
    with pytest.raises(ValueError, match="has no labels"):
        train(tiny_run(tmp_path, dataset=str(tmp_path / "data")))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_nan_loss_stops_naming_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    from abaw_hf import AbawFusionModel

    first = train(tiny_run(tmp_path, epochs=1))
    checkpoint = Path(first["output_dir"]) / "checkpoints"
    before = sorted(p.name for p in checkpoint.iterdir())
    original = AbawFusionModel.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if self.training and calls["n"] == 3 and out.loss is not None:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(AbawFusionModel, "forward", poisoned)
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 2"):
        train(tiny_run(tmp_path, epochs=2, resume="latest"))
    assert sorted(p.name for p in checkpoint.iterdir()) == before


def test_resume_from_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        train(tiny_run(tmp_path, resume=str(tmp_path / "nowhere")))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not an abaw_hf training checkpoint"):
        train(tiny_run(tmp_path, resume=str(foreign)))
    stop = train(tiny_run(tmp_path, max_steps=2))
    with pytest.raises(ValueError, match="hidden_size"):
        train(tiny_run(tmp_path, hidden_size=24, resume=stop["checkpoint"]))


def test_folds_follow_the_run_folder_rules(tmp_path):
    """--folds K: every fold folder is checked before fold 0 trains; --resume latest resumes the folds that
    have a checkpoint and (re)starts those that have none; a finished fold says so."""
    import shutil

    folds = dict(folds=2, epochs=1, window=4, train_stride=16, batch_size=16)
    stopped = train(tiny_run(tmp_path, max_steps=1, **folds))
    assert [stopped[f"fold-{k}"]["stopped_at_step"] for k in (0, 1)] == [1, 1]
    run = tmp_path / "run"
    shutil.rmtree(run / "fold-1" / "checkpoints")  # fold 1 interrupted before its first checkpoint
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(UserError, match=r"fold-0 holds another training run.*--overwrite.*--resume latest"):
        train(tiny_run(tmp_path, **folds))
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    resumed = train(tiny_run(tmp_path, resume="latest", **folds))
    assert all(resumed[f"fold-{k}"]["best"] for k in (0, 1))
    again = train(tiny_run(tmp_path, resume="latest", **folds))
    assert again["fold-0"]["finished"] and again["fold-1"]["finished"]
