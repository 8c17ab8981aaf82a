"""The abaw_hf wheel a staged Space installs, built with pip from a copy of the sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .repo import StagingError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_ROOT.parent

def build_wheel(output_dir: str | Path) -> Path:
    """Build the abaw_hf wheel (no dependencies) into ``output_dir``; the Space installs it as a package.

    Built from a copy of the sources, so no build folder lands in the checkout.
    """
    import tempfile

    output = Path(output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="abaw_hf_wheel_") as scratch:
        source = Path(scratch) / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (PROJECT_ROOT / name).is_file():
                shutil.copy2(PROJECT_ROOT / name, source / name)
        shutil.copytree(PACKAGE_ROOT, source / "abaw_hf", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(output), str(source)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=scratch)
    if result.returncode != 0:
        raise StagingError(f"building the abaw_hf wheel failed:\n{result.stderr[-2000:]}")
    wheels = sorted(output.glob("abaw_hf-*.whl"))
    if not wheels:
        raise StagingError(f"pip wheel wrote no abaw_hf wheel into {output}")
    return wheels[-1]

