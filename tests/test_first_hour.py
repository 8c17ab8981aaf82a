"""A new user's first hour (issue 26): every output says what it is in the same words, a video is truncated only
when frames are missing, third-party chatter stays quiet unless --debug, a missing default model is named where it
was looked for, the thread rule, and what `accelerate launch` adds to train.py's error. The first photo without
an export is tested in tests/test_onnx.py (`test_a_first_photo_never_waits_for_an_export`), the Space's API
status in tests/test_space.py, the README's shell blocks in tests/test_readme.py."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pytest

from abaw_hf.cli import main as cli_main
from abaw_hf.faces import TruncatedVideoError, iter_video_frames, probe_video
from abaw_hf.pipeline.inputs import VideoProblem, video_frames
from abaw_hf.status import weights_status
from abaw_hf.threads import THREADS_ENV, choose_threads, threads_for

DEMO_WORDS = weights_status(True, ["resnet18"])  # the Space tests' model: synthetic training, random resnet18


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, save_space_model):
    return save_space_model(tmp_path_factory.mktemp("first-hour") / "model")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path)
    return path


# ----- every output says what it is --------------------------------------------------------------------------


def test_status_words():
    assert DEMO_WORDS == "DEMO ONLY, not real affect: SYNTHETIC demo data; RANDOM weights for resnet18"
    assert weights_status(False, []) == "real data; every extractor with its weights"
    assert weights_status(None, ["eac", "poster"]) == "DEMO ONLY, not real affect: RANDOM weights for eac, poster"


def test_csv_stderr_dry_run_and_card_say_the_same_words(model_dir, photo, tmp_path, capsys, no_hub):
    output = tmp_path / "predictions.csv"
    assert cli_main(["predict", str(photo), "--model", str(model_dir), "-o", str(output)]) == 0
    err = capsys.readouterr().err
    table = pd.read_csv(output)
    assert table.columns[-1] == "weights" and table["weights"].tolist() == [DEMO_WORDS]
    assert f"weights: {DEMO_WORDS}" in err

    from abaw_hf.pipeline import AffectPipeline

    with pytest.warns(UserWarning):  # the library warns; the table says it too
        pipeline = AffectPipeline.from_pretrained(model_dir)
    assert pipeline(photo).attrs["weights"] == DEMO_WORDS
    pipeline.close()
    assert "Loading weights" not in err  # transformers' weight-loading bar: --debug only
    assert err.count("RANDOM WEIGHTS") == 1 and err.count("SYNTHETIC DEMO DATA") == 1  # one warning per cause

    assert cli_main(["push", str(model_dir), "--repo-id", "org/first-hour", "--staging-dir", str(tmp_path / "hub"),
                     "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"  weights: {DEMO_WORDS}\n" in out and "dry run: nothing uploaded" in out
    assert f"**Weights:** {DEMO_WORDS}" in (tmp_path / "hub" / "model" / "README.md").read_text()


def test_a_published_extractor_is_no_longer_random_in_the_card(model_dir, tmp_path):
    import warnings

    import torch

    from abaw_hf.extractors import create_extractor
    from abaw_hf.hub.staging import stage_model_repo

    checkpoint = tmp_path / "resnet18_msceleb.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights, saved as the checkpoint a user would publish
        torch.save({"state_dict": create_extractor("resnet18", random_seed=3).state_dict()}, checkpoint)
    staged = stage_model_repo(model_dir, tmp_path / "staged", repo_id="org/x",
                              extractor_checkpoints={"resnet18": checkpoint})
    assert staged.status == weights_status(True, []) == "DEMO ONLY, not real affect: SYNTHETIC demo data"


def test_dataset_card_says_what_the_features_are(tmp_path):
    from abaw_hf.data.publish import features_status, stage_parquet_folder
    from abaw_hf.data.synthetic import make_synthetic_dataset

    folder = stage_parquet_folder(make_synthetic_dataset(num_videos=5, frames_per_video=12), tmp_path / "hub")
    assert "**Weights:** DEMO ONLY, not real affect: SYNTHETIC demo data" in (folder / "README.md").read_text()
    real = {"extractors": {"resnet18": {"name": "resnet18", "random_init": False}, "poster2": {"random_init": True}}}
    assert features_status(real) == weights_status(False, ["poster2"])


# ----- a truncated video only when frames are missing --------------------------------------------------------


def _write_with_preroll(path, frames: int = 98, preroll: int = 3, fps: int = 25):
    """An intact MP4 whose first `preroll` frames lie before its edit list's start (as a cut without re-encoding
    leaves): the container counts `frames`, the decoder shows `frames - preroll`; every packet is in the file."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.options = {"bf": "0"}
        packets = []
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), index * 2 % 255, np.uint8), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            packets += stream.encode(frame)
        packets += stream.encode()
        for packet in packets:
            shift = int(Fraction(preroll, fps) / packet.time_base)
            packet.pts -= shift
            packet.dts -= shift
            container.mux(packet)
    return path


def test_an_intact_video_whose_container_over_announces_frames_is_not_truncated(tmp_path):
    video = _write_with_preroll(tmp_path / "cut_without_reencoding.mp4")
    assert probe_video(video).frames_expected == 98
    assert len(list(iter_video_frames(video))) == 95  # no TruncatedVideoError: every frame's data is there
    problem = VideoProblem()
    assert len(list(video_frames(video, problem))) == 95 and problem.error is None and problem.note(95) is None


def test_a_video_cut_short_is_still_truncated_and_the_frames_before_are_kept(tmp_path):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:  # its index first: it opens cut
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(40):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    with pytest.raises(TruncatedVideoError) as raised:
        list(iter_video_frames(cut))
    assert 0 < raised.value.frames_decoded < raised.value.frames_expected == 40
    problem = VideoProblem()
    kept = list(video_frames(cut, problem))
    assert problem.note(len(kept), "cut.mp4") == (
        f"cut.mp4: truncated: decoded {len(kept)} of the 40 frames the container announces - the table covers the "
        f"{len(kept)} frames decoded before it")


# ----- quiet unless --debug; paths as a user expects ---------------------------------------------------------


_BUILD_MEDIAPIPE = ("from abaw_hf.faces import FaceDetector\n"
                    "FaceDetector('mediapipe').close()\n"
                    "FaceDetector().close()  # the default: MTCNN, full-range BlazeFace (LiteRT), MediaPipe's mesh\n"
                    "print('built')")


@pytest.mark.parametrize("debug", [False, True], ids=["quiet", "debug"])
def test_mediapipe_native_log_lines_only_with_debug(debug):
    env = {key: value for key, value in os.environ.items() if key != "ABAW_HF_DEBUG"}
    if debug:
        env["ABAW_HF_DEBUG"] = "1"
    result = subprocess.run([sys.executable, "-c", _BUILD_MEDIAPIPE], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "built", result.stderr
    native = [line for line in result.stderr.splitlines()
              if line.startswith(("W0000", "I0000", "WARNING: Logging", "INFO: Created TensorFlow Lite"))]
    assert bool(native) is debug, result.stderr  # MediaPipe writes them here; --debug shows them


def test_a_missing_default_model_names_where_it_looked(tmp_path, photo, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a folder without outputs/abaw-fusion: `make demo` ran in the clone, not here
    monkeypatch.delenv("ABAW_MODEL_ID", raising=False)
    assert cli_main(["predict", str(photo), "-o", "out.csv"]) == 2
    err = capsys.readouterr().err
    assert f"the default outputs/abaw-fusion is not here ({tmp_path / 'outputs' / 'abaw-fusion'})" in err
    assert "--model" in err and "ABAW_MODEL_ID" in err and not (tmp_path / "out.csv").exists()


def test_train_under_accelerate_says_what_accelerate_adds(tmp_path, monkeypatch, capsys):
    from abaw_hf.cli.train import main as train_main

    missing = str(tmp_path / "nope.yaml")
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert train_main(["--config", missing]) == 2
    alone = capsys.readouterr().err.strip().splitlines()
    assert len(alone) == 1 and alone[0].startswith("train.py: error: --config") and "accelerate launch" not in alone[0]
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch` sets for its processes
    assert train_main(["--config", missing]) == 2
    launched = capsys.readouterr().err.strip().splitlines()
    assert launched[0] == alone[0] and "accelerate launch --quiet" in launched[-1]


# ----- threads from the cores free to the process ------------------------------------------------------------


def test_threads_follow_the_free_cores(monkeypatch):
    assert [threads_for(2, busy) for busy in (0.0, 0.3, 0.7, 1.0, 1.6, 2.0)] == [2, 2, 1, 1, 1, 1]
    assert threads_for(16, 4.0) == 12 and threads_for(16, 4.0, processes=4) == 3 and threads_for(4, 0.0, 8) == 1
    for name in (THREADS_ENV, "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    cores = len(os.sched_getaffinity(0))
    assert choose_threads(busy=0.0).threads == cores and choose_threads(busy=float(cores)).threads == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # accelerate launch: the processes share the cores
    assert choose_threads(busy=0.0).threads == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # set by the user, or by accelerate's --num_cpu_threads_per_process
    assert choose_threads(busy=0.0).threads == 3 and choose_threads(busy=0.0).source == "OMP_NUM_THREADS"
    monkeypatch.setenv(THREADS_ENV, "5")
    assert choose_threads(busy=99.0).threads == 5
