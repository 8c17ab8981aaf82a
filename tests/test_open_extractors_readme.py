"""The README's open-backbone recipe, run as written through the console scripts, on tiny random-weight model
folders made here under the names it uses (models/dinov2-small, models/wavlm-base-plus, efficientnet_b0.safetensors,
resnet18_msceleb.pth in the official layout) and a cropped_aligned folder with its raw videos' sound."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from skimage.data import astronaut

from abaw_fixture import write_official_checkpoint
from open_models_fixture import (save_timm_weights, save_tiny_dinov2, save_tiny_wavlm, tone_signal,
                                 write_video_with_audio)

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- readme-test: skip: needs the challenge's frames and videos; tests/test_open_extractors_readme.py runs it"
HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
# the only change to the README's commands: training gets these size knobs appended (later flags win)
TRAINING_SIZE_KNOBS = ["--epochs", "1", "--window", "4", "--train_stride", "4", "--hidden_size", "16",
                       "--num_hidden_layers", "1", "--num_attention_heads", "2", "--batch_size", "4", "--no_progress",
                       "--no_plot"]


def recipe_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    assert text.count(MARK) == 1, "README.md: the open-backbone recipe block and its mark"
    block = re.search(r"```bash\n(.*?)```", text.split(MARK, 1)[1], flags=re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in re.sub(r"\\\n", " ", block).splitlines()]
    return [command for command in commands if command]


def make_inputs(work: Path) -> None:
    save_tiny_dinov2(work / "models" / "dinov2-small")
    save_tiny_wavlm(work / "models" / "wavlm-base-plus")
    save_timm_weights(work / "efficientnet_b0.safetensors", "efficientnet_b0")
    write_official_checkpoint(work / "resnet18_msceleb.pth", "resnet18", None)
    rng = np.random.default_rng(1)
    (work / "videos").mkdir()
    for split, (video, count) in {"training": ("video5_left", 16), "validation": ("video6", 12)}.items():
        lines = [HEADER]
        (work / "cropped_aligned" / video).mkdir(parents=True)
        for k in range(1, count + 1):
            crop = astronaut()[10 + k : 270 + k, 120 + k : 380 + k]
            Image.fromarray(cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)).save(
                work / "cropped_aligned" / video / f"{k:05d}.jpg")
            aus = ",".join(str(int(v)) for v in rng.integers(0, 2, 12))
            lines.append(f"{video}/{k:05d}.jpg,{rng.uniform(-1, 1):.3f},{rng.uniform(-1, 1):.3f},{rng.integers(0, 8)},{aus}")
        (work / f"{split}_set_annotations.txt").write_text("\n".join(lines) + "\n")
        write_video_with_audio(work / "videos" / f"{video.removesuffix('_left')}.mp4",
                               [np.zeros((32, 32, 3), np.uint8)] * count, 10, tone_signal(count / 10, [count / 20]))
    write_video_with_audio(work / "clip.mp4", [np.ascontiguousarray(astronaut()[::2, ::2])] * 10, 10,
                           tone_signal(1.0, [0.5]))


def test_readme_open_backbone_recipe_runs(tmp_path):
    commands = recipe_commands()
    assert [c[0] if c[0] != "python" else c[1] for c in commands] == [
        "abaw-hf", "abaw-hf", "scripts/train.py", "abaw-hf", "abaw-hf"]
    make_inputs(tmp_path)
    (tmp_path / "scripts").symlink_to(REPO / "scripts", target_is_directory=True)
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    for command in commands:
        if "scripts/train.py" in command:
            command = [sys.executable, *command[1:], *TRAINING_SIZE_KNOBS]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{shlex.join(command)}:\n{result.stderr[-3000:]}"
    config = json.loads((tmp_path / "outputs" / "recipe" / "config.json").read_text())
    assert config["feature_names"] == ["hf_dinov2_small_cls", "audio_wavlm_base_plus", "resnet18"]
    assert config["extractors"]["audio_wavlm_base_plus"]["audio"]["window_seconds"] == 1.0
    table = pd.read_csv(tmp_path / "clip.csv")
    assert len(table) == 10 and table["valence"].notna().all()
    report = json.loads((tmp_path / "clip_timm" / "extraction_report.json").read_text())
    assert report["extractors"]["timm_efficientnet_b0"]["sha256"] and report["missing_vectors"]["timm_efficientnet_b0"] == 0
