"""The inference pipeline on real photographs and short videos made from them: rows, columns, faces, bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from skimage import data

from abaw_hf import AU_NAMES, EXPRESSION_NAMES
from abaw_hf.cli import main as cli_main
from abaw_hf.faces import CorruptVideoError, EmptyVideoError, NotAVideoError, write_video
from abaw_hf.pipeline import (
    NO_FACE_NOTE,
    AffectPipeline,
    ExtractorNotInstalledError,
    ImageReadError,
    prediction_columns,
)

COLUMNS = prediction_columns(EXPRESSION_NAMES, AU_NAMES)
PROVENANCE = {
    "fau": {"name": "fau", "variant": "mediapipe", "dim": 17, "random_init": False},
    "resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512, "checkpoint": "resnet18_msceleb.pth", "random_init": False},
}


@pytest.fixture(scope="module")
def pipeline_model(tiny_model):
    """``pipeline_model(feature_dims=None, extractors=None, **config)``: conftest's tiny model over fau + resnet18
    with this file's provenance (of the features it has) unless told otherwise."""

    def make(feature_dims=None, extractors=None, **config):
        feature_dims = feature_dims or {"fau": 17, "resnet18": 512}
        if extractors is None:
            extractors = {k: v for k, v in PROVENANCE.items() if k in feature_dims}
        return tiny_model(feature_dims, extractors=extractors, hidden_dropout_prob=0.0, max_window=64, **config)

    return make


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # 512x512 RGB, one frontal face near (225, 125)


@pytest.fixture(scope="module")
def pipeline(pipeline_model):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        pipe = AffectPipeline(pipeline_model(), window=4, max_gap=2)
    yield pipe
    pipe.close()


def no_face(image: np.ndarray) -> np.ndarray:
    """The same-size lower right of the astronaut: flag, suit and sky, no face."""
    return np.ascontiguousarray(np.pad(image[300:, 300:], ((0, 300), (0, 300), (0, 0)), mode="edge"))


def test_photograph_gives_one_row_with_declared_columns(pipeline, astronaut):
    table = pipeline(astronaut)
    assert list(table.columns) == COLUMNS and len(table) == 1
    row = table.iloc[0]
    assert bool(row.face_found) and row.note == ""
    assert 150 < row.face_x0 < 225 < row.face_x1 < 300 and 40 < row.face_y0 < 125 < row.face_y1 < 210
    probabilities = table[[f"prob_{name}" for name in EXPRESSION_NAMES]].to_numpy(dtype=float)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert row.expression == EXPRESSION_NAMES[int(probabilities.argmax())]
    assert -1 <= row.valence <= 1 and -1 <= row.arousal <= 1
    au_probs = table[[f"prob_{name}" for name in AU_NAMES]].to_numpy(dtype=float)[0]
    decisions = table[AU_NAMES].to_numpy(dtype=int)[0]
    np.testing.assert_array_equal(decisions, (au_probs >= np.asarray(pipeline.config.au_thresholds)).astype(int))


def test_images_grayscale_alpha_and_files(pipeline, astronaut, tmp_path):
    gray_file, alpha_file, rgb_file = tmp_path / "gray.png", tmp_path / "alpha.png", tmp_path / "rgb.jpg"
    Image.fromarray(astronaut).convert("L").save(gray_file)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0  # a transparent corner
    Image.fromarray(rgba, "RGBA").save(alpha_file)
    Image.fromarray(astronaut).save(rgb_file)
    table = pipeline.predict_images([gray_file, alpha_file, rgb_file, astronaut[:, :, 0], rgba, no_face(astronaut)])
    assert list(table["source"]) == ["gray.png", "alpha.png", "rgb.jpg", "image_3", "image_4", "image_5"]
    assert list(table["face_found"]) == [True, True, True, True, True, False]
    assert table.loc[5, "note"] == NO_FACE_NOTE and np.isnan(table.loc[5, "valence"])
    # alpha is composited the same way for files and arrays, and images are independent of their neighbours
    np.testing.assert_allclose(table.loc[4, "valence"], table.loc[1, "valence"], atol=1e-6)
    np.testing.assert_allclose(table.loc[4, "valence"], pipeline(rgba).loc[0, "valence"], atol=1e-6)


def test_video_from_photograph_gives_one_row_per_frame(pipeline, astronaut, tmp_path):
    video = write_video(tmp_path / "clip.mp4", [astronaut] * 10, fps=10)
    table = pipeline(video)
    assert list(table.columns) == COLUMNS
    assert list(table["frame"]) == list(range(10)) and table["face_found"].all()
    np.testing.assert_allclose(table["time"], np.arange(10) / 10, atol=1e-6)
    assert table[["valence", "arousal"]].notna().all().all()
    assert set(pipeline.timings) == {"decode", "faces", "extractors", "fusion", "postprocess"}
    assert all(value >= 0 for value in pipeline.timings.values()) and pipeline.timings["extractors"] > 0
    assert set(pipeline.extractor_timings) == {"fau", "resnet18"}
    assert list(pipeline.predict_video(video, max_frames=3)["frame"]) == [0, 1, 2]


def test_frames_array_is_a_video_without_a_file(pipeline, astronaut):
    frames = np.stack([astronaut, no_face(astronaut), astronaut])  # e.g. a short webcam recording
    table = pipeline(frames)
    assert list(table["frame"]) == [0, 1, 2] and list(table["face_found"]) == [True, False, True]
    timed = pipeline.predict_frames(list(frames), source="webcam", fps=4)
    np.testing.assert_allclose(timed["time"], [0.0, 0.25, 0.5])
    assert set(timed["source"]) == {"webcam"}


def test_face_leaving_the_frame_marks_those_rows(pipeline, astronaut, tmp_path):
    frames = [astronaut] * 4 + [no_face(astronaut)] * 3 + [astronaut] * 3
    table = pipeline(write_video(tmp_path / "leaves.mp4", frames, fps=10))
    assert len(table) == 10
    assert list(table["face_found"]) == [True] * 4 + [False] * 3 + [True] * 3
    missing = table[~table["face_found"]]
    assert (missing["note"] == NO_FACE_NOTE).all()
    assert missing[["valence", "arousal", "prob_Neutral", "prob_AU12"]].isna().all().all()
    assert missing["expression"].isna().all() and missing["AU12"].isna().all()
    present = table[table["face_found"]]
    assert present[["valence", "prob_AU12"]].notna().all().all() and present["AU12"].notna().all()


def test_smoothing_runs_within_face_runs_of_the_video(pipeline, astronaut, tmp_path):
    from abaw_hf.postprocess import smooth_predictions

    frames = [np.roll(astronaut, 6 * i, axis=1) for i in range(5)] + [no_face(astronaut)] * 3
    frames += [np.roll(astronaut, -6 * i, axis=0) for i in range(4)]
    video = write_video(tmp_path / "moving.mp4", frames, fps=10)
    columns = ["valence", "arousal", *[f"prob_{n}" for n in EXPRESSION_NAMES], *[f"prob_{n}" for n in AU_NAMES]]
    sigma = pipeline.smoothing_sigma
    try:
        pipeline.smoothing_sigma = 0.0
        raw = pipeline(video)
    finally:
        pipeline.smoothing_sigma = sigma
    smoothed = pipeline(video)
    faces = raw["face_found"].to_numpy()
    assert faces.sum() >= 7 and (smoothed["face_found"].to_numpy() == faces).all()
    expected = smooth_predictions(
        raw.loc[faces, columns].to_numpy(np.float32), raw.loc[faces, "source"], raw.loc[faces, "frame"],
        sigma=sigma, max_gap=pipeline.max_gap,
    )
    np.testing.assert_allclose(smoothed.loc[faces, columns].to_numpy(np.float32), expected, atol=1e-5)
    assert not np.allclose(smoothed.loc[faces, "valence"], raw.loc[faces, "valence"], atol=1e-6)
    # the decisions follow the smoothed probabilities
    probabilities = smoothed.loc[faces, [f"prob_{n}" for n in EXPRESSION_NAMES]].to_numpy()
    assert list(smoothed.loc[faces, "expression"]) == [EXPRESSION_NAMES[i] for i in probabilities.argmax(1)]


def test_batching_does_not_change_predictions(astronaut, tmp_path, pipeline_model):
    """Extractor batches and padded batches of windows through the model give what one-at-a-time gives."""
    frames = [np.roll(astronaut, 5 * i, axis=1) for i in range(3)] + [no_face(astronaut)]
    frames += [np.roll(astronaut, -5 * i, axis=0) for i in range(3)]
    video = write_video(tmp_path / "batch.mp4", frames, fps=10)
    torch.manual_seed(1)
    model = pipeline_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # windows of 4 face frames: [0, 1, 2, 4] and [5, 6], so the batched run pads the second one
        one_by_one = AffectPipeline(model, window=4, batch_size=2, windows_per_batch=1, smoothing_sigma=0)
    batched = AffectPipeline(
        model, extractors=one_by_one.extractors, window=4, batch_size=16, windows_per_batch=16, smoothing_sigma=0,
        detector=one_by_one.detector,
    )
    columns = ["valence", "arousal", "prob_AU12", "prob_Happiness"]
    first, second = one_by_one(video), batched(video)
    assert first["face_found"].sum() == 6
    np.testing.assert_allclose(first[columns].to_numpy(float), second[columns].to_numpy(float), atol=1e-5)
    one_by_one.close()


def test_bad_inputs_give_typed_errors_or_marked_rows(pipeline, astronaut, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(NotAVideoError, match="notes.mp4"):
        pipeline(text)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(EmptyVideoError, match=r"empty.mp4: empty file \(0 bytes\)"):
        pipeline(empty)
    broken_image = tmp_path / "photo.png"
    broken_image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ImageReadError, match="photo.png: not a readable image"):
        pipeline(broken_image)

    faceless = pipeline(write_video(tmp_path / "sky.mp4", [no_face(astronaut)] * 4, fps=10))
    assert len(faceless) == 4 and not faceless["face_found"].any()
    assert any("no face found in any of the 4 frames" in message for message in faceless.attrs["warnings"])

    # MP4 keeps its index at the end: cut short, it does not open at all
    small = np.ascontiguousarray(astronaut[::4, ::4])
    frames = [np.roll(small, 3 * i, axis=1) for i in range(60)]
    full = write_video(tmp_path / "full.mp4", frames, fps=5)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    with pytest.raises(CorruptVideoError, match="cut.mp4: truncated or corrupt"):
        pipeline(cut)
    # Matroska streams: the frames before the cut come back, and the table says the video was truncated
    full = write_video(tmp_path / "full.mkv", frames, fps=5)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    with pytest.warns(UserWarning, match="cut.mkv: truncated"):
        table = pipeline(cut)
    assert 0 < len(table) < 60 and list(table["frame"]) == list(range(len(table)))
    assert any("cut.mkv: truncated: decoded" in message for message in table.attrs["warnings"])


def test_provenance_naming_an_uninstalled_extractor_is_an_error(pipeline_model):
    model = pipeline_model(
        feature_dims={"fau": 17, "openface3": 5},
        extractors={"fau": PROVENANCE["fau"], "openface3": {"name": "openface3_net", "variant": None}},
    )
    with pytest.raises(ExtractorNotInstalledError, match=r"needs extractor 'openface3_net' \(feature 'openface3'\)"):
        AffectPipeline(model)


def test_from_hub_id_rebuilds_extractors_from_the_published_weights(astronaut, tmp_path, monkeypatch, write_hub_cache,
                                                                    pipeline_model):
    import abaw_hf.hub as hub
    from abaw_hf.extractors import file_sha256, get_extractor_class

    official = get_extractor_class("resnet18")().eval()
    checkpoint = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}, checkpoint)
    provenance = dict(PROVENANCE, resnet18=dict(PROVENANCE["resnet18"], sha256=file_sha256(checkpoint)))
    model = pipeline_model(extractors=provenance)
    model.save_pretrained(tmp_path / "run")
    (tmp_path / "run" / "train_config.yaml").write_text(yaml.safe_dump({"dataset": "synthetic", "window": 5, "max_gap": 3}))
    (tmp_path / "run" / "postprocessing.json").write_text(json.dumps({"smoothing_sigma": 4.0, "max_gap": 3}))
    staged = hub.stage_model_repo(tmp_path / "run", tmp_path / "stage", extractor_checkpoints={"resnet18": checkpoint})
    write_hub_cache(tmp_path / "hf_home", "org/abaw-fusion", staged.folder)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = AffectPipeline.from_pretrained("org/abaw-fusion")
    messages = [str(item.message) for item in caught if issubclass(item.category, UserWarning)]
    assert not any("RANDOM" in message for message in messages)  # the published weights were loaded
    assert any("SYNTHETIC DEMO DATA" in message for message in messages)
    report = pipe.weights_report
    assert [(item.feature, item.source) for item in report.extractors] == [("fau", "built-in"), ("resnet18", "hub")]
    assert report.extractors[1].sha256 == file_sha256(checkpoint) and report.random_extractors == []
    assert report.synthetic_training is True and "SYNTHETIC DEMO DATA" in report.warnings[0]
    assert (pipe.window, pipe.max_gap, pipe.smoothing_sigma) == (5, 3, 4.0)
    torch.testing.assert_close(pipe.extractors["resnet18"].state_dict()["conv1.weight"], official.state_dict()["conv1.weight"])
    table = pipe(astronaut)
    assert table["face_found"].all() and any("SYNTHETIC" in message for message in table.attrs["warnings"])
    pipe.close()


def test_missing_extractor_weights_run_random_and_say_so(tmp_path, pipeline_model):
    model = pipeline_model()
    model.save_pretrained(tmp_path / "run")
    with pytest.warns(UserWarning, match=r"'resnet18'.*RANDOM WEIGHTS"):
        pipe = AffectPipeline.from_pretrained(tmp_path / "run")
    assert pipe.weights_report.random_extractors == ["resnet18"]
    assert not pipe.weights_report.trustworthy
    assert "RANDOM WEIGHTS" in str(pipe.weights_report)
    pipe.close()


def test_cli_predict_writes_csv_and_reports_bad_files(astronaut, tmp_path, capsys, pipeline_model):
    model = pipeline_model()
    model.save_pretrained(tmp_path / "run")
    frames = [astronaut] * 3 + [no_face(astronaut)] * 2
    video = write_video(tmp_path / "clip.mp4", frames, fps=5)
    out = tmp_path / "out" / "pred.csv"
    code = cli_main(["predict", str(video), "--model", str(tmp_path / "run"), "-o", str(out), "--window", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.count("RANDOM WEIGHTS") == 1 and "5 rows, a face in 3" in captured.out
    table = pd.read_csv(out)
    assert list(table.columns) == [*COLUMNS, "weights"] and len(table) == 5  # the CSV says what it is, every row
    assert table["weights"].str.startswith("DEMO ONLY").all()
    assert list(table["face_found"]) == [True] * 3 + [False] * 2
    assert table.loc[3:, ["valence", "AU1"]].isna().all().all() and (table.loc[3:, "note"] == NO_FACE_NOTE).all()

    bad = tmp_path / "bad.mp4"
    bad.write_text(json.dumps({"not": "a video"}))
    code = cli_main(["predict", str(bad), "--model", str(tmp_path / "run"), "-o", str(tmp_path / "bad.csv")])
    assert code == 2 and "bad.mp4: not a video file" in capsys.readouterr().err
    assert not (tmp_path / "bad.csv").exists()
