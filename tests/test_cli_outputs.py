"""Nothing lost, nothing wrong in silence (issue 24), the bad-input table's neighbour:

* ownership by a marker only: a user's folder under every output flag is refused with a message listing what it
  holds, with and without --overwrite, and stays byte for byte as it was; so does a model in the Hub cache
  (symlinks to blobs), which `tune` never writes into (`tune --output` writes a real copy and says where);
* one writer per output: while a second process holds an output's lock, every command that writes it is refused
  naming that process (PID, start time), and the folder is unchanged;
* no silent wrong answers and the last tracebacks: each is a message and exit status 2, nothing changed.
"""

from __future__ import annotations

import hashlib
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

from abaw_hf import outputs
from abaw_hf.cli import main as cli_main
from abaw_hf.data.converters import FeatureTable, join_features
from abaw_hf.data.annotations import Annotations
from abaw_hf.data.synthetic import make_synthetic_dataset
from abaw_hf.errors import UserError
from abaw_hf.extractors import create_extractor
from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel

HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
AUS = ",".join(["0"] * 12)
# a user's folder holding, among their own files, every name an abaw_hf output holds
USER_FILES = {
    "thesis.tex": b"years of work", "results.xlsx": b"PK\x03\x04 spreadsheet", "work.json": b'{"fingerprint": "x"}',
    "build_manifest.json": b'{"complete": true}', "extraction_report.json": b"{}", "README.md": b"# my notes",
    "config.json": b"{}", "data/old-00000-of-00001.parquet": b"PAR1 the user's parquet",
}


def _tiny_config(**overrides) -> AbawFusionConfig:
    settings = dict(feature_dims={"fau": 17}, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    mlp_ratio=2.0, max_window=64)
    settings.update(overrides)
    return AbawFusionConfig(**settings)


def _edited_model(root: Path, name: str, **config_changes) -> Path:
    target = root / "models" / name
    shutil.copytree(root / "model", target)
    config = json.loads((target / "config.json").read_text())
    config.update(config_changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _hub_cache_model(root: Path, source: Path, repo: str = "models--org--abaw") -> Path:
    """The Hub cache's layout: snapshots/<rev>/<file> are symlinks to content-addressed blobs/<sha256>."""
    cache = root / "users" / "hub" / repo
    (cache / "blobs").mkdir(parents=True)
    snapshot = cache / "snapshots" / ("0123456789abcdef" * 2 + "01234567")
    snapshot.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        if file.is_file() and not file.name.startswith(outputs.MARKER):
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
            (cache / "blobs" / digest).write_bytes(file.read_bytes())
            (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(snapshot.name)
    return snapshot


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    make_synthetic_dataset(num_videos=5, frames_per_video=40).save_to_disk(str(root / "features"))
    torch.manual_seed(0)
    AbawFusionModel(_tiny_config()).save_pretrained(root / "model")
    (root / "models").mkdir()
    # frames and annotations for extract / build
    face = np.asarray(Image.fromarray(astronaut()[20:280, 120:380]).resize((112, 112)))
    (root / "frames" / "vid1").mkdir(parents=True)
    for frame in (1, 2, 3):
        Image.fromarray(face).save(root / "frames" / "vid1" / f"{frame:05d}.jpg")
    (root / "train.txt").write_text("\n".join([HEADER, *(f"vid1/{f:05d}.jpg,0.1,0.2,3,{AUS}" for f in (1, 2, 3))]) + "\n")
    np.save(root / "fau.npy", np.array({"vid1": {f: np.ones(17, np.float32) for f in (1, 2, 3)}}, dtype=object),
            allow_pickle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        extractor = create_extractor("resnet18")
    torch.save({"state_dict": extractor.state_dict()}, root / "resnet18.pth")

    # the user's things: never to be changed by any command below
    users = root / "users"
    for name, data in USER_FILES.items():
        (users / "thesis" / name).parent.mkdir(parents=True, exist_ok=True)
        (users / "thesis" / name).write_bytes(data)
    _hub_cache_model(root, root / "model")
    (users / "model").mkdir()  # a model folder of the user's: tune locks it, nothing else
    for file in (root / "model").iterdir():
        shutil.copy2(file, users / "model" / file.name)

    # broken things (item 6 and the silent wrong answers)
    for name, edit in {"nan_thresholds": {"au_thresholds": [float("nan")] * 12}, "hidden33": {"hidden_size": 33},
                       "layers_negative": {"num_hidden_layers": -1}, "hidden32": {"hidden_size": 32},
                       "layers3": {"num_hidden_layers": 3}}.items():
        _edited_model(root, name, **edit)
    truncated = _edited_model(root, "truncated")
    (truncated / "model.safetensors").write_bytes((root / "model" / "model.safetensors").read_bytes()[:500])
    garbage = _edited_model(root, "garbage")
    (garbage / "model.safetensors").write_bytes(b"\x00garbage, not safetensors" * 8)
    pickled = _edited_model(root, "pickled")
    (pickled / "model.safetensors").unlink()
    torch.save(AbawFusionModel(_tiny_config()).state_dict(), pickled / "pytorch_model.bin")
    (_edited_model(root, "bad_sigma") / "postprocessing.json").write_text('{"smoothing_sigma": -1}')
    (_edited_model(root, "bad_window") / "train_config.yaml").write_text("window: 0\n")

    features = make_synthetic_dataset(num_videos=5, frames_per_video=40)
    features.map(lambda row, index: {"fau": [float("nan")] * 17} if index == 3 else {},
                 with_indices=True).save_to_disk(str(root / "nan_features"))
    np.save(root / "empty_vectors.npy", np.array({"vid1": {f: np.zeros(0, np.float32) for f in (1, 2, 3)}},
                                                 dtype=object), allow_pickle=True)
    (root / "tasks").mkdir()
    (root / "tasks" / "vid1.txt").write_text("valence,arousal\n0.1,0.2\n")
    unlabelled = features["validation"]
    listed = [f"{v}/{f:05d}.jpg," for v, f in zip(unlabelled["video"][:5], unlabelled["frame"][:5])]
    (root / "MTL_dup.txt").write_text("image,valence,arousal,expression,aus\n" + "\n".join(listed + listed[:1]) + "\n")
    (root / "latin1_submission.txt").write_bytes("image,valence\nvidé/00001.jpg,0.1\n".encode("latin-1"))
    (root / "MTL.txt").write_text("image,valence,arousal,expression,aus\n" + "\n".join(listed) + "\n")
    return root


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and link under a folder: (link target) for links, (sha256) for files, () for folders."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            found[key] = ("dir",)
    return found


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def _fill(argv, ws: Path) -> list[str]:
    return [arg.replace("{ws}", str(ws)) for arg in argv]


SNAPSHOT = "users/hub/models--org--abaw/snapshots/" + "0123456789abcdef" * 2 + "01234567"
MODEL, FEATS = "{ws}/model", "{ws}/features"
EXTRACT = ["extract", "--frames", "{ws}/frames", "--annotations", "{ws}/train.txt",
           "--extractor", "resnet18={ws}/resnet18.pth", "--num-workers", "0", "--no-progress"]
BUILD = ["build", "--annotations", "train={ws}/train.txt", "--features", "fau={ws}/fau.npy"]
TINY_TRAIN = ["train", "--dataset", "{ws}/features", "--features", "fau", "--hidden_size", "16",
              "--num_hidden_layers", "1", "--num_attention_heads", "2", "--epochs", "1", "--no_progress", "--no_plot"]
THESIS = "{ws}/users/thesis"

# (id, argv, words the message must name); every row: exit 2, and nothing under users/ changes
CASES = [
    # 1. ownership by a marker only: the user's folder under every output flag, with and without --overwrite
    ("build-output", ["build", "--synthetic", "--scale", "0.1", "--output", THESIS], ["thesis.tex", "abaw_hf wrote"]),
    ("build-output-overwrite", ["build", "--synthetic", "--scale", "0.1", "--output", THESIS, "--overwrite"],
     ["thesis.tex", "work.json", "abaw_hf wrote"]),
    ("build-features-output", [*BUILD, "--output", THESIS, "--overwrite"], ["--output", "thesis.tex"]),
    ("build-parquet-dir", [*BUILD, "--output", "{ws}/new_build", "--parquet-dir", THESIS],
     ["--parquet-dir", "thesis.tex", "data/"]),
    ("extract-output", [*EXTRACT, "--output", THESIS], ["--output", "thesis.tex"]),
    ("extract-output-overwrite", [*EXTRACT, "--output", THESIS, "--overwrite"], ["--output", "build_manifest.json"]),
    ("extract-split-root", [*EXTRACT, "--output", THESIS, "--split", "train"], ["--output", "thesis.tex"]),
    ("train-output-dir", [*TINY_TRAIN, "--output_dir", THESIS], ["--output_dir", "thesis.tex", "config.json"]),
    ("train-output-dir-overwrite", [*TINY_TRAIN, "--output_dir", THESIS, "--overwrite"], ["--output_dir", "README.md"]),
    ("tune-output", ["tune", "--model", MODEL, "--data", FEATS, "--output", THESIS], ["--output", "thesis.tex"]),
    ("export-onnx-output", ["export-onnx", MODEL, "-o", THESIS], ["--output", "thesis.tex"]),
    ("push-staging-dir", ["push", MODEL, "--repo-id", "org/x", "--dry-run", "--synthetic", "--staging-dir", THESIS],
     ["--staging-dir", "thesis.tex"]),
    # a model in the Hub cache is never written: tune says where to write instead
    ("tune-hub-cache", ["tune", "--model", "{ws}/" + SNAPSHOT, "--data", FEATS], ["Hub-cache snapshot", "--output"]),
    ("tune-hub-cache-output-in-cache", ["tune", "--model", "{ws}/" + SNAPSHOT, "--data", FEATS, "--output",
                                        "{ws}/users/hub"], ["--output", "models--org--abaw"]),
    # 3. no silent wrong answers
    ("evaluate-nan-thresholds", ["evaluate", "--model", "{ws}/models/nan_thresholds", "--data", FEATS],
     ["nan_thresholds", "au_thresholds"]),
    ("submit-bad-smoothing", ["submit", "--model", "{ws}/models/bad_sigma", "--data", FEATS, "--split", "validation",
                              "--test-list", "{ws}/MTL.txt", "-o", "{ws}/s1.txt"], ["postprocessing.json", "smoothing_sigma"]),
    ("submit-bad-window", ["submit", "--model", "{ws}/models/bad_window", "--data", FEATS, "--split", "validation",
                           "--test-list", "{ws}/MTL.txt", "-o", "{ws}/s2.txt"], ["train_config.yaml", "window"]),
    ("build-split-twice", ["build", "--annotations", "train={ws}/train.txt", "--annotations", "train={ws}/MTL.txt",
                           "--features", "fau={ws}/fau.npy", "--output", "{ws}/b_twice"], ["'train'", "twice"]),
    ("build-test-split-twice", ["build", "--annotations", "test={ws}/train.txt", "--test-list", "{ws}/MTL.txt",
                                "--features", "fau={ws}/fau.npy", "--output", "{ws}/b_twice2"], ["'test'", "twice"]),
    ("submit-duplicate-rows", ["submit", "--model", MODEL, "--data", FEATS, "--split", "validation", "--test-list",
                               "{ws}/MTL_dup.txt", "-o", "{ws}/s3.txt"], ["MTL_dup.txt", "duplicate", "lines 2 and 7"]),
    # 6. the last tracebacks, and the misleading messages
    ("evaluate-truncated-safetensors", ["evaluate", "--model", "{ws}/models/truncated", "--data", FEATS],
     ["truncated", "model.safetensors is damaged"]),
    ("evaluate-garbage-safetensors", ["evaluate", "--model", "{ws}/models/garbage", "--data", FEATS],
     ["garbage", "model.safetensors is damaged"]),
    ("evaluate-pickled-weights", ["evaluate", "--model", "{ws}/models/pickled", "--data", FEATS],
     ["pytorch_model.bin", "pickle", "safetensors"]),
    ("evaluate-hidden-size-33", ["evaluate", "--model", "{ws}/models/hidden33", "--data", FEATS],
     ["config.json", "num_attention_heads=2"]),
    ("evaluate-hidden-size-32", ["evaluate", "--model", "{ws}/models/hidden32", "--data", FEATS],
     ["config.json", "hidden_size 32", "model.safetensors holds"]),
    ("evaluate-layers-negative", ["evaluate", "--model", "{ws}/models/layers_negative", "--data", FEATS],
     ["config.json", "num_hidden_layers must be >= 1, got -1"]),
    ("evaluate-layers-3", ["evaluate", "--model", "{ws}/models/layers3", "--data", FEATS],
     ["num_hidden_layers is 3", "holds 1 layer"]),
    ("build-unknown-task", ["build", "--task-dir", "valence={ws}/tasks", "--features", "fau={ws}/fau.npy",
                            "--output", "{ws}/b_task"], ["--task-dir", "'valence'", "va, expr, au"]),
    ("build-empty-vectors", ["build", "--annotations", "train={ws}/train.txt", "--features",
                             "fau={ws}/empty_vectors.npy", "--output", "{ws}/b_empty"], ["empty_vectors.npy", "0-length"]),
    ("evaluate-nan-features", ["evaluate", "--model", MODEL, "--data", "{ws}/nan_features"],
     ["'fau'", "NaN or Inf at video", "frame"]),
    ("train-nan-features", [*TINY_TRAIN[:2], "{ws}/nan_features", *TINY_TRAIN[3:], "--output_dir", "{ws}/t_nan"],
     ["NaN or Inf at video"]),
    ("build-feature-name-refused-by-config", ["build", "--annotations", "train={ws}/train.txt", "--features",
                                              "au units={ws}/fau.npy", "--output", "{ws}/b_name"],
     ["'au units'", "not a feature name"]),
    ("submit-check-not-utf8", ["submit", "--check", "{ws}/latin1_submission.txt", "--test-list", "{ws}/MTL.txt"],
     ["latin1_submission.txt:2", "UTF-8"]),
]


@pytest.mark.parametrize("argv,words", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_changes_nothing(ws, capsys, argv, words):
    before = snapshot(ws / "users")
    model_before = snapshot(ws / "model")
    created = {p for p in ws.iterdir()}
    code, err = run_cli(_fill(argv, ws), capsys)
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    prefix = f"abaw-hf {argv[0]}: error: "
    start = err.rfind(prefix)
    assert start >= 0, err[-3000:]
    assert len(err[start:].strip().splitlines()) <= 3, err[start:]
    for word in words:
        assert word.replace("{ws}", str(ws)) in err[start:], f"{word!r} not in {err[start:]!r}"
    assert snapshot(ws / "users") == before  # every file (and every link into the blobs) as it was
    assert snapshot(ws / "model") == model_before
    assert {p for p in ws.iterdir()} == created  # a refused command leaves no new folder behind


def test_every_output_flag_has_a_user_folder_row():
    flags = {" ".join(case[1]) for case in CASES if THESIS in case[1]}
    for command, flag in (("build", "--output"), ("build", "--parquet-dir"), ("extract", "--output"),
                          ("train", "--output_dir"), ("tune", "--output"), ("export-onnx", "-o"),
                          ("push", "--staging-dir")):
        assert any(text.startswith(command) and f"{flag} {THESIS}" in text for text in flags), (command, flag)


# ----- the marker rule itself --------------------------------------------------------------------------------


def test_only_the_marker_makes_a_folder_ours(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    for name in ("work.json", "build_manifest.json", "extraction_report.json", "README.md", "config.json"):
        (user / name).write_text("the user's")
    with pytest.raises(outputs.OutputFolderError, match="abaw_hf wrote.*README.md, build_manifest.json"):
        outputs.clear(user)
    assert sorted(p.name for p in user.iterdir()) == sorted(
        ["work.json", "build_manifest.json", "extraction_report.json", "README.md", "config.json"])
    empty = outputs.claim(tmp_path / "empty")  # new (or empty) folders become ours
    (empty / "old.arrow").write_text("ours")
    outputs.clear(empty)
    assert outputs.is_marked(empty) and outputs.entries(empty) == []
    link = tmp_path / "link"
    link.symlink_to(empty, target_is_directory=True)
    with pytest.raises(outputs.OutputFolderError, match="is a link"):
        outputs.claim(link)
    for bad in ("", "  "):
        with pytest.raises(UserError, match="empty path"):
            outputs.check_claimable(bad)


def test_empty_paths_in_the_python_api_are_refused(tmp_path, monkeypatch):
    from abaw_hf.data.storage import load_feature_data
    from abaw_hf.model_loading import load_fusion_model

    monkeypatch.chdir(tmp_path)  # '' must not mean this folder
    AbawFusionModel(_tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="empty path"):
        load_fusion_model("")
    with pytest.raises(UserError, match="empty path"):
        load_feature_data("")


def test_join_uses_video_and_frame_as_a_pair():
    # packed as (video_code << 32) | frame, video a's frame 2**32 + 5 was video b's frame 5
    rows = Annotations.unlabelled(["b", "b"], [5, 6])
    table = FeatureTable("x", np.array(["a", "b"]), np.array([2**32 + 5, 6], np.int64),
                         np.array([[1.0, 1.0], [2.0, 2.0]], np.float32), np.ones(2, bool))
    vectors, present, report = join_features(rows, [table], allow_missing=True)
    assert present["x"].tolist() == [False, True]
    assert vectors["x"].tolist() == [[0.0, 0.0], [2.0, 2.0]]
    assert report.missing_in_features["x"] == [("b", 5)] and report.unannotated_in_features["x"] == 1


def test_tune_writes_a_real_copy_of_a_hub_cache_model(ws, capsys):
    cache = ws / "users" / "hub"
    before = snapshot(cache)
    target = ws / "tuned_copy"
    code = cli_main(["tune", "--model", str(ws / SNAPSHOT), "--data", "synthetic", "--sigmas", "0", "1",
                     "--output", str(target)])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err[-2000:]
    assert f"saved a tuned copy of {ws / SNAPSHOT} to {target}" in out
    assert snapshot(cache) == before  # no blob changed, no link replaced
    assert not any(path.is_symlink() for path in target.iterdir())
    assert json.loads((target / "postprocessing.json").read_text())["smoothing_sigma"] in (0.0, 1.0)
    assert len(json.loads((target / "config.json").read_text())["au_thresholds"]) == 12
    assert outputs.is_marked(target)
    shutil.rmtree(target)


# ----- one writer per output: a second process holds the lock -------------------------------------------------

HOLDER = """
import sys
from abaw_hf import outputs
mode, folder = sys.argv[1], sys.argv[2]
hold = outputs.writing(folder, "--output", command="first writer") if mode == "claim" else outputs.locked(folder, "--model", command="first writer")
with hold:
    print("held", flush=True)
    sys.stdin.read()
"""


class Holder:
    """Another process holding an output folder's writer lock until `release` (no timing involved)."""

    def __init__(self, folder: Path, mode: str = "claim"):
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, mode, str(folder)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0


LOCKED = [  # (id, argv writing {out}, folder the holder locks: "out" (claimed) or the model folder)
    ("build", ["build", "--synthetic", "--scale", "0.1", "--output", "{out}", "--overwrite"], "claim"),
    ("build-parquet-dir", [*BUILD, "--output", "{out}_arrow", "--parquet-dir", "{out}"], "claim"),
    ("extract", [*EXTRACT, "--output", "{out}"], "claim"),
    ("extract-split", [*EXTRACT, "--output", "{out}_root", "--split", "train"], "claim-split"),
    ("train", [*TINY_TRAIN, "--output_dir", "{out}"], "claim"),
    ("tune-output", ["tune", "--model", MODEL, "--data", FEATS, "--output", "{out}"], "claim"),
    ("tune-in-place", ["tune", "--model", "{ws}/users/model", "--data", "synthetic"], "model"),
    ("export-onnx", ["export-onnx", MODEL, "-o", "{out}"], "claim"),
    ("push", ["push", MODEL, "--repo-id", "org/x", "--dry-run", "--synthetic", "--staging-dir", "{out}"], "claim"),
]


@pytest.mark.parametrize("argv,mode", [case[1:] for case in LOCKED], ids=[case[0] for case in LOCKED])
def test_a_second_writer_is_refused_naming_the_first(ws, tmp_path, capsys, argv, mode):
    out = tmp_path / "out"
    held = {"claim": out, "claim-split": tmp_path / "out_root" / "train", "model": ws / "users" / "model"}[mode]
    if mode == "claim-split":
        outputs.claim(held.parent)
    holder = Holder(held, "locked" if mode == "model" else "claim")
    try:
        if mode != "model":
            (held / "first.arrow").write_text("the first writer's work")  # what the first writer has written so far
        before = snapshot(held)
        users_before = snapshot(ws / "users")
        code, err = run_cli([arg.replace("{out}", str(out)) for arg in _fill(argv, ws)], capsys)
        assert code == 2, err[-3000:]
        assert "Traceback" not in err
        assert f"PID {holder.process.pid}, started " in err and "first writer" in err, err[-2000:]
        assert "being written by another abaw_hf process" in err
        assert snapshot(held) == before
        assert snapshot(ws / "users") == users_before
    finally:
        holder.release()
    if mode != "model":  # once the first writer is done, the folder is free again (and still ours)
        with outputs.locked(held):
            assert outputs.is_marked(held)
