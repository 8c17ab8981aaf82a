"""The README's ABAW workflow, run as a user runs it: the commands between the README's workflow markers, through the
real console scripts, in a folder laid out like the challenge's data (``tests/abaw_fixture.py``: real aligned faces,
annotation files, MTL.txt, official-layout checkpoints). Each step's result is checked before the next one reads it,
and the submission is checked byte by byte against MTL.txt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from abaw_fixture import REPO, build_abaw_folder

README = REPO / "README.md"
START, END = "<!-- workflow:start -->", "<!-- workflow:end -->"

# The only changes the test makes to the README's commands: the training command gets these size knobs appended
# (later flags override the YAML's), and `scripts/` and `configs/` resolve to the repository's folders through
# links in the working folder, so the README's relative paths are used unchanged.
TRAINING_SIZE_KNOBS = ["--epochs", "1", "--hidden_size", "32", "--num_hidden_layers", "1", "--batch_size", "8"]
LINKED_FROM_REPO = ("scripts", "configs")
STEP_TIMEOUT_S = 600


def readme_workflow(text: str) -> list[list[str]]:
    """The commands of the marked README block: `\\` continuations joined, comments and the fence dropped."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise AssertionError(f"README.md needs exactly one {START} ... {END} block")
    block = text.split(START, 1)[1].split(END, 1)[0]
    fenced = re.search(r"```(?:bash|sh|console)?\n(.*?)```", block, flags=re.S)
    assert fenced, "the workflow block is not a fenced code block"
    joined = re.sub(r"\\\n", " ", fenced.group(1))
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [command for command in commands if command]


def step_name(command: list[str]) -> str:
    if command[:2] == ["accelerate", "launch"] and "scripts/train.py" in command:
        return "train"
    if command[0] == "abaw-hf" and len(command) > 1:
        if command[1] == "submit" and "--check" in command:
            return "check"
        if command[1] == "extract":
            return f"extract {option(command, '--split')}"
        return command[1]
    return command[0]


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from: {shlex.join(command)}"
    return command[command.index(flag) + 1]


def test_readme_workflow_block_is_the_whole_sequence():
    """The marked block holds every step, in order, on one feature set (so the workflow test covers them all)."""
    steps = [step_name(command) for command in readme_workflow(README.read_text())]
    assert steps == ["extract train", "extract validation", "extract test", "train", "evaluate", "tune", "submit", "check"]


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_step(command: list[str], cwd: Path, env: dict, timings: dict) -> str:
    # wall time, and CPU time of the command and its children (steadier than wall time on a shared machine)
    started, cpu_started = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    timings[step_name(command)] = (time.perf_counter() - started, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_started)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{shlex.join(command)} exited {result.returncode}:\n{output[-4000:]}"
    return result.stdout


def read_annotation_columns(path: Path) -> dict[tuple[str, int], list[str]]:
    rows = {}
    for line in path.read_text().splitlines()[1:]:
        image, *cells = line.split(",")
        video, frame = image.split("/")
        rows[(video, int(frame.removesuffix(".jpg")))] = cells
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_features(work: Path, fixture, extractors: dict[str, tuple[str, str | None, str | None]]) -> None:
    """The three extract runs made one DatasetDict whose rows are the listed frames, labels as annotated."""
    import datasets

    from abaw_hf.data.schema import read_metadata

    data = datasets.load_from_disk(str(work / "features"))
    assert isinstance(data, datasets.DatasetDict)
    assert set(data) == {"train", "validation", "test"}
    dims = {"resnet18": 512, "poster2": 768, "fau": 17}
    for split in ("train", "validation", "test"):
        table = data[split]
        listed = [(image.split("/")[0], int(image.split("/")[1][:5])) for image in fixture.rows(split)]
        assert list(zip(table["video"], table["frame"])) == sorted(listed), split  # sorted by (video, frame)
        for column in extractors:
            assert table.features[column].length == dims[column]
            vectors = np.asarray(table.with_format("numpy")[column], dtype=np.float32)
            assert np.isfinite(vectors).all() and vectors.std(axis=0).max() > 0, (split, column)
        provenance = read_metadata(table)["extractors"]
        for column, (_, variant, checkpoint) in extractors.items():
            assert provenance[column]["random_init"] is False
            if checkpoint:  # the official-layout file was loaded, not random weights
                assert provenance[column]["checkpoint"] == checkpoint
                assert provenance[column]["sha256"] == sha256(work / checkpoint)
            if variant:
                assert provenance[column]["variant"] == variant
    # labels, missing markers included, come through as annotated
    for split, file_name in (("train", "training_set_annotations.txt"), ("validation", "validation_set_annotations.txt")):
        annotated = read_annotation_columns(work / file_name)
        table = data[split].with_format(None)
        for video, frame, valence, expression, aus in zip(
            table["video"], table["frame"], table["valence"], table["expression"], table["aus"]
        ):
            cells = annotated[(video, frame)]
            assert valence == pytest.approx(float(cells[0]), abs=1e-6)
            assert expression == int(cells[2])
            assert aus == [int(c) for c in cells[3:]]
        assert -5 in table["valence"] and -1 in table["expression"] and any(-1 in row for row in table["aus"])
    # the grayscale test video was converted, and nothing was dropped
    report = json.loads((work / "features" / "test" / "extraction_report.json").read_text())
    assert report["complete"] and report["rows"] == len(fixture.rows("test"))
    assert not report["failed_files"] and not report["missing_images"]
    assert report["runtime"] == {"resnet18": "onnxruntime", "poster2": "torch", "fau": "own"}  # --runtime auto on CPU
    assert len(report["converted_files"]) == len(fixture.images["video30"])


def check_model(model_dir: Path, work: Path, extractors: dict) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["feature_names"] == list(extractors)
    assert {name: config["feature_dims"][name] for name in extractors} == {"resnet18": 512, "poster2": 768, "fau": 17}
    assert (model_dir / "model.safetensors").stat().st_size > 0
    # the model records which checkpoint files made its input features
    for column, (_, _, checkpoint) in extractors.items():
        if checkpoint:
            assert config["extractors"][column]["sha256"] == sha256(work / checkpoint)


def check_metrics(metrics: dict, frames: int) -> None:
    assert metrics["num_frames"] == frames
    expected = (metrics["ccc_valence"] + metrics["ccc_arousal"]) / 2 + metrics["f1_expression"] + metrics["f1_au"]
    assert metrics["p_mtl"] == pytest.approx(expected)
    assert -1 <= metrics["ccc_valence"] <= 1 and -1 <= metrics["ccc_arousal"] <= 1
    assert 0 <= metrics["f1_expression"] <= 1 and 0 <= metrics["f1_au"] <= 1


def check_submission(path: Path, test_list: Path) -> None:
    """The ABAW MTL submission format, read as bytes: MTL.txt's header, its frames in its order, \\n endings."""
    raw, listed = path.read_bytes(), test_list.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n") and not raw.endswith(b"\n\n")
    lines = raw.decode("ascii").split("\n")[:-1]
    list_lines = listed.decode("ascii").splitlines()
    assert lines[0] == list_lines[0] == "image,valence,arousal,expression,aus"
    images = [line.split(",", 1)[0] for line in list_lines[1:] if line.strip()]
    assert [line.split(",", 1)[0] for line in lines[1:]] == images  # one row per listed frame, listed order
    row = re.compile(r"^[^,]+,(-?\d\.\d{6}),(-?\d\.\d{6}),([0-7])(,[01]){12}$")
    for number, line in enumerate(lines[1:], start=2):
        match = row.match(line)
        assert match, f"{path.name}:{number}: {line!r}"
        valence, arousal = float(match.group(1)), float(match.group(2))
        assert -1 <= valence <= 1 and -1 <= arousal <= 1


@pytest.fixture
def workflow_env(tmp_path):
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # the venv's abaw-hf and accelerate, as an activated venv has them
    env.update(
        PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HOME=str(tmp_path / "hf_home"),  # no accelerate config of this machine's user leaks in
    )
    return env


def test_readme_workflow_runs_end_to_end(tmp_path, workflow_env, capsys):
    commands = readme_workflow(README.read_text())
    work = tmp_path / "abaw7"
    timings = {}
    started, cpu_started = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    fixture = build_abaw_folder(work)
    timings["fixture"] = (time.perf_counter() - started, cpu_seconds(resource.RUSAGE_SELF) - cpu_started)
    for name in LINKED_FROM_REPO:
        (work / name).symlink_to(REPO / name, target_is_directory=True)
    try:
        steps = {step_name(command): command for command in commands}
        from abaw_hf.specs import parse_extractor_spec

        train_extract = steps["extract train"]
        specs = [parse_extractor_spec(train_extract[i + 1]) for i, t in enumerate(train_extract) if t == "--extractor"]
        extractors = {name: (name, variant, checkpoint) for name, variant, checkpoint in specs}
        assert set(extractors) == {"resnet18", "poster2", "fau"}
        model_dir = work / option(steps["evaluate"], "--model")

        for command in commands:
            name = step_name(command)
            if name == "train":
                command = command + TRAINING_SIZE_KNOBS
            stdout = run_step(command, work, workflow_env, timings)

            if name.startswith("extract"):  # each split joins the one feature set
                done = [step.split()[1] for step in timings if step.startswith("extract")]
                assert json.loads((work / "features" / "dataset_dict.json").read_text())["splits"] == done
            if name == "extract test":
                check_features(work, fixture, extractors)
            elif name == "train":
                check_model(model_dir, work, extractors)
                assert json.loads((model_dir / "eval_results.json").read_text())  # best epoch's validation metrics
            elif name == "evaluate":
                check_metrics(json.loads((work / option(command, "--output")).read_text()), len(fixture.rows("validation")))
            elif name == "tune":
                config = json.loads((model_dir / "config.json").read_text())
                assert len(config["au_thresholds"]) == 12 and all(0 < t < 1 for t in config["au_thresholds"])
                chosen = json.loads((model_dir / "postprocessing.json").read_text())
                assert chosen["au_thresholds"] == config["au_thresholds"] and chosen["smoothing_sigma"] >= 0
                tuned_sigma = chosen["smoothing_sigma"]
            elif name == "submit":
                check_submission(work / option(command, "-o"), work / option(command, "--test-list"))
                assert f"{len(fixture.rows('test'))} rows" in stdout
                assert f"smoothing σ={tuned_sigma:g} frames" in stdout  # submit applies what tune chose
            elif name == "check":
                assert "valid ABAW MTL submission" in stdout
    finally:
        for checkpoint in fixture.checkpoints.values():
            checkpoint.unlink(missing_ok=True)  # 280 MB of random weights; keep the rest of the folder to look at
        wall = time.perf_counter() - started
        with capsys.disabled():  # the README's timing table comes from this line
            steps = ", ".join(f"{k} {w:.1f}/{c:.1f}" for k, (w, c) in timings.items())
            print(f"\nworkflow timings, wall/CPU s: {steps}; total wall {wall:.1f}")
