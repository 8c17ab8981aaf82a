"""The abaw_hf wheel a staged Space installs: built with pip from a checkout's sources, or, for an installed
package (no ``pyproject.toml`` beside it), repacked from the installed distribution's files."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .repo import StagingError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_ROOT.parent  # the checkout when abaw_hf runs from one; site-packages otherwise
# installer records that a wheel must not carry (RECORD is rewritten)
INSTALL_ONLY_FILES = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


def running_from_checkout() -> bool:
    pyproject = PROJECT_ROOT / "pyproject.toml"
    return pyproject.is_file() and 'name = "abaw_hf"' in pyproject.read_text()


def build_wheel(output_dir: str | Path) -> Path:
    """Build the abaw_hf wheel (no dependencies) into ``output_dir``; the Space installs it as a package."""
    output = Path(output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    return _build_from_checkout(output) if running_from_checkout() else _repack_installed(output)


def _build_from_checkout(output: Path) -> Path:
    """``pip wheel`` of a copy of the sources, so no build folder lands in the checkout."""
    import tempfile

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


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _repack_installed(output: Path) -> Path:
    """The installed abaw_hf (the one imported, found by its dist-info beside it) as a wheel again: the package
    files its RECORD lists and its metadata, with a fresh RECORD."""
    from importlib.metadata import distributions

    found = list(distributions(name="abaw_hf", path=[str(PROJECT_ROOT)]))
    if not found:
        raise StagingError(f"{PACKAGE_ROOT}: neither a checkout (no pyproject.toml) nor an installed distribution "
                           "(no abaw_hf dist-info beside it); cannot build the wheel the Space installs")
    distribution = found[0]
    files = distribution.files or []
    dist_info = next(file.parts[0] for file in files if file.name == "METADATA")  # abaw_hf-<version>.dist-info
    members = sorted(
        (str(file) for file in files
         if file.parts[0] in ("abaw_hf", dist_info) and "__pycache__" not in file.parts and file.suffix != ".pyc"
         and not (file.parts[0] == dist_info and file.name in INSTALL_ONLY_FILES)),
        key=lambda name: (name.startswith(dist_info), name),  # metadata last, as wheels have it
    )
    tags = [line.split(":", 1)[1].strip() for line in distribution.read_text("WHEEL").splitlines() if line.startswith("Tag:")]
    wheel_path = output / f"abaw_hf-{distribution.version}-{tags[0]}.whl"
    record = []
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in members:
            data = (PROJECT_ROOT / name).read_bytes()
            archive.writestr(name, data)
            record.append(f"{name},{_record_hash(data)},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel_path
