"""The Gradio Space served on 127.0.0.1 and driven with gradio_client: photos, videos, bad input, missing model."""

from __future__ import annotations

import html
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from skimage import data

from abaw_hf import AU_NAMES, EXPRESSION_NAMES
from abaw_hf.faces import write_video
from abaw_hf.pipeline import prediction_columns
from abaw_hf.space import app as space_app
from abaw_hf.status import weights_status

MAX_VIDEO_SECONDS = 3.0
OUTPUT_NAMES = ["status", "frame", "caption", "va_plot", "expression_plot", "au_plot", "table", "csv", "slider", "faces"]


def no_face(image: np.ndarray) -> np.ndarray:
    """The same-size lower right of the astronaut photograph: flag, suit and sky, no face."""
    return np.ascontiguousarray(np.pad(image[300:, 300:], ((0, 300), (0, 300), (0, 0)), mode="edge"))


def outputs(result) -> dict:
    assert len(result) == len(OUTPUT_NAMES)
    return dict(zip(OUTPUT_NAMES, result))


def page_text(url: str) -> str:
    """The text values of every component on the served page (from Gradio's /config), HTML entities resolved."""
    components = httpx.get(url + "config").json()["components"]
    return html.unescape("\n".join(str(c.get("props", {}).get("value")) for c in components))


def table_rows(table: dict) -> pd.DataFrame:
    return pd.DataFrame(table["data"], columns=table["headers"])


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    astronaut = data.astronaut()
    photo = folder / "astronaut.jpg"
    Image.fromarray(astronaut).save(photo)
    empty_scene = folder / "flag.png"
    Image.fromarray(no_face(astronaut)).save(empty_scene)
    video = write_video(folder / "astronaut.mp4", [astronaut[::2, ::2]] * 12, fps=10)  # 1.2 s, 256x256
    long_video = write_video(folder / "long.mp4", [astronaut[::8, ::8]] * 25, fps=5)  # 5 s > the 3 s limit
    cut = folder / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 2 // 3])
    moving = write_video(folder / "moving.mkv", [np.roll(astronaut[::4, ::4], 2 * i, axis=1) for i in range(50)], fps=20)
    broken_tail = folder / "broken_tail.mkv"  # Matroska is written as it goes: the first part still decodes
    broken_tail.write_bytes(moving.read_bytes()[: moving.stat().st_size * 3 // 4])
    not_a_video = folder / "notes.mp4"
    not_a_video.write_text("these are meeting notes, not a video\n")
    return {"photo": photo, "empty_scene": empty_scene, "video": video, "long_video": long_video,
            "not_a_video": not_a_video, "cut": cut, "broken_tail": broken_tail}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, save_space_model):
    return save_space_model(tmp_path_factory.mktemp("model") / "abaw-tiny")


@pytest.fixture(scope="module")
def space(model_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space = space_app.AffectSpace(str(model_dir), limits=space_app.Limits(max_upload_mb=5,
                                                                               max_video_seconds=MAX_VIDEO_SECONDS))
    assert not [str(w.message) for w in caught]  # each cause is said once, by the banner (and main's log)
    assert "RANDOM WEIGHTS" in " ".join(space.banner_messages)
    assert space.pipeline.runtimes["resnet18"] == "torch"  # loading never waits for an ONNX export ...
    space.prepare_runtime_in_background().join()  # ... the start-up step prepares it in the background
    assert space.pipeline.runtimes["resnet18"] == "onnxruntime"
    yield space
    space.pipeline.close()


@pytest.fixture(scope="module")
def server(space, served_space):
    with served_space(space) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False, analytics_enabled=False)


def test_photograph_gives_one_row_table_and_csv(client, media):
    result = outputs(client.predict(handle_file(media["photo"]), api_name="/analyse_image"))
    assert result["status"].startswith("✅ 1 frame (1 with a face)")
    rows = table_rows(result["table"])
    assert len(rows) == 1 and bool(rows.loc[0, "face_found"])
    assert 150 < rows.loc[0, "face_x0"] < 225 < rows.loc[0, "face_x1"] < 300
    csv = pd.read_csv(result["csv"])
    assert list(csv.columns) == [*prediction_columns(EXPRESSION_NAMES, AU_NAMES), "weights"] and len(csv) == 1
    words = weights_status(True, ["resnet18"])  # the words of every output, from the one function
    assert csv.loc[0, "weights"] == words and f"weights: {words}" in result["status"]  # what API users read
    assert csv.loc[0, "expression"] in EXPRESSION_NAMES and csv.loc[0, "expression"] in result["caption"]
    assert csv[[f"prob_{name}" for name in EXPRESSION_NAMES]].sum(axis=1).iloc[0] == pytest.approx(1.0, abs=1e-4)
    for name in ("va_plot", "expression_plot", "au_plot"):
        assert result[name]["type"] == "matplotlib" and result[name]["plot"].startswith("data:image/")
    with Image.open(result["frame"]) as frame:  # the photograph with its face box drawn in
        assert frame.size == (512, 512)
        assert np.abs(np.asarray(frame.convert("RGB"), dtype=int) - data.astronaut()).max() > 100
    assert result["slider"]["visible"] is False  # no frame slider for one image


def test_video_gives_one_row_per_frame_and_a_frame_viewer(client, media):
    result = outputs(client.predict(handle_file(media["video"]), api_name="/analyse_video"))
    assert result["status"].startswith("✅ 12 frames (12 with a face)")
    rows = table_rows(result["table"])
    assert list(rows["frame"]) == list(range(12)) and rows["face_found"].all()
    np.testing.assert_allclose(rows["time"].astype(float), np.arange(12) / 10, atol=1e-3)
    csv = pd.read_csv(result["csv"])
    assert len(csv) == 12 and csv[["valence", "arousal"]].notna().all().all()
    assert result["slider"]["visible"] is True and result["slider"]["maximum"] == 11
    # the frame viewer works on the session's last result
    frame, caption = client.predict(7, api_name="/show_frame")
    assert caption.startswith("frame 7: ") and csv.loc[7, "expression"] in caption
    with Image.open(frame) as picture:
        assert picture.size == (256, 256)


def test_video_results_arrive_progressively_as_rows_become_final(client, media, space):
    # one pipeline.stream() fed batch by batch: rows come out once smoothing can no longer change them
    # (tests/test_one_data_path.py checks partial and final CSVs against `abaw-hf predict` on the example clip)
    job = client.submit(handle_file(media["video"]), api_name="/analyse_video")
    job.result()
    updates = job.outputs()
    assert updates[0][0] == "⏳ Analysing astronaut.mp4…"
    final = outputs(updates[-1])
    assert final["status"].startswith("✅ 12 frames") and len(final["table"]["data"]) == 12
    for update in map(outputs, updates[1:-1]):
        rows = len(update["table"]["data"])
        assert 0 < rows < 12 and update["status"].startswith(f"⏳ {rows} of about 12 frames")


def test_non_video_upload_gives_message_and_server_keeps_serving(client, media):
    result = outputs(client.predict(handle_file(media["not_a_video"]), api_name="/analyse_video"))
    assert result["status"].startswith("❌ notes.mp4: not a video file")
    assert result["csv"] is None and result["frame"] is None
    cut = outputs(client.predict(handle_file(media["cut"]), api_name="/analyse_video"))
    assert cut["status"].startswith("❌ cut.mp4: ") and "corrupt" in cut["status"]
    again = outputs(client.predict(handle_file(media["video"]), api_name="/analyse_video"))
    assert again["status"].startswith("✅ 12 frames") and len(pd.read_csv(again["csv"])) == 12


def test_truncated_video_keeps_the_frames_before_the_break(client, media):
    result = outputs(client.predict(handle_file(media["broken_tail"]), api_name="/analyse_video"))
    decoded = len(result["table"]["data"])
    assert 0 < decoded < 50 and result["status"].startswith(f"✅ {decoded} frames")
    assert f"broken_tail.mkv: truncated: decoded {decoded} of the 50 frames" in result["status"]
    assert list(pd.read_csv(result["csv"])["frame"]) == list(range(decoded))


def test_too_long_video_is_refused_with_the_limit(client, media):
    result = outputs(client.predict(handle_file(media["long_video"]), api_name="/analyse_video"))
    assert result["status"] == (
        f"❌ long.mp4 is 5.0 s long; this Space analyses videos up to {MAX_VIDEO_SECONDS:g} s. Trim it and upload again."
    )


def test_image_without_face_is_marked_not_dropped(client, media):
    result = outputs(client.predict(handle_file(media["empty_scene"]), api_name="/analyse_image"))
    assert result["status"].startswith("⚠️ No face found in the image.")
    rows = table_rows(result["table"])
    assert len(rows) == 1 and not rows.loc[0, "face_found"] and rows.loc[0, "note"] == "no face found"


def test_webcam_stream_handler_keeps_a_history_of_frames(space):
    # gradio_client does not speak the streaming protocol, so the handler the stream event calls is called directly
    astronaut, history = data.astronaut(), []
    for expected in range(3):
        status, frame, va_plot, expression_plot, au_plot, history = space.webcam_frame(astronaut, history)
        assert status.startswith(f"🎥 frame {expected}: ") and len(history) == expected + 1
    assert [row["frame"] for row in history] == [0, 1, 2] and all(row["face_found"] for row in history)
    assert frame.size == (512, 512) and len(va_plot.axes) >= 2  # time series and circumplex
    status, *_, unchanged = space.webcam_frame(no_face(astronaut), history)
    assert status == f"🎥 frame 3: no face found\n\nweights: {weights_status(True, ['resnet18'])}" and len(unchanged) == 4


def test_header_names_model_and_extractor_weights_with_banner(server, model_dir):
    config = page_text(server)
    assert str(model_dir) in config and "training data: synthetic demo data" in config
    assert "resnet18 / msceleb | **random init**" in config and "fau / mediapipe | built-in" in config
    assert "fusion model on torch" in config  # what runs each network: --runtime auto on CPU
    assert "**random init** | - | onnxruntime |" in config and "| built-in | - | its own code |" in config
    assert "SYNTHETIC DEMO DATA" in config and "RANDOM WEIGHTS" in config


def test_oversized_upload_is_refused_by_the_handler(space, media, tmp_path):
    small = space_app.AffectSpace(space.model_id, pipeline=space.pipeline, limits=space_app.Limits(max_upload_mb=0.01))
    status = small.analyse_image(str(media["photo"]))[0]
    assert status.startswith("❌ astronaut.jpg is 0.") and "up to 0.01 MB" in status


def test_missing_default_model_folder_still_serves_a_page_that_says_so(tmp_path, media, monkeypatch, served_space):
    monkeypatch.chdir(tmp_path)  # no outputs/abaw-fusion here: `make demo` has not run
    missing = space_app.DEFAULT_MODEL
    space = space_app.AffectSpace(missing)
    assert space.pipeline is None
    with served_space(space) as url:
        assert f"the model folder '{missing}' does not exist" in page_text(url)
        result = outputs(Client(url, verbose=False, analytics_enabled=False).predict(handle_file(media["photo"]),
                                                                                     api_name="/analyse_image"))
        assert result["status"].startswith("❌ No model loaded") and "make demo" in result["status"]
