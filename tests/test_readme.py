"""The README is the contract: every shell block it shows pastes as is after its one set-up line.

The clone is copied to a fresh folder (the files git tracks, and new ones it does not ignore), `.venv` there is the
environment this test runs in, and each ```bash block runs, in the README's order, in its own `bash -e` after
exactly the set-up block's line (`source .venv/bin/activate`). A block that cannot run here carries, on the line
above its fence, `<!-- readme-test: skip: WHY -->`; the ABAW workflow block (between the workflow markers) is run
by tests/test_workflow.py. The test checks that only those are left out, that each says why, and that every file a
command writes with ``-o`` / ``--output`` is there afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SETUP_MARK = "<!-- readme-test: setup -->"
SKIP_MARK = re.compile(r"^<!-- readme-test: skip: (?P<why>.+?) -->$")
WORKFLOW_MARK = "<!-- workflow:start -->"  # tests/test_workflow.py runs that block
SETUP_LINE = "source .venv/bin/activate"


@dataclass(frozen=True)
class ShellBlock:
    line: int  # 1-based line of the opening fence
    mark: str  # the line above the fence ("" when none)
    text: str

    @property
    def skip_reason(self) -> str | None:
        match = SKIP_MARK.match(self.mark)
        if match:
            return match.group("why")
        if self.mark == WORKFLOW_MARK:
            return "run by tests/test_workflow.py"
        return None


def shell_blocks(text: str) -> list[ShellBlock]:
    """Every ```bash block of the README with the line above its fence."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
            above = lines[index - 1].strip() if index else ""
            blocks.append(ShellBlock(index + 1, above, "\n".join(lines[index + 1 : end])))
            index = end
        index += 1
    return blocks


def written_files(command: str) -> list[str]:
    """The files a block's commands name with -o / --output (what the user expects to find afterwards)."""
    joined = command.replace("\\\n", " ")
    lines = [line.split("#", 1)[0] for line in joined.splitlines()]
    return [match.group(1) for line in lines for match in re.finditer(r"(?:^|\s)(?:-o|--output)\s+(\S+)", line)]


def test_the_readme_marks_every_block_it_does_not_run():
    blocks = shell_blocks(README.read_text())
    setup = [block for block in blocks if block.mark == SETUP_MARK]
    assert len(setup) == 1 and setup[0].text.strip() == SETUP_LINE, "one set-up block: `source .venv/bin/activate`"
    assert blocks.index(setup[0]) < min(i for i, b in enumerate(blocks) if b.mark != SETUP_MARK and not b.skip_reason)
    for block in blocks:
        if block.mark.startswith("<!-- readme-test") and block.mark != SETUP_MARK:
            assert block.skip_reason and len(block.skip_reason) > 10, f"README.md:{block.line}: say why it is skipped"
    workflow = [block for block in blocks if block.mark == WORKFLOW_MARK]
    assert len(workflow) == 1  # the one block tests/test_workflow.py runs
    assert WORKFLOW_MARK in (REPO / "tests" / "test_workflow.py").read_text()
    runnable = [block for block in blocks if block.mark != SETUP_MARK and block.skip_reason is None]
    assert len(runnable) >= 2 and any("abaw-hf predict" in block.text for block in runnable)


def _fresh_copy(folder: Path) -> Path:
    """The clone's files as a fresh clone has them (plus new files git does not ignore), `.venv` = this test's."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        source = REPO / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    assert (folder / ".venv" / "bin" / "activate").is_file(), "the test runs inside a virtual environment"
    return folder


def test_readme_shell_blocks_paste_and_run_after_the_setup_line(tmp_path):
    blocks = [block for block in shell_blocks(README.read_text())
              if block.mark != SETUP_MARK and block.skip_reason is None]
    clone = _fresh_copy(tmp_path / "clone")
    env = {**os.environ, "ABAW_HF_ONNX_CACHE": str(tmp_path / "onnx-cache")}  # a fresh cache: nothing prepared
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    for block in blocks:
        result = subprocess.run(["bash", "-e", "-c", f"{SETUP_LINE}\n{block.text}\n"], cwd=clone, env=env,
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, (
            f"README.md:{block.line} failed (exit {result.returncode}):\n{block.text}\n--- stderr ---\n"
            f"{result.stderr[-4000:]}\n--- stdout ---\n{result.stdout[-2000:]}")
        for name in written_files(block.text):
            assert (clone / name).exists(), f"README.md:{block.line}: {name} was not written"


@pytest.mark.parametrize("command, expected", [
    ("abaw-hf predict a.jpg --model m -o out.csv", ["out.csv"]),
    ("abaw-hf evaluate --model m \\\n    --output e.json   # -o not.this", ["e.json"]),
    ("abaw-hf export-onnx m -o onnx/", ["onnx/"]),
])
def test_written_files_are_read_from_the_commands(command, expected):
    assert written_files(command) == expected
