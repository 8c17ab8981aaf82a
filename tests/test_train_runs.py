"""scripts/train.py as a user runs it: an occupied run folder, --overwrite, --resume latest, a finished run,
fp16 without a GPU, and bad configs or flags as one-line messages (exit 2) instead of tracebacks."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from abaw_hf.cli.train import main as train_py, parse_train_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
ENV = {key: value for key, value in os.environ.items() if key != "ABAW_HF_DEBUG"}
ENV.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False")
TINY = [
    "--dataset", "synthetic", "--synthetic_size", "tiny", "--features", "resnet18", "fau", "--window", "4",
    "--train_stride", "16", "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2",
    "--mlp_ratio", "2.0", "--epochs", "1", "--batch_size", "16", "--eval_batch_size", "64", "--no_progress", "--no_plot",
]  # 4 optimizer steps per epoch


def train(*args) -> subprocess.CompletedProcess:
    """``python scripts/train.py <tiny settings> ARGS``, as a user types it."""
    command = [sys.executable, str(TRAIN_SCRIPT), *TINY, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)


def folder_snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def assert_message(result, *names: str, status: int = 2) -> None:
    assert result.returncode == status, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for name in names:
        assert name in result.stderr, (name, result.stderr)


# ----- one run folder through its life (subprocesses) -------------------------------------------------------


def test_occupied_folder_refused_then_resumed_finished_and_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("the user's own file")
    before = folder_snapshot(run)
    foreign = train("--output_dir", run, "--max_steps", 2)  # a folder abaw_hf did not write is not a run folder
    assert_message(foreign, str(run), "notes.txt", "abaw_hf wrote")
    assert folder_snapshot(run) == before
    (run / "notes.txt").unlink()

    stopped = train("--output_dir", run, "--max_steps", 2)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    (run / "notes.txt").write_text("the user's own file")  # added to the run folder later: --overwrite keeps it
    assert "--resume latest" in stopped.stdout
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-2"]

    before = folder_snapshot(run)
    refused = train("--output_dir", run)
    assert_message(refused, "--overwrite", "--resume latest", str(run))
    assert folder_snapshot(run) == before

    resumed = train("--output_dir", run, "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    assert len(json.loads((run / "history.json").read_text())) == 1
    assert yaml.safe_load((run / "train_config.yaml").read_text())["mixed_precision"] == "no"

    after = folder_snapshot(run)
    finished = train("--output_dir", run, "--resume", "latest")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
    assert "finished (epoch 1/1" in finished.stdout
    assert folder_snapshot(run) == after

    # bf16 autocast runs on a CPU too, so it is what train_config.yaml records
    overwritten = train("--output_dir", run, "--overwrite", "--max_steps", 1, "--mixed_precision", "bf16")
    assert overwritten.returncode == 0, overwritten.stderr[-2000:]
    assert (run / "notes.txt").read_text() == "the user's own file"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-1"]
    for earlier in ("model.safetensors", "config.json", "metrics.jsonl", "history.json", "README.md",
                    "modeling_abaw_fusion.py"):
        assert not (run / earlier).exists(), earlier  # this run stopped before saving a model
    saved = yaml.safe_load((run / "train_config.yaml").read_text())
    assert saved["mixed_precision"] == "bf16" and "overwrite" not in saved


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is real on a GPU")
def test_fp16_without_a_gpu_is_a_message(tmp_path):
    result = train("--output_dir", tmp_path / "run", "--mixed_precision", "fp16")
    assert_message(result, "--mixed_precision fp16", "GPU")
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: ten\n")  # without --debug: a message, see the table below
    result = train("--config", config, "--output_dir", tmp_path / "run", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "SettingError" in result.stderr
    assert f"{config}: epochs must be an integer" in result.stderr


# ----- bad configs and flags, through the same entry point in-process ----------------------------------------

BAD_YAML = {
    "not_utf8.yaml": "dataset: caf\xe9\n".encode("latin-1"),
    "invalid.yaml": b"epochs: [1\n",
    "list.yaml": b"- epochs\n- 3\n",
    "unknown_key.yaml": b"epochz: 3\n",
    "lr_list.yaml": b"learning_rate: [1]\n",
    "features_int.yaml": b"features: 3\n",
    "epochs_float.yaml": b"epochs: 1.0\n",
    "epochs_zero.yaml": b"epochs: 0\n",
    "epochs_ten.yaml": b"epochs: ten\n",
}

BAD_INPUTS = [  # (arguments, what stderr must name); {tmp} is the test's folder
    (["--config", "{tmp}/missing.yaml"], "--config {tmp}/missing.yaml"),
    (["--config", "{tmp}"], "--config {tmp}: is a folder"),
    (["--config", "{tmp}/not_utf8.yaml"], "not_utf8.yaml:1: not UTF-8"),
    (["--config", "{tmp}/invalid.yaml"], "invalid.yaml: not valid YAML at line 2"),
    (["--config", "{tmp}/list.yaml"], "list.yaml: expected 'key: value' settings"),
    (["--config", "{tmp}/unknown_key.yaml"], "epochz; did you mean epochs"),
    (["--config", "{tmp}/lr_list.yaml"], "learning_rate must be a number"),
    (["--config", "{tmp}/features_int.yaml"], "features must be a list of names"),
    (["--config", "{tmp}/epochs_float.yaml"], "epochs must be an integer"),
    (["--config", "{tmp}/epochs_ten.yaml"], "epochs_ten.yaml: epochs must be an integer (e.g. 8); got 'ten'"),
    (["--config", "{tmp}/epochs_zero.yaml"], "epochs_zero.yaml: epochs must be >= 1"),
    (["--config"], "--config needs a YAML file"),
    (["--epochs", "ten"], "--epochs: invalid int value"),
    (["--not_a_flag", "1"], "unknown flag(s) --not_a_flag"),
    (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be >= 1"),
    (["--batch_size", "0"], "batch_size must be >= 1"),
    (["--eval_batch_size", "0"], "eval_batch_size must be >= 1"),
    (["--window", "0"], "window must be >= 1"),
    (["--num_workers", "-1"], "num_workers must be >= 0"),
    (["--learning_rate", "0"], "learning_rate must be a number > 0"),
    (["--max_steps", "0"], "max_steps must be >= 1"),
    (["--folds", "0"], "folds must be >= 1"),
    (["--folds", "3", "--fold", "3"], "fold 3 is outside 0..2"),
    (["--fusion", "sum"], "fusion must be one of concat, tokens"),
    (["--output_dir", "{tmp}/a_file"], "--output_dir {tmp}/a_file is a file"),
    (["--dataset", "{tmp}/nowhere"], "--dataset {tmp}/nowhere: no such dataset folder"),
    (["--dataset", "{tmp}/empty"], "--dataset {tmp}/empty"),
    (["--resume", "{tmp}/nowhere"], "--resume {tmp}/nowhere: no such checkpoint folder"),
    (["--resume", "{tmp}/empty"], "not an abaw_hf training checkpoint"),
    (["--resume", "latest"], "--resume latest: no checkpoint in"),
    (["--tracker", "tensorboard"], "--tracker tensorboard"),
    (["--mixed_precision", "fp16"], "--mixed_precision fp16 needs a GPU"),
]


def test_bad_configs_and_flags_are_one_line_messages(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ABAW_HF_DEBUG", raising=False)
    for name, content in BAD_YAML.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    for arguments, named in BAD_INPUTS:
        if arguments == ["--tracker", "tensorboard"] and importlib.util.find_spec("tensorboard"):
            continue  # installed: the tracker is real
        if arguments == ["--mixed_precision", "fp16"] and torch.cuda.is_available():
            continue
        # the YAML cases' keys come from the file alone: no --epochs flag to replace them
        at = TINY.index("--epochs")
        settings = TINY[:at] + TINY[at + 2 :]
        argv = [*settings, "--output_dir", str(tmp_path / "run"), *(a.format(tmp=tmp_path) for a in arguments)]
        status = train_py(argv)  # what scripts/train.py runs
        err = capsys.readouterr().err
        assert status == 2, (arguments, err)
        assert named.format(tmp=tmp_path) in err, (arguments, err)
        assert err.startswith("train.py: error: ") and len(err.strip().splitlines()) <= 2, (arguments, err)
        assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was written for a refused run


def test_abaw_hf_train_runs_the_same_training_and_logs_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra: pip install 'abaw_hf[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from abaw_hf.cli import main as cli_main

    run = tmp_path / "run"
    assert cli_main(["train", *TINY, "--output_dir", str(run), "--tracker", "tensorboard"]) == 0
    events = sorted((run / "runs").rglob("events.out.tfevents.*"))
    assert events, sorted(str(path.relative_to(run)) for path in run.rglob("*"))
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    assert {"train_loss", "lr", "eval_p_mtl", "eval_f1_au"} <= set(scalars.Tags()["scalars"])
    logged = json.loads((run / "history.json").read_text())[-1]
    assert scalars.Scalars("eval_p_mtl")[-1].value == pytest.approx(logged["eval_p_mtl"], rel=1e-5)
    assert scalars.Scalars("eval_p_mtl")[-1].step == logged["step"]
    # the event files belong to the run: --overwrite replaces them with the new run's
    assert train("--output_dir", run, "--overwrite").returncode == 0
    assert not list((run / "runs").rglob("events.out.tfevents.*"))


def test_yaml_values_are_read_like_flags(tmp_path):
    config = tmp_path / "c.yaml"
    # YAML reads 1e-4 as a string and 1 as an int: both are the numbers a flag would give
    config.write_text("learning_rate: 1e-4\nweight_decay: 1\nepochs: '3'\nprogress: no\nfeatures: resnet18+fau\n")
    parsed = parse_train_config(["--config", str(config)])
    assert (parsed.learning_rate, parsed.weight_decay, parsed.epochs, parsed.progress) == (1e-4, 1.0, 3, False)
    assert parsed.features == ["resnet18", "fau"]
    config.write_text("epochs: 0\nmax_steps: null\n")
    assert parse_train_config(["--config", str(config), "--epochs", "2"]).epochs == 2  # the flag replaces it
    assert parse_train_config(["--config", str(config), "--debug", "--epochs", "2"]).max_steps is None
