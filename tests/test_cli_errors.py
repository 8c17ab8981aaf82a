"""Bad input across the command line: a message naming the file, row or flag, exit status 2, no traceback.

One table drives every `abaw-hf` subcommand in process (fast); a few rows also run through the installed
console script, and `--debug` shows the traceback. Where a command would overwrite something, the test checks
that what was there before is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from abaw_hf.cli import main as cli_main
from abaw_hf.data.synthetic import make_synthetic_dataset
from abaw_hf.extractors import create_extractor
from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel

ROOT = Path(__file__).resolve().parents[1]
HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
AUS = ",".join(["0"] * 12)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace with good inputs (a feature set, a model, frames, annotations) and many broken ones."""
    root = tmp_path_factory.mktemp("bad_inputs")
    data = make_synthetic_dataset(num_videos=5, frames_per_video=40)
    data.save_to_disk(str(root / "features"))
    unlabelled = data["validation"].map(
        lambda row: {"valence": -5.0, "arousal": -5.0, "expression": -1, "aus": [-1] * 12}
    )
    unlabelled.save_to_disk(str(root / "test_only"))
    config = AbawFusionConfig(feature_dims={"fau": 17}, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              mlp_ratio=2.0, max_window=64)
    AbawFusionModel(config).save_pretrained(root / "model")
    needs_missing = AbawFusionConfig(feature_dims={"vgg": 32}, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, mlp_ratio=2.0, max_window=64)
    AbawFusionModel(needs_missing).save_pretrained(root / "model_vgg")
    (root / "no_config").mkdir()
    shutil.copytree(root / "model", root / "bad_json")
    (root / "bad_json" / "config.json").write_text("{not json")
    shutil.copytree(root / "model", root / "bad_type")
    bad = json.loads((root / "bad_type" / "config.json").read_text())
    bad["hidden_size"] = "sixteen"
    (root / "bad_type" / "config.json").write_text(json.dumps(bad))
    shutil.copytree(root / "model", root / "bad_variant")
    bad = json.loads((root / "bad_variant" / "config.json").read_text())
    bad["extractors"] = {"fau": {"name": "fau", "variant": "webcam", "dim": 17}}
    (root / "bad_variant" / "config.json").write_text(json.dumps(bad))

    # frames and annotation files in ABAW's format
    face = np.asarray(Image.fromarray(astronaut()[20:280, 120:380]).resize((112, 112)))
    (root / "frames" / "vid1").mkdir(parents=True)
    for frame in (1, 2, 3):
        Image.fromarray(face).save(root / "frames" / "vid1" / f"{frame:05d}.jpg")
    good_rows = [f"vid1/{frame:05d}.jpg,0.1,0.2,3,{AUS}" for frame in (1, 2, 3)]
    (root / "train.txt").write_text("\n".join([HEADER, *good_rows]) + "\n")
    (root / "latin1.txt").write_bytes(("\n".join([HEADER, f"vidé/00001.jpg,0.1,0.2,3,{AUS}"]) + "\n").encode("latin-1"))
    (root / "bad_frame.txt").write_text("\n".join([HEADER, good_rows[0], f"vid1/abcde.jpg,0.1,0.2,3,{AUS}"]) + "\n")
    (root / "huge_frame.txt").write_text("\n".join([HEADER, f"vid1/99999999999.jpg,0.1,0.2,3,{AUS}"]) + "\n")
    (root / "bad_label.txt").write_text("\n".join([HEADER, f"vid1/00001.jpg,0.1,0.2,9,{AUS}"]) + "\n")
    (root / "no_image.txt").write_text("\n".join([HEADER, *good_rows, f"vid1/00042.jpg,0.1,0.2,3,{AUS}"]) + "\n")
    (root / "MTL.txt").write_text("image,valence,arousal,expression,aus\n" + "".join(
        f"{video}/{frame:05d}.jpg,\n" for video, frame in zip(unlabelled["video"], unlabelled["frame"])))
    (root / "MTL_bad_header.txt").write_text("image,aus\nvid1/00001.jpg,\n")
    (root / "submission_bad.txt").write_text("image,valence,arousal,expression,aus\nwrong/00001.jpg,2.0,0,9,1\n")
    (root / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    (root / "garbage.pth").write_bytes(b"not a torch file")
    torch.save({"state_dict": {"module.other.weight": torch.zeros(3)}}, root / "wrong_keys.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        extractor = create_extractor("resnet18")
    torch.save({"state_dict": {f"module.{k}": v for k, v in extractor.state_dict().items()}}, root / "resnet18.pth")
    (root / "not_a_video.mp4").write_text("hello")
    (root / "a_file").write_text("a file, not a folder")
    (root / "occupied").mkdir()
    (root / "occupied" / "notes.txt").write_text("mine")
    (root / "out_dir").mkdir()
    (root / "photo.jpg").write_bytes((root / "frames" / "vid1" / "00001.jpg").read_bytes())
    return root


def _cases():
    """(id, argv with {ws} for the workspace, words the message must contain)."""
    model, feats = "{ws}/model", "{ws}/features"
    extract = ["extract", "--frames", "{ws}/frames", "--annotations", "{ws}/train.txt"]
    resnet = ["--extractor", "resnet18={ws}/resnet18.pth"]
    return [
        # build
        ("build-nothing", ["build", "--output", "{ws}/b1"], ["nothing to build"]),
        ("build-missing-annotations", ["build", "--annotations", "train={ws}/nope.txt", "--features", "fau=x.npy",
                                       "--output", "{ws}/b2"], ["nope.txt"]),
        ("build-annotations-folder", ["build", "--annotations", "train={ws}/frames", "--features", "fau=x.npy",
                                      "--output", "{ws}/b3"], ["frames", "folder"]),
        ("build-annotations-latin1", ["build", "--annotations", "train={ws}/latin1.txt", "--features", "fau=x.npy",
                                      "--output", "{ws}/b4"], ["latin1.txt", "UTF-8"]),
        ("build-bad-frame-number", ["build", "--annotations", "train={ws}/bad_frame.txt", "--features", "fau=x.npy",
                                    "--output", "{ws}/b5"], ["bad_frame.txt:3"]),
        ("build-frame-out-of-range", ["build", "--annotations", "train={ws}/huge_frame.txt", "--features",
                                      "fau=x.npy", "--output", "{ws}/b6"], ["huge_frame.txt:2", "frame"]),
        ("build-bad-label", ["build", "--annotations", "train={ws}/bad_label.txt", "--features", "fau=x.npy",
                             "--output", "{ws}/b7"], ["bad_label.txt:2", "expression"]),
        ("build-split-path", ["build", "--annotations", "../up={ws}/train.txt", "--features", "fau=x.npy",
                              "--output", "{ws}/b8"], ["--annotations", "../up"]),
        ("build-pair-syntax", ["build", "--annotations", "train", "--output", "{ws}/b9"], ["--annotations", "NAME=VALUE"]),
        ("build-synthetic-too-small", ["build", "--synthetic", "--scale", "0.01", "--output", "{ws}/b10"], ["--scale"]),
        ("build-output-is-file", ["build", "--synthetic", "--output", "{ws}/a_file"], ["a_file", "file"]),
        ("build-output-occupied", ["build", "--synthetic", "--scale", "0.1", "--output", "{ws}/occupied"],
         ["occupied", "notes.txt", "abaw_hf wrote"]),
        ("build-overwrite-foreign-folder", ["build", "--synthetic", "--scale", "0.1", "--output", "{ws}/occupied",
                                            "--overwrite"], ["occupied", "notes.txt", "abaw_hf wrote"]),
        ("build-missing-npy", ["build", "--annotations", "train={ws}/train.txt", "--features", "fau={ws}/nope.npy",
                               "--output", "{ws}/b11"], ["nope.npy"]),
        ("build-garbage-npy", ["build", "--annotations", "train={ws}/train.txt", "--features",
                               "fau={ws}/garbage.npy", "--output", "{ws}/b12"], ["garbage.npy"]),
        ("build-missing-openface", ["build", "--annotations", "train={ws}/train.txt", "--openface-dir",
                                    "{ws}/no_such_dir", "--output", "{ws}/b13"], ["no_such_dir"]),
        # train (the flags of scripts/train.py)
        ("train-bad-value", ["train", "--epochs", "0", "--output_dir", "{ws}/t1"], ["epochs must be >= 1"]),
        ("train-missing-config", ["train", "--config", "{ws}/nope.yaml", "--output_dir", "{ws}/t2"], ["nope.yaml"]),
        # extract
        ("extract-no-source", ["extract", *resnet, "--output", "{ws}/e1"], ["--frames", "--video"]),
        ("extract-missing-frames", ["extract", "--frames", "{ws}/nowhere", "--annotations", "{ws}/train.txt", *resnet,
                                    "--output", "{ws}/e2"], ["nowhere"]),
        ("extract-missing-annotations", ["extract", "--frames", "{ws}/frames", "--annotations", "{ws}/nope.txt",
                                         *resnet, "--output", "{ws}/e3"], ["nope.txt"]),
        ("extract-latin1-annotations", ["extract", "--frames", "{ws}/frames", "--annotations", "{ws}/latin1.txt",
                                        *resnet, "--output", "{ws}/e4"], ["latin1.txt", "UTF-8"]),
        ("extract-unknown-extractor", [*extract, "--extractor", "vgg16=x.pth", "--output", "{ws}/e5"], ["vgg16"]),
        ("extract-missing-checkpoint", [*extract, "--extractor", "resnet18={ws}/nope.pth", "--output", "{ws}/e6"],
         ["nope.pth"]),
        ("extract-garbage-checkpoint", [*extract, "--extractor", "resnet18={ws}/garbage.pth", "--output", "{ws}/e7"],
         ["garbage.pth"]),
        ("extract-wrong-keys", [*extract, "--extractor", "resnet18={ws}/wrong_keys.pth", "--output", "{ws}/e8"],
         ["wrong_keys.pth", "missing"]),
        ("extract-no-checkpoint", [*extract, "--extractor", "resnet18", "--output", "{ws}/e9"], ["--random-init"]),
        ("extract-batch-zero", [*extract, *resnet, "--batch-size", "0", "--output", "{ws}/e10"], ["--batch-size"]),
        ("extract-split-path", [*extract, *resnet, "--output", "{ws}/e11", "--split", "../x"], ["--split", "../x"]),
        ("extract-output-is-file", [*extract, *resnet, "--output", "{ws}/a_file"], ["a_file", "file"]),
        ("extract-output-occupied", [*extract, *resnet, "--output", "{ws}/occupied"], ["occupied", "notes.txt"]),
        ("extract-overwrite-foreign-folder", [*extract, *resnet, "--output", "{ws}/occupied", "--overwrite"],
         ["occupied", "notes.txt", "abaw_hf wrote"]),
        ("extract-missing-images", ["extract", "--frames", "{ws}/frames", "--annotations", "{ws}/no_image.txt",
                                    *resnet, "--output", "{ws}/e12"], ["00042", "--allow-missing-images"]),
        ("extract-missing-video", ["extract", "--video", "{ws}/nope.mp4", *resnet, "--output", "{ws}/e13"],
         ["nope.mp4"]),
        ("extract-not-a-video", ["extract", "--video", "{ws}/not_a_video.mp4", *resnet, "--output", "{ws}/e14"],
         ["not_a_video.mp4"]),
        ("extract-onnx-dir-with-torch", [*extract, *resnet, "--runtime", "torch", "--onnx-dir", "{ws}/out_dir",
                                         "--output", "{ws}/e16"], ["--onnx-dir", "--runtime torch"]),
        ("extract-input-size-syntax", [*extract, *resnet, "--input-size", "resnet18=big", "--output", "{ws}/e15"],
         ["--input-size"]),
        # evaluate
        ("evaluate-missing-model", ["evaluate", "--model", "{ws}/nope", "--data", feats], ["nope"]),
        ("evaluate-model-without-config", ["evaluate", "--model", "{ws}/no_config", "--data", feats],
         ["no_config", "config.json"]),
        ("evaluate-unknown-hub-id", ["evaluate", "--model", "nobody/no-such-model", "--data", feats],
         ["nobody/no-such-model"]),
        ("evaluate-model-is-file", ["evaluate", "--model", "{ws}/model/config.json", "--data", feats],
         ["config.json", "file"]),
        ("evaluate-config-not-json", ["evaluate", "--model", "{ws}/bad_json", "--data", feats], ["bad_json"]),
        ("evaluate-config-wrong-type", ["evaluate", "--model", "{ws}/bad_type", "--data", feats],
         ["bad_type", "hidden_size"]),
        ("evaluate-missing-data", ["evaluate", "--model", model, "--data", "{ws}/nodata"], ["nodata"]),
        ("evaluate-data-is-file", ["evaluate", "--model", model, "--data", "{ws}/train.txt"], ["train.txt", "file"]),
        ("evaluate-no-such-split", ["evaluate", "--model", model, "--data", feats, "--split", "test"],
         ["test", "validation"]),
        ("evaluate-output-is-dir", ["evaluate", "--model", model, "--data", feats, "--output", "{ws}/out_dir"],
         ["--output", "out_dir"]),
        ("evaluate-feature-missing", ["evaluate", "--model", "{ws}/model_vgg", "--data", feats], ["vgg"]),
        ("evaluate-no-labels", ["evaluate", "--model", model, "--data", "{ws}/test_only"], ["test_only", "label"]),
        ("evaluate-batch-zero", ["evaluate", "--model", model, "--data", feats, "--batch-size", "0"], ["--batch-size"]),
        # tune
        ("tune-missing-model", ["tune", "--model", "{ws}/nope", "--data", feats], ["nope"]),
        ("tune-no-labels", ["tune", "--model", model, "--data", "{ws}/test_only"], ["test_only", "label"]),
        # predict
        ("predict-missing-input", ["predict", "{ws}/nope.mp4", "--model", model, "-o", "{ws}/p.csv"], ["nope.mp4"]),
        ("predict-not-a-video", ["predict", "{ws}/not_a_video.mp4", "--model", model, "-o", "{ws}/p.csv"],
         ["not_a_video.mp4"]),
        ("predict-negative-max-frames", ["predict", "{ws}/photo.jpg", "--model", model, "-o", "{ws}/p.csv",
                                         "--max-frames", "-1"], ["--max-frames"]),
        ("predict-output-is-dir", ["predict", "{ws}/photo.jpg", "--model", model, "-o", "{ws}/out_dir"],
         ["out_dir"]),
        ("predict-checkpoint-syntax", ["predict", "{ws}/photo.jpg", "--model", model, "-o", "{ws}/p.csv",
                                       "--checkpoint", "resnet18"], ["--checkpoint"]),
        ("predict-unknown-variant", ["predict", "{ws}/photo.jpg", "--model", "{ws}/bad_variant", "-o", "{ws}/p.csv"],
         ["bad_variant", "webcam", "fau"]),
        ("predict-onnx-dir-with-torch", ["predict", "{ws}/photo.jpg", "--model", model, "-o", "{ws}/p.csv",
                                         "--runtime", "torch", "--onnx-dir", "{ws}/out_dir"], ["--onnx-dir"]),
        ("predict-onnx-dir-not-an-export", ["predict", "{ws}/photo.jpg", "--model", model, "-o", "{ws}/p.csv",
                                            "--onnx-dir", "{ws}/out_dir"], ["out_dir", "onnx_export.json"]),
        ("predict-missing-model", ["predict", "{ws}/photo.jpg", "--model", "{ws}/nope", "-o", "{ws}/p.csv"], ["nope"]),
        # submit
        ("submit-check-missing", ["submit", "--check", "{ws}/nope.txt", "--test-list", "{ws}/MTL.txt"], ["nope.txt"]),
        ("submit-check-bad-rows", ["submit", "--check", "{ws}/submission_bad.txt", "--test-list", "{ws}/MTL.txt"],
         ["submission_bad.txt"]),
        ("submit-test-list-latin1", ["submit", "--model", model, "--data", "{ws}/test_only", "--test-list",
                                     "{ws}/latin1.txt", "-o", "{ws}/s.txt"], ["latin1.txt"]),
        ("submit-test-list-header", ["submit", "--model", model, "--data", "{ws}/test_only", "--test-list",
                                     "{ws}/MTL_bad_header.txt", "-o", "{ws}/s.txt"], ["MTL_bad_header.txt"]),
        ("submit-output-is-dir", ["submit", "--model", model, "--data", "{ws}/test_only", "--test-list",
                                  "{ws}/MTL.txt", "-o", "{ws}/out_dir"], ["out_dir"]),
        ("submit-missing-flags", ["submit", "--test-list", "{ws}/MTL.txt"], ["--model"]),
        # export-onnx
        ("export-onnx-missing-model", ["export-onnx", "{ws}/nope", "-o", "{ws}/onnx1"], ["nope"]),
        ("export-onnx-output-is-file", ["export-onnx", model, "-o", "{ws}/a_file"], ["a_file"]),
        ("export-onnx-checkpoint-syntax", ["export-onnx", model, "-o", "{ws}/onnx2", "--checkpoint", "resnet18"],
         ["--checkpoint"]),
        # push (staging only: nothing here reaches the Hub)
        ("push-missing-model", ["push", "{ws}/nope", "--repo-id", "org/x", "--dry-run"], ["nope"]),
        ("push-bad-repo-id", ["push", model, "--repo-id", "not a repo id", "--dry-run",
                              "--staging-dir", "{ws}/staging"], ["not a repo id"]),
    ]


CASES = _cases()


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli_main(argv)
    except SystemExit as exit_:  # argparse's own errors exit(2) after printing usage
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,words", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_a_message(ws, capsys, argv, words):
    before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file() and p.parent.name in ("occupied", "model")}
    code, err = run_cli([arg.replace("{ws}", str(ws)) for arg in argv], capsys)
    assert code == 2, err
    assert "Traceback" not in err
    # the message: argparse's "error:" line, or ours ("abaw-hf CMD: error: ...") and at most two more lines
    prefix = f"abaw-hf {argv[0]}: error: "
    start = err.rfind(prefix)
    assert start >= 0, err
    assert len(err[start:].strip().splitlines()) <= 3, err
    for word in words:
        assert word.replace("{ws}", str(ws)) in err, f"{word!r} not in {err!r}"
    assert {p: p.read_bytes() for p in before} == before  # nothing that was there is changed


def test_table_covers_every_subcommand():
    from abaw_hf.cli import SUBCOMMANDS

    assert len(CASES) >= 40
    assert {case[1][0] for case in CASES} == set(SUBCOMMANDS)


@pytest.mark.parametrize("case", ["evaluate-model-without-config", "extract-missing-images", "predict-not-a-video"])
def test_console_script_message_and_debug_traceback(ws, case):
    argv = next(c[1] for c in CASES if c[0] == case)
    argv = [arg.replace("{ws}", str(ws)) for arg in argv]
    script = Path(sys.executable).with_name("abaw-hf")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    plain = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and f"abaw-hf {argv[0]}: error: " in plain.stderr
    debug = subprocess.run([str(script), *argv, "--debug"], capture_output=True, text=True, env=env, timeout=300)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
