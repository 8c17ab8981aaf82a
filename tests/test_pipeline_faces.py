"""Every face through the pipeline: rows per (frame, face), stable face ids, per-face windows and smoothing,
--faces, and extract --video writing one video per face track; on a video made from real faces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abaw_hf.faces import write_video
from abaw_hf.pipeline import AffectPipeline
from abaw_hf.postprocess import smooth_predictions
from real_faces import multi_face_scene, person_of

FRAMES = 30  # phoebe is away for frames 10-19; joey passes in front of ross around frames 12-17
PROVENANCE = {"resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512, "random_init": False}}


@pytest.fixture(scope="module")
def resnet_model(tiny_model):
    """``resnet_model()``: conftest's tiny model over resnet18 alone, the same weights each call (seed 0)."""
    return lambda: tiny_model({"resnet18": 512}, extractors=PROVENANCE, seed=0, hidden_dropout_prob=0.0, max_window=64)


@pytest.fixture(scope="module")
def scene():
    return multi_face_scene(frames=FRAMES)


@pytest.fixture(scope="module")
def video(scene, tmp_path_factory):
    blank = np.full_like(scene.frames[0], 110)
    frames = scene.frames[:25] + [blank, blank] + scene.frames[25:]  # two frames without any face
    return write_video(tmp_path_factory.mktemp("multi") / "people.mp4", frames, fps=10)


def truth_of(scene, frame: int) -> dict:
    """The true faces of a frame of the video (which has two blank frames after frame 24)."""
    return {} if frame in (25, 26) else scene.truth[frame if frame < 25 else frame - 2]


@pytest.fixture(scope="module")
def pipeline(resnet_model):
    from abaw_hf.faces.wild import WildFaceDetector

    # MTCNN without the MediaPipe mesh: rows, ids and windows are tested here, the mesh in test_faces_wild.py
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        pipe = AffectPipeline(resnet_model(), window=4, max_gap=2, smoothing_sigma=0.0,
                              detector=WildFaceDetector(mesh=False))
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def table(pipeline, video):
    return pipeline(video)


def test_one_row_per_frame_and_face_with_stable_ids(table, scene):
    assert list(table.columns[:4]) == ["source", "frame", "face", "time"]
    assert sorted(set(table.frame)) == list(range(FRAMES + 2))
    faces = table[table.face_found]
    people: dict[str, set] = {}
    for row in faces.itertuples():
        person = person_of((row.face_x0, row.face_y0, row.face_x1, row.face_y1), truth_of(scene, row.frame))
        assert person is not None
        people.setdefault(person, set()).add(int(row.face))
    assert set(people) == {"ross", "joey", "phoebe"}
    assert len(people["ross"]) == len(people["joey"]) == 1 and people["ross"] != people["joey"]
    assert not people["phoebe"] & (people["ross"] | people["joey"])
    per_frame = faces.groupby("frame").size()
    assert per_frame.max() == 3 and (per_frame >= 1).all()
    # rows of a frame: largest face first, each id once
    assert not faces.duplicated(["frame", "face"]).any()


def test_faceless_frames_are_one_marked_row(table):
    blank = table[table.frame.isin([25, 26])]
    assert len(blank) == 2 and not blank.face_found.any() and blank.face.isna().all()
    assert (blank.note == "no face found").all() and blank.valence.isna().all()


def test_smoothing_runs_along_each_face(pipeline, scene):
    frames = scene.frames[:10]
    raw = pipeline.predict_frames(frames)
    pipeline.smoothing_sigma = 2.0
    try:
        smoothed = pipeline.predict_frames(frames)
    finally:
        pipeline.smoothing_sigma = 0.0
    assert raw.face.nunique() == 3
    faces = raw[raw.face_found]
    expected = smooth_predictions(faces[["valence", "arousal"]].to_numpy(np.float64), faces.face.to_numpy(np.int64),
                                  faces.frame.to_numpy(), sigma=2.0, max_gap=pipeline.max_gap)
    got = smoothed[smoothed.face_found][["valence", "arousal"]].to_numpy(np.float64)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, faces[["valence", "arousal"]].to_numpy(np.float64), atol=1e-4)  # it did smooth


def test_windows_hold_one_face_each(pipeline, scene, monkeypatch):
    from abaw_hf.pipeline.stream import PredictionStream

    windows = []
    run_fusion = PredictionStream._run_fusion

    def spy(self):
        windows.extend([[(row.face, row.frame) for row in window] for window in self._ready])
        return run_fusion(self)

    monkeypatch.setattr(PredictionStream, "_run_fusion", spy)
    table = pipeline.predict_frames(scene.frames[:10])
    assert len(windows) >= 3
    for window in windows:
        assert len({face for face, _ in window}) == 1  # one face's frames
        frames = [frame for _, frame in window]
        assert frames == sorted(set(frames)) and len(frames) <= pipeline.window
    assert sum(len(window) for window in windows) == int(table.face_found.sum())  # every face row once


def test_any_cut_of_feeds_gives_the_same_table(pipeline, video, table):
    from abaw_hf.faces import iter_video_frames

    frames = [frame for frame in iter_video_frames(video)]
    stream = pipeline.stream(source=video.name)
    parts = [stream.feed(frames[start : start + 7]) for start in range(0, len(frames), 7)] + [stream.finish()]
    streamed = pd.concat([part for part in parts if len(part)], ignore_index=True)
    pd.testing.assert_frame_equal(streamed, table)
    assert sum(len(part) for part in parts[:-1]) > 0  # rows came out before the end


def test_largest_and_n_faces(pipeline, scene, resnet_model):
    frames = scene.frames[:8]
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        largest = AffectPipeline(resnet_model(), window=4, max_gap=2, faces="largest", detector=pipeline.detector)
        two = AffectPipeline(resnet_model(), window=4, max_gap=2, faces="2", detector=pipeline.detector)
    one_table, two_table = largest.predict_frames(frames), two.predict_frames(frames)
    assert (one_table.groupby("frame").size() == 1).all() and one_table.face.nunique() == 1
    assert (two_table.groupby("frame").size() == 2).all() and two_table.face.nunique() == 2


def test_bad_faces_value_is_a_user_error(resnet_model):
    from abaw_hf.pipeline import PipelineError

    with pytest.raises(PipelineError, match="faces must be"), pytest.warns(UserWarning):
        AffectPipeline(resnet_model(), faces="everyone")


def test_extract_video_writes_one_video_per_face_track(video, scene, tmp_path):
    import json
    import warnings

    from abaw_hf.data import column_array
    from abaw_hf.extraction import extract_video_features
    from abaw_hf.extractors import PreprocessConfig, create_extractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: the layout is what is tested
        extractor = create_extractor("resnet18", random_seed=0)
    extractor.preprocess_cfg = PreprocessConfig(input_size=32)
    result = extract_video_features([video], [extractor], tmp_path / "features", shard_size=64, batch_size=16,
                                    num_workers=0, progress=False, keep_work=True)
    dataset = result.dataset
    names = sorted(set(dataset["video"]))
    assert len(names) == 3 and all(name.startswith("people_face") for name in names)
    record = json.loads((tmp_path / "features.work" / "faces" / "people" / "faces.json").read_text())
    assert [track["video"] for track in record["tracks"]] == [f"people_face{t['face']}" for t in record["tracks"]]
    assert record["frames_without_face"] == [26, 27]  # the two blank frames, numbered from 1
    _, present = column_array(dataset, "resnet18")
    videos = np.array(dataset["video"])
    for track in record["tracks"]:
        rows = videos == track["video"]
        assert rows.sum() == FRAMES + 2  # every frame of the video, the face's or not
        assert present[rows].sum() == track["frames_with_face"] == FRAMES + 2 - len(track["frames_without_face"])
    phoebe = min(record["tracks"], key=lambda track: track["frames_with_face"])
    assert set(range(11, 21)) <= set(phoebe["frames_without_face"])  # away for frames 10-19 (0-based)


def test_space_shows_every_face_with_a_selector(pipeline, scene, tmp_path):
    from abaw_hf.space import app, views

    short = write_video(tmp_path / "short.mp4", scene.frames[:6] + [np.full_like(scene.frames[0], 110)], fps=10)
    space = app.AffectSpace("in-memory", pipeline=pipeline)
    *_, last = space.analyse_video(str(short))
    assert len(last) == space.OUTPUT_COUNT
    result = dict(zip(["status", "frame", "caption", "va_plot", "expression_plot", "au_plot", "table", "csv",
                       "state", "slider", "faces"], last))
    assert result["status"].startswith("✅ 7 frames (6 with a face, 3 faces)")
    table = result["state"]["table"]
    assert "face" in result["table"].columns and len(result["table"]) == len(table) == 6 * 3 + 1
    ids = sorted(int(face) for face in table.face.dropna().unique())
    assert result["faces"]["visible"] and sorted(value for _, value in result["faces"]["choices"]) == ids
    assert result["slider"]["maximum"] == 6  # frames, not rows
    state = result["state"]
    # the frame viewer draws every face of the frame; the caption names the selected one
    frame_image, caption = space.show_frame(state, 0)
    assert caption.startswith(f"frame 0 · face {state['face']} of 3: ")
    assert frame_image.size == (640, 360)
    other = next(face for face in ids if face != state["face"])
    frame_image, caption, va_plot, *_, state = space.select_face(state, other)
    assert state["face"] == other and f"face {other} of 3" in caption and va_plot is not None
    shown = views.face_rows(table, other)
    assert len(shown) == 7 and shown["frame"].is_monotonic_increasing and shown.face_found.sum() == 6
    mine = table[table.face == other]
    np.testing.assert_allclose(shown[shown.face_found].valence.to_numpy(float), mine.valence.to_numpy(float))
    assert shown.note.iloc[-1] == "no face found"


def test_predict_cli_faces_option(video, tmp_path, capsys, resnet_model):
    from abaw_hf.cli import main as cli_main

    model_dir = tmp_path / "model"
    resnet_model().save_pretrained(model_dir)
    output = tmp_path / "largest.csv"
    code = cli_main(["predict", str(video), "-o", str(output), "--model", str(model_dir), "--faces", "largest",
                     "--max-frames", "6", "--window", "4"])
    assert code == 0, capsys.readouterr().err[-2000:]
    csv = pd.read_csv(output)
    assert list(csv.frame) == list(range(6)) and csv.face.nunique() == 1
    assert "(1 tracked face)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        cli_main(["predict", str(video), "-o", str(tmp_path / "x.csv"), "--model", str(model_dir), "--faces", "0"])
    assert refused.value.code == 2 and "faces must be" in capsys.readouterr().err
