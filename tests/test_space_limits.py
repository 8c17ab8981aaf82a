"""The Space bounded and honest (issue 24), served on 127.0.0.1 and driven with gradio_client:

* every upload kind reaches our decoder as uploaded, and every bad one is our message in the page (never gradio's
  "upstream app raised an exception"): a 16-bit grayscale photo finds its face; garbage, empty, bomb and
  video-as-image uploads, and garbage, empty, image-as-video and oversized videos are refused by name;
* a video's cost is capped from its container header before any frame is decoded: a two-second 7680x4320 clip is
  refused at once (under 5 s) while another visitor's request waits for the networks and is then answered;
* one analysis at a time per visitor: a second upload while the first runs is refused with a message.
"""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib

import av
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from skimage import data

from abaw_hf.faces import write_video
from abaw_hf.space import app as space_app

OUTPUT_NAMES = ["status", "frame", "caption", "va_plot", "expression_plot", "au_plot", "table", "csv", "slider", "faces"]


def status(result) -> str:
    assert len(result) == len(OUTPUT_NAMES)
    return dict(zip(OUTPUT_NAMES, result))["status"]


def write_8k_clip(path, seconds: float = 2.0, fps: int = 25):
    """A real two-second 7680x4320 H.264 clip of flat frames: a few hundred kB that decode to 2.5 gigapixels."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 7680, 4320, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "45"}
        frame = av.VideoFrame(7680, 4320, "yuv420p")
        for plane, value in zip(frame.planes, (90, 120, 140)):
            np.frombuffer(plane, np.uint8)[:] = value
        for index in range(int(seconds * fps)):
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose IHDR announces ``width`` x ``height`` (CRC fixed), the shape of a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    raw = bytearray(buffer.getvalue())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
    return bytes(raw)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("space_media")
    astronaut = data.astronaut()
    gray16 = folder / "astronaut_gray16.png"  # mode I;16: an RGB re-encode of the upload would lose the face
    Image.fromarray((np.asarray(Image.fromarray(astronaut).convert("L"), np.uint16) * 257)).save(gray16)
    assert Image.open(gray16).mode in ("I;16", "I")
    garbage = folder / "photo.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG " * 20)
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    bomb = folder / "bomb.png"  # a tiny file whose header announces 40000 x 40000 pixels
    bomb.write_bytes(png_claiming(40000, 40000))
    video = write_video(folder / "astronaut.mp4", [astronaut[::2, ::2]] * 8, fps=10)
    not_a_video = folder / "notes.mp4"
    not_a_video.write_text("these are meeting notes, not a video\n")
    empty_video = folder / "empty.mp4"
    empty_video.write_bytes(b"")
    photo = folder / "astronaut.jpg"
    Image.fromarray(astronaut).save(photo)
    return {"gray16": gray16, "garbage": garbage, "empty": empty, "bomb": bomb, "video": video,
            "not_a_video": not_a_video, "empty_video": empty_video, "photo": photo,
            "clip_8k": write_8k_clip(folder / "clip_8k.mp4")}


@pytest.fixture(scope="module")
def space(tmp_path_factory, save_space_model):
    model_dir = save_space_model(tmp_path_factory.mktemp("model") / "abaw-tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = space_app.AffectSpace(str(model_dir), limits=space_app.Limits(max_upload_mb=5, max_video_seconds=3))
    yield space
    space.pipeline.close()


@pytest.fixture(scope="module")
def client(space, served_space):
    with served_space(space) as url:
        yield Client(url, verbose=False, analytics_enabled=False)


def test_a_16_bit_grayscale_photo_reaches_our_decoder_as_uploaded(client, media):
    text = status(client.predict(handle_file(media["gray16"]), api_name="/analyse_image"))
    assert text.startswith("✅ 1 frame (1 with a face)"), text


@pytest.mark.parametrize("kind,api,words", [
    ("garbage", "/analyse_image", ["photo.jpg"]),
    ("empty", "/analyse_image", ["empty.png", "empty"]),
    ("bomb", "/analyse_image", ["bomb.png", "too large", "decompression bomb"]),
    ("video", "/analyse_image", ["astronaut.mp4"]),
    ("not_a_video", "/analyse_video", ["notes.mp4", "not a video"]),
    ("empty_video", "/analyse_video", ["empty.mp4", "empty"]),
    ("photo", "/analyse_video", ["astronaut.jpg"]),
    ("clip_8k", "/analyse_video", ["clip_8k.mp4", "7680x4320", "megapixels per second"]),
])
def test_every_bad_upload_is_our_message_in_the_page(client, media, kind, api, words):
    text = status(client.predict(handle_file(media[kind]), api_name=api))
    assert text.startswith("❌"), text
    for word in words:
        assert word in text, (word, text)
    assert "upstream" not in text.lower() and "Traceback" not in text


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ABAW_SPACE_MAX_PIXELS_PER_SECOND", "1e6")
    monkeypatch.setenv("ABAW_SPACE_MAX_TOTAL_PIXELS", "5e6")
    monkeypatch.setenv("ABAW_SPACE_MAX_CONCURRENT", "2")
    limits = space_app.Limits.from_env()
    assert (limits.max_pixels_per_second, limits.max_total_pixels, limits.max_concurrent) == (1e6, 5e6, 2)
    assert set(space_app.LIMIT_VARIABLES.values()) >= {"ABAW_SPACE_MAX_PIXELS_PER_SECOND", "ABAW_SPACE_MAX_TOTAL_PIXELS"}
    monkeypatch.setenv("ABAW_SPACE_MAX_TOTAL_PIXELS", "lots")
    with pytest.raises(SystemExit, match="ABAW_SPACE_MAX_TOTAL_PIXELS"):
        space_app.Limits.from_env()


def test_a_total_pixel_cap_refuses_a_small_but_long_clip(space, media):
    small = space_app.Limits(max_upload_mb=5, max_video_seconds=3, max_total_pixels=100_000)
    capped = space_app.AffectSpace(space.model_id, pipeline=space.pipeline, limits=small)
    results = list(capped.analyse_video(str(media["video"])))
    assert results[-1][0].startswith("❌") and "megapixels in all" in results[-1][0]


def _wait_for_a_running_analysis(space, seconds: float = 120.0) -> None:
    """Until the submitted request holds its visitor slot (it then waits for the networks, held by the test)."""
    deadline = time.monotonic() + seconds
    while not space.active_visitors:
        assert time.monotonic() < deadline, "the first request never started"
        time.sleep(0.05)


def test_an_8k_clip_is_refused_at_once_while_another_request_is_answered(space, client, media):
    with space.lock:  # the networks are busy: the normal request is admitted and waits for them
        job = client.submit(handle_file(media["video"]), api_name="/analyse_video")
        _wait_for_a_running_analysis(space)
        started = time.monotonic()
        refused = status(Client(client.src, verbose=False, analytics_enabled=False).predict(
            handle_file(media["clip_8k"]), api_name="/analyse_video"))
        elapsed = time.monotonic() - started
        assert not job.done()
    assert refused.startswith("❌") and "megapixels per second" in refused, refused
    assert elapsed < 5.0, f"the 8K clip was refused after {elapsed:.1f} s"  # the explicit requirement
    answered = status(job.result(timeout=300))
    assert answered.startswith("✅ 8 frames"), answered


def test_one_analysis_at_a_time_per_visitor(space, client, media):
    with space.lock:
        job = client.submit(handle_file(media["video"]), api_name="/analyse_video")
        _wait_for_a_running_analysis(space)
        assert space.active_visitors == {"127.0.0.1"}  # the visitor is told by the request gradio passes in
        second = status(client.predict(handle_file(media["photo"]), api_name="/analyse_image"))
        third = status(client.predict(handle_file(media["video"]), api_name="/analyse_video"))
    assert second.startswith("❌") and "still being analysed" in second, second
    assert third.startswith("❌") and "still being analysed" in third, third
    assert status(job.result(timeout=300)).startswith("✅ 8 frames")
    assert not space.active_visitors  # the slot is free again
    assert status(client.predict(handle_file(media["photo"]), api_name="/analyse_image")).startswith("✅")
