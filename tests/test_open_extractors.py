"""Open extractors end to end, through the console scripts: a timm backbone from a weights file, a transformers
DINOv2 folder and a WavLM folder (tiny random weights, made here, offline) -> `abaw-hf extract` from a frames folder
with its raw videos' sound and from a video file -> scripts/train.py -> `abaw-hf predict` on a video -> the Space
(space/app.py, driven with gradio_client)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import datasets
import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.data import astronaut

from abaw_hf.data import read_metadata
from open_models_fixture import (save_timm_weights, save_tiny_dinov2, save_tiny_wavlm, tone_signal,
                                 write_video_with_audio)

REPO = Path(__file__).resolve().parents[1]
HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
FPS = 10
FRAMES = {"video5_left": 24, "video6": 20}  # frames folder videos; video5_left's sound is DIR/video5.mp4
COLUMNS = {"timm_test_vit": 64, "hf_dinov2_cls": 48, "audio_wavlm": 40}


def run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def face_crop(shift: int) -> np.ndarray:
    crop = astronaut()[10 + shift : 270 + shift, 120 + shift : 380 + shift]
    return cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Models, a cropped_aligned folder with annotations, its raw videos (with sound), and a clip with sound."""
    work = tmp_path_factory.mktemp("open_extractors")
    save_timm_weights(work / "vit.safetensors")
    save_tiny_dinov2(work / "dinov2")
    save_tiny_wavlm(work / "wavlm")
    rng = np.random.default_rng(0)
    lines = {"train": [HEADER], "validation": [HEADER]}
    for video, count in FRAMES.items():
        folder = work / "cropped_aligned" / video
        folder.mkdir(parents=True)
        for k in range(1, count + 1):
            Image.fromarray(face_crop(k % 7)).save(folder / f"{k:05d}.jpg")
            split = "train" if video == "video5_left" else "validation"
            aus = ",".join(str(int(v)) for v in rng.integers(0, 2, 12))
            lines[split].append(f"{video}/{k:05d}.jpg,{rng.uniform(-1, 1):.3f},{rng.uniform(-1, 1):.3f},"
                                f"{rng.integers(0, 8)},{aus}")
        raw = video.removesuffix("_left")
        write_video_with_audio(work / "videos" / f"{raw}.mp4" if (work / "videos").is_dir() else
                               _mkdir(work / "videos") / f"{raw}.mp4", [np.zeros((64, 64, 3), np.uint8)] * count,
                               FPS, tone_signal(count / FPS, [count / FPS / 2]))
    for split, rows in lines.items():
        (work / f"{split}.txt").write_text("\n".join(rows) + "\n")
    frames = [np.ascontiguousarray(astronaut()[::2, ::2])] * 12
    write_video_with_audio(work / "clip.mp4", frames, FPS, tone_signal(1.2, [0.6]))
    Image.fromarray(astronaut()).save(work / "photo.jpg")
    return work


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_timm_hf_audio_columns_extract_train_predict_and_serve(work, free_port):
    specs = ["--extractor", "timm:test_vit=vit.safetensors", "--extractor", "hf:dinov2:cls", "--extractor", "audio:wavlm"]
    common = ["--num-workers", "0", "--batch-size", "8", "--no-progress"]
    for split in ("train", "validation"):
        run(["abaw-hf", "extract", "--frames", "cropped_aligned", "--annotations", f"{split}.txt", "--videos", "videos",
             *specs, "--output", "features", "--split", split, *common], work)
    data = datasets.load_from_disk(str(work / "features"))
    for split, video in (("train", "video5_left"), ("validation", "video6")):
        table = data[split]
        assert {name: table.features[name].length for name in COLUMNS} == COLUMNS
        provenance = read_metadata(table)["extractors"]
        assert provenance["timm_test_vit"]["family"] == "timm" and provenance["timm_test_vit"]["preprocessing"]["input_size"] == [3, 160, 160]
        assert provenance["timm_test_vit"]["sha256"] and provenance["hf_dinov2_cls"]["pooling"] == "cls"
        assert provenance["audio_wavlm"]["audio"]["window_seconds"] == 1.0
        audio = np.asarray(table.with_format("numpy")["audio_wavlm"], dtype=np.float32)
        assert audio.std(axis=0).max() > 0 and np.isfinite(audio).all()  # the sound, not missing-vector zeros
        report = json.loads((work / "features" / split / "extraction_report.json").read_text())
        assert report["missing_vectors"] == dict.fromkeys(COLUMNS, 0) and report["missing_audio"] == []
        assert set(table["video"]) == {video}

    run(["abaw-hf", "extract", "--video", "clip.mp4", *specs, "--output", "clip_features", *common], work)
    clip = datasets.load_from_disk(str(work / "clip_features"))
    assert len(clip) == 12 and set(COLUMNS) <= set(clip.column_names)
    clip_report = json.loads((work / "clip_features" / "extraction_report.json").read_text())
    assert clip_report["missing_vectors"]["audio_wavlm"] == 0  # a face track hears its own video's sound

    run([sys.executable, str(REPO / "scripts" / "train.py"), "--dataset", "features", "--features", *COLUMNS,
         "--window", "4", "--train_stride", "4", "--hidden_size", "16", "--num_hidden_layers", "1",
         "--num_attention_heads", "2", "--epochs", "1", "--batch_size", "4", "--output_dir", "model", "--no_progress",
         "--no_plot"], work, timeout=600)
    config = json.loads((work / "model" / "config.json").read_text())
    assert config["feature_dims"] == COLUMNS and config["extractors"]["audio_wavlm"]["family"] == "audio"

    predicted = run(["abaw-hf", "predict", "--model", "model", "clip.mp4", "-o", "clip.csv"], work)
    table = pd.read_csv(work / "clip.csv")
    assert len(table) == 12 and table["valence"].notna().all()
    for feature in COLUMNS:  # rebuilt from the model's config, with the weights the features were made with
        assert f"{feature}:" in predicted.stderr and "RANDOM" not in predicted.stderr

    port = free_port()
    log = open(work / "space.log", "w")
    server = subprocess.Popen([sys.executable, str(REPO / "space" / "app.py"), "--model", str(work / "model"),
                               "--host", "127.0.0.1", "--port", str(port)], cwd=work, stdout=log,
                              stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1",
                                                                 GRADIO_ANALYTICS_ENABLED="False"))
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (work / "space.log").read_text()[-3000:]
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (work / "space.log").read_text()[-3000:]
            time.sleep(1)
        from gradio_client import Client, handle_file

        client = Client(url, verbose=False, analytics_enabled=False)
        video = client.predict(handle_file(work / "clip.mp4"), api_name="/analyse_video")
        served = pd.read_csv(video[7])
        assert len(served) == 12  # the same video, the same table as `abaw-hf predict`
        np.testing.assert_allclose(served["valence"], table["valence"], atol=1e-4)
        photo = client.predict(handle_file(work / "photo.jpg"), api_name="/analyse_image")
        assert photo[0].startswith("✅ 1 frame (1 with a face)")  # no sound: the missing-feature embedding stands in
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
