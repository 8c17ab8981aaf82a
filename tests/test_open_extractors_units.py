"""Open extractors, piece by piece: preprocessing and features equal the libraries' own (timm, transformers), the
per-frame sound vectors change where the sound does, missing sound is reported, bad specs are messages, and the
vision families run under onnxruntime like the named extractors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from abaw_hf.cli import main as cli_main
from abaw_hf.data import Annotations
from abaw_hf.data.columns import column_array
from abaw_hf.extraction import extract_features
from abaw_hf.extraction.audio import AudioSource, sources_from_folder
from abaw_hf.extractors import create_extractor
from abaw_hf.specs import create_extractors
from open_models_fixture import (save_timm_weights, save_tiny_dinov2, save_tiny_wavlm, save_tiny_whisper, tone_signal,
                                 write_video_with_audio)

FPS = 10


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_models")
    return {
        "vit": save_timm_weights(folder / "vit.safetensors"),
        "convnext": save_timm_weights(folder / "convnext.safetensors", "test_convnext"),
        "dinov2": save_tiny_dinov2(folder / "dinov2"),
        "wavlm": save_tiny_wavlm(folder / "wavlm"),
        "whisper": save_tiny_whisper(folder / "whisper"),
        "root": folder,
    }


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return cv2.resize(astronaut()[10:270, 120:380], (112, 112), interpolation=cv2.INTER_AREA)


# ----- parity with the libraries' own preprocessing and loading --------------------------------------------------


def test_timm_input_and_features_are_timms_own(models, face):
    import timm
    from timm.data import create_transform, resolve_data_config

    extractor = create_extractor("timm", "test_vit", models["vit"])
    reference = timm.create_model("test_vit", pretrained=True, pretrained_cfg_overlay={"file": str(models["vit"])}).eval()
    expected = create_transform(**resolve_data_config({}, model=reference))(Image.fromarray(face))
    assert torch.equal(extractor.preprocess([face])[0], expected)
    with torch.inference_mode():
        pre_logits = reference.forward_head(reference.forward_features(expected[None]), pre_logits=True)
    assert extractor.dim == reference.num_features == 64
    torch.testing.assert_close(extractor.extract([face]), pre_logits, rtol=1e-5, atol=1e-5)


def test_hf_input_and_features_are_the_processor_and_models_own(models, face):
    from transformers import AutoImageProcessor, AutoModel

    extractor = create_extractor("hf", f"{models['dinov2']}:cls")
    processor = AutoImageProcessor.from_pretrained(models["dinov2"])
    expected = processor(images=face, return_tensors="pt")["pixel_values"]
    assert torch.equal(extractor.preprocess([face]), expected)
    with torch.inference_mode():
        cls = AutoModel.from_pretrained(models["dinov2"]).eval()(pixel_values=expected).last_hidden_state[:, 0]
    torch.testing.assert_close(extractor.extract([face]), cls, rtol=1e-5, atol=1e-5)
    mean = create_extractor("hf", f"{models['dinov2']}:mean")
    assert mean.name == "hf_dinov2_mean" != extractor.name == "hf_dinov2_cls"  # two poolings, two columns
    assert not torch.allclose(mean.extract([face]), extractor.extract([face]))


def test_extraction_runner_feeds_each_model_its_own_preprocessing(models, face, tmp_path):
    """Through `extract_features` (DataLoader workers): the stored vectors are each extractor's own."""
    import datasets

    root = tmp_path / "frames"
    (root / "clip").mkdir(parents=True)
    for k in (1, 2):
        Image.fromarray(np.roll(face, 9 * k, axis=1)).save(root / "clip" / f"{k:05d}.png")
    extractors = create_extractors([f"timm:test_vit={models['vit']}", f"hf:{models['dinov2']}", "resnet18"],
                                   random_init=True)
    rows = Annotations.unlabelled(["clip", "clip"], [1, 2])
    result = extract_features(rows, root, extractors, tmp_path / "out", image_pattern="{video}/{frame:05d}.png",
                              num_workers=1, batch_size=2, runtime="torch", progress=False)
    table = datasets.load_from_disk(str(tmp_path / "out")).with_format("numpy")
    for extractor in extractors:
        images = [np.asarray(Image.open(root / "clip" / f"{k:05d}.png")) for k in (1, 2)]
        expected = extractor.extract(images).numpy()
        np.testing.assert_allclose(np.asarray(table[extractor.name], np.float32), expected, rtol=2e-3, atol=2e-3)
    assert result.report["extractors"]["hf_dinov2_cls"]["preprocessing"]["processor"] == "BitImageProcessor"


# ----- sound: alignment, chunks, missing sound --------------------------------------------------------------


@pytest.mark.parametrize("model", ["wavlm", "whisper"])
def test_per_frame_sound_vector_changes_at_the_frame_where_the_sound_does(models, tmp_path, model):
    """The same 3 s video twice: a steady tone, and the tone changing pitch at 1.0 s. Their per-frame vectors (0.2 s
    window, frame k at (k-1)/fps) agree for frames 1-10, whose windows end by 1.0 s, differ by about half for frame
    11, whose window straddles 1.0 s, and fully from frame 12 on; chunks of 1 s are crossed on the way. (Comparing
    with the steady tone cancels what a random-weight encoder adds by position.)"""
    silent_frames = [np.zeros((32, 32, 3), np.uint8)] * 30
    changing = write_video_with_audio(tmp_path / "changing.mp4", silent_frames, FPS, tone_signal(3.0, [1.0]))
    steady = write_video_with_audio(tmp_path / "steady.mp4", silent_frames, FPS, tone_signal(3.0, []))
    extractor = create_extractor("audio", str(models[model]), window_seconds=0.2, chunk_seconds=1.0,
                                 context_seconds=0.25)
    times = AudioSource(str(changing), fps=FPS).frame_times(range(1, 31))
    vectors, present, problem = extractor.frame_vectors(changing, times)
    assert present.all() and problem is None and vectors.shape == (30, extractor.dim)
    reference, _, _ = extractor.frame_vectors(steady, times)
    difference = np.linalg.norm(vectors - reference, axis=1)
    ratio = difference / np.median(difference[12:20])  # frames 13-20: well after the change
    assert ratio[:10].max() < 0.3 and 0.3 < ratio[10] < 0.9 and ratio[11] > 0.7, np.round(ratio, 2)
    # one call per frame (the pipeline's stream) gives the same vectors as all frames at once
    stream = extractor.stream(changing)
    one_by_one = np.concatenate([stream.vectors([t])[0] for t in times])
    np.testing.assert_allclose(one_by_one, vectors, rtol=1e-5, atol=1e-5)


def test_missing_or_short_sound_gives_missing_vectors_with_the_reason(models, tmp_path, face):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video_with_audio(videos / "video5.mp4", [np.zeros((32, 32, 3), np.uint8)] * 6, FPS, tone_signal(0.3, [0.1]))
    write_video_with_audio(videos / "video6.mp4", [np.zeros((32, 32, 3), np.uint8)] * 6, FPS, None)
    frames = tmp_path / "frames"
    names = ["video5_left", "video5_right", "video6", "video7"]
    for name in names:
        (frames / name).mkdir(parents=True)
        for k in range(1, 7):
            Image.fromarray(face).save(frames / name / f"{k:05d}.jpg")
    rows = Annotations.unlabelled(np.repeat(names, 6), np.tile(np.arange(1, 7), 4))
    extractors = create_extractors([f"audio:{models['wavlm']}"], audio_window=0.2)
    sources = sources_from_folder(names, videos)
    result = extract_features(rows, frames, extractors, tmp_path / "out", audio_sources=sources, num_workers=0,
                              progress=False)
    report = json.loads(result.report_path.read_text())
    reasons = {entry["video"]: entry for entry in report["missing_audio"]}
    assert "no audio stream" in reasons["video6"]["reason"] and reasons["video6"]["frames"] == 6
    assert "no video7.*" in reasons["video7"]["reason"]
    # the sound of video5 lasts 0.3 s: with a 0.2 s window frames 1-4 (0.0-0.3 s) hear some, 5-6 lie after its end
    assert reasons["video5_left"]["frames"] == reasons["video5_right"]["frames"] == 2
    assert "ends before the video" in reasons["video5_left"]["reason"]
    vectors, present = column_array(result.dataset, "audio_wavlm")
    video = np.asarray(result.dataset["video"])
    left, right = video == "video5_left", video == "video5_right"
    np.testing.assert_array_equal(vectors[left], vectors[right])  # both persons hear video5.mp4
    assert present[left].tolist() == [True] * 4 + [False] * 2 and np.abs(vectors[left][:4]).sum(axis=1).min() > 0
    assert not present[video == "video6"].any() and not present[video == "video7"].any()
    assert report["missing_vectors"]["audio_wavlm"] == 2 + 2 + 6 + 6


# ----- bad input: a message naming the spec, exit status 2 -------------------------------------------------


def _extract(tmp_path, *args) -> list[str]:
    frames = tmp_path / "frames" / "video5"
    frames.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((112, 112, 3), 120, np.uint8)).save(frames / "00001.jpg")
    return ["extract", "--frames", str(tmp_path / "frames"), "--output", str(tmp_path / "out"), "--no-progress", *args]


@pytest.mark.parametrize("case", ["unknown timm", "not a model", "vision to audio", "audio to hf", "wrong checkpoint",
                                  "videos without the video", "videos not a folder", "audio without videos"])
def test_bad_specs_are_messages_naming_the_spec(models, tmp_path, capsys, case):
    root = models["root"]
    (root / "empty_folder").mkdir(exist_ok=True)
    (tmp_path / "videos").mkdir()
    arguments, words = {
        "unknown timm": (["--extractor", "timm:no_such_net"], ["timm:no_such_net", "no model"]),
        "not a model": (["--extractor", f"hf:{root / 'empty_folder'}"], ["empty_folder", "not a transformers model folder"]),
        "vision to audio": (["--extractor", f"audio:{models['dinov2']}"], ["audio:", "not a speech encoder", "hf:"]),
        "audio to hf": (["--extractor", f"hf:{models['wavlm']}"], ["hf:", "no image processor", "audio:"]),
        "wrong checkpoint": (["--extractor", f"timm:test_vit={models['convnext']}"],
                             ["timm:test_vit", "convnext.safetensors", "does not fit"]),
        "videos without the video": (["--extractor", f"audio:{models['wavlm']}", "--videos", str(tmp_path / "videos")],
                                     ["--videos", "video5"]),
        "videos not a folder": (["--extractor", f"audio:{models['wavlm']}", "--videos", str(tmp_path / "nowhere")],
                                ["--videos", "not a folder"]),
        "audio without videos": (["--extractor", f"audio:{models['wavlm']}"], ["audio:", "--videos"]),
    }[case]
    assert cli_main(_extract(tmp_path, *arguments)) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and len(error.strip().splitlines()) <= 3, error
    for word in words:
        assert word in error, (word, error)


def test_two_extractors_writing_one_column_are_refused(models):
    from abaw_hf.errors import UserError

    with pytest.raises(UserError, match="would both write column 'timm_test_vit'"):
        create_extractors([f"timm:test_vit={models['vit']}", "timm:test_vit"], random_init=True)


# ----- runtimes, export, resume -------------------------------------------------------------------------------


def test_vision_families_run_under_onnxruntime_and_audio_stays_torch(models, face, tiny_model, tmp_path):
    from abaw_hf.onnx.export import export_model
    from abaw_hf.onnx.runtime import runtime_extractors, runtime_name

    extractors = create_extractors([f"timm:test_vit={models['vit']}", f"hf:{models['dinov2']}:cls",
                                    f"audio:{models['wavlm']}"])
    converted = runtime_extractors(extractors, "onnx")
    assert [runtime_name(e) for e in converted] == ["onnxruntime", "onnxruntime", "torch"]
    for torch_extractor, onnx_extractor in zip(extractors[:2], converted[:2]):
        torch.testing.assert_close(onnx_extractor.extract([face]), torch_extractor.extract([face]), rtol=1e-4, atol=1e-4)
    _, present = converted[2].extract_with_mask([face])  # a face crop carries no sound: missing, not zeros
    assert not present.any()
    model = tiny_model({e.name: e.dim for e in extractors}, extractors={e.name: e.provenance() for e in extractors})
    manifest = export_model(model, {e.name: e for e in extractors}, tmp_path / "onnx").manifest
    shapes = {name: entry["inputs"][0]["shape"] for name, entry in manifest["extractors"].items()}
    assert shapes == {"timm_test_vit": ["batch", 3, 160, 160], "hf_dinov2_cls": ["batch", 3, 56, 56]}
    assert "audio encoder, not exported" in manifest["not_exported"]["audio_wavlm"]


def test_resumed_extraction_equals_one_run(models, tmp_path, face):
    """Shards of 4 rows, one shard per run: the timm and sound columns come out as in one uninterrupted run."""
    import datasets

    from abaw_hf.extraction.audio import sources_from_paths

    frames = tmp_path / "frames" / "clip"
    frames.mkdir(parents=True)
    for k in range(1, 11):
        Image.fromarray(np.roll(face, 3 * k, axis=0)).save(frames / f"{k:05d}.jpg")
    video = write_video_with_audio(tmp_path / "clip.mp4", [np.zeros((32, 32, 3), np.uint8)] * 10, FPS,
                                   tone_signal(1.0, [0.5]))
    rows = Annotations.unlabelled(["clip"] * 10, np.arange(1, 11))
    extractors = create_extractors([f"timm:test_vit={models['vit']}", f"audio:{models['wavlm']}"], audio_window=0.3)
    options = dict(audio_sources=sources_from_paths({"clip": video}), shard_size=4, batch_size=4, num_workers=0,
                   progress=False, runtime="torch")
    done = [extract_features(rows, tmp_path / "frames", extractors, output, max_shards=max_shards, **options).complete
            for output, max_shards in ((tmp_path / "resumed", 1), (tmp_path / "resumed", 1),
                                       (tmp_path / "resumed", None), (tmp_path / "whole", None))]
    assert done == [False, False, True, True]  # 3 shards: one, another, the last
    resumed = datasets.load_from_disk(str(tmp_path / "resumed"))
    whole = datasets.load_from_disk(str(tmp_path / "whole"))
    for name in ("timm_test_vit", "audio_wavlm"):
        np.testing.assert_array_equal(column_array(resumed, name)[0], column_array(whole, name)[0])
        assert column_array(resumed, name)[1].all()


# ----- the Hub: a pinned commit, published timm weights --------------------------------------------------------


def test_hub_backbone_is_pinned_to_its_commit_and_timm_weights_publish_with_the_model(models, tmp_path, monkeypatch,
                                                                                       write_hub_cache, tiny_model):
    from abaw_hf import hub
    from abaw_hf.pipeline.weights import build_extractors

    sha = "0123456789abcdef0123456789abcdef01234567"
    write_hub_cache(tmp_path / "hf_home", "org/tiny-dinov2", models["dinov2"], sha)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    from_hub = create_extractor("hf", "org/tiny-dinov2")
    provenance = from_hub.provenance()
    assert (from_hub.name, provenance["hub"], provenance["revision"]) == ("hf_tiny_dinov2_cls", True, sha)

    timm_extractor = create_extractor("timm", "test_vit", models["vit"])
    extractors = {e.name: e for e in (from_hub, timm_extractor)}
    model = tiny_model({name: e.dim for name, e in extractors.items()},
                       extractors={name: e.provenance() for name, e in extractors.items()})
    model.save_pretrained(tmp_path / "run")
    staged = hub.stage_model_repo(tmp_path / "run", tmp_path / "stage",
                                  extractor_checkpoints={"timm_test_vit": models["vit"]}, synthetic=True)
    (models["vit"]).rename(models["vit"].with_suffix(".moved"))  # the recorded path is gone: the repo's copy serves
    try:
        rebuilt, report = build_extractors(model.config, model_id=str(staged.folder))
    finally:
        models["vit"].with_suffix(".moved").rename(models["vit"])
    sources = {item.feature: (item.source, item.checkpoint) for item in report}
    assert sources == {"hf_tiny_dinov2_cls": ("hub", "org/tiny-dinov2"),
                       "timm_test_vit": ("hub", "extractors/timm_test_vit.safetensors")}
    face = np.full((112, 112, 3), 90, np.uint8)
    for name, extractor in extractors.items():
        torch.testing.assert_close(rebuilt[name].extract([face]), extractor.extract([face]))


def test_two_processes_equal_one_process(models, tmp_path, face, free_port):
    """`accelerate launch` with 2 CPU processes splits the shards; a timm backbone with --random-init is the same
    network in both, and each process reads the sound of its shards' videos: the dataset equals one process's."""
    import os
    import subprocess
    import sys

    import datasets

    frames, videos = tmp_path / "frames", tmp_path / "videos"
    videos.mkdir()
    for name in ("video5_left", "video6"):
        (frames / name).mkdir(parents=True)
        for k in range(1, 9):
            Image.fromarray(np.roll(face, 5 * k, axis=1)).save(frames / name / f"{k:05d}.jpg")
        write_video_with_audio(videos / f"{name.removesuffix('_left')}.mp4", [np.zeros((32, 32, 3), np.uint8)] * 8,
                               FPS, tone_signal(0.8, [0.4]))
    arguments = ["extract", "--frames", str(frames), "--videos", str(videos), "--extractor", "timm:test_vit",
                 "--extractor", f"audio:{models['wavlm']}", "--random-init", "--shard-size", "4", "--batch-size", "4",
                 "--num-workers", "0", "--runtime", "torch", "--no-progress"]
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--main_process_port", str(free_port()), "-m", "abaw_hf.cli"]
    two = subprocess.run([*launcher, *arguments, "--output", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert cli_main([*arguments, "--output", str(tmp_path / "one")]) == 0
    report = json.loads((tmp_path / "two" / "extraction_report.json").read_text())
    assert report["processes"] == 2 and report["shards_by_process"] == {"0": 2, "1": 2}
    one, both = datasets.load_from_disk(str(tmp_path / "one")), datasets.load_from_disk(str(tmp_path / "two"))
    for name in ("timm_test_vit", "audio_wavlm"):
        vectors_two, present_two = column_array(both, name)
        vectors_one, present_one = column_array(one, name)
        assert present_two.all() and present_one.all()
        np.testing.assert_allclose(vectors_two.astype(np.float32), vectors_one.astype(np.float32), rtol=2e-3, atol=2e-3)


def test_a_model_folder_that_moved_is_named_and_can_be_given_again(models, tmp_path, tiny_model):
    """A local hf:/audio: folder recorded in config.json is used only where it still is, with the same weights;
    otherwise the message names the feature and --checkpoint FEATURE=FOLDER, which then serves."""
    import shutil

    from abaw_hf.pipeline.errors import PipelineError
    from abaw_hf.pipeline.weights import build_extractors

    folder = shutil.copytree(models["wavlm"], tmp_path / "wavlm")
    extractor = create_extractor("audio", str(folder), window_seconds=0.5)
    model = tiny_model({extractor.name: extractor.dim}, extractors={extractor.name: extractor.provenance()})
    rebuilt, report = build_extractors(model.config)
    assert report[0].source == "checkpoint" and rebuilt["audio_wavlm"].preprocess_cfg.window_seconds == 0.5
    moved = folder.rename(tmp_path / "elsewhere")
    with pytest.raises(PipelineError, match=r"'audio_wavlm'.*not on this machine.*--checkpoint audio_wavlm=FOLDER"):
        build_extractors(model.config)
    rebuilt, report = build_extractors(model.config, checkpoints={"audio_wavlm": moved})
    assert report[0].source == "checkpoint" and report[0].sha256 == extractor.provenance()["sha256"]
