"""The `abaw-hf` console script: every subcommand imports and explains itself."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from abaw_hf.cli import SUBCOMMANDS


def test_console_script_is_installed_and_lists_subcommands():
    executable = shutil.which("abaw-hf") or str(__import__("pathlib").Path(sys.executable).with_name("abaw-hf"))
    result = subprocess.run([executable, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help(name):
    result = subprocess.run([sys.executable, "-m", "abaw_hf.cli", name, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"abaw-hf {name}" in result.stdout


def test_unknown_subcommand_is_an_error():
    result = subprocess.run([sys.executable, "-m", "abaw_hf.cli", "train-everything"], capture_output=True, text=True)
    assert result.returncode != 0 and "invalid choice" in result.stderr
