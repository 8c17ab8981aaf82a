"""The staged Space repo starts and serves where only the installed abaw_hf wheel, not the checkout, is importable.

`abaw_hf.hub.stage_space_repo` builds the wheel into the staged folder and points requirements.txt
at it. Here that requirements file is installed (``--no-deps``) into a fresh virtual environment,
whose other dependencies (torch, gradio, mediapipe, ...) come from the dev environment's
site-packages through a ``.pth`` line. A path in a ``.pth`` file is not itself scanned for ``.pth``
files, so the dev environment's editable install of abaw_hf (which points at the checkout) stays
inactive. The app then runs from the staged folder with a clean environment (no PYTHONPATH) and logs
where abaw_hf was imported from.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from skimage import data

import abaw_hf
from abaw_hf import hub

CHECKOUT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 240


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def installed_space(tmp_path_factory, save_space_model):
    """(staged Space folder, its virtual environment's python, that environment's site-packages)."""
    root = tmp_path_factory.mktemp("staged")
    model_dir = save_space_model(root / "abaw-tiny")
    staged = hub.stage_space_repo(root / "space", space_id="org/abaw-demo", model_id=str(model_dir))
    requirement = staged.folder.joinpath("requirements.txt").read_text()
    assert re.search(r"^\./wheels/abaw_hf-[\w.]+-py3-none-any\.whl$", requirement, flags=re.M)
    run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")])
    python = root / "venv" / "bin" / "python"
    site_packages = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site_packages),
         "-r", "requirements.txt"], cwd=staged.folder)
    (site_packages / "abaw_hf_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return staged.folder, python, site_packages, model_dir


def clean_environment(**extra: str) -> dict[str, str]:
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    return {**keep, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False", **extra}


def test_staged_space_starts_from_its_folder_and_serves_a_photograph(installed_space, tmp_path, free_port):
    folder, python, site_packages, model_dir = installed_space
    port = free_port()
    log_path = tmp_path / "space.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(python), "app.py", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=clean_environment(ABAW_MODEL_ID=str(model_dir)),
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert process.poll() is None, f"the staged Space exited ({process.returncode}):\n{log_path.read_text()[-3000:]}"
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no page after {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
            time.sleep(1)
        photo = tmp_path / "astronaut.jpg"
        Image.fromarray(data.astronaut()).save(photo)
        result = Client(url, verbose=False, analytics_enabled=False).predict(handle_file(photo), api_name="/analyse_image")
        assert result[0].startswith("✅ 1 frame (1 with a face)")
        assert len(pd.read_csv(result[7])) == 1
    finally:
        process.terminate()
        process.wait(timeout=30)
    log = log_path.read_text()  # app.py logs where abaw_hf came from
    imported_from = re.search(rf"abaw_hf {re.escape(abaw_hf.__version__)} from (\S+)", log).group(1)
    assert Path(imported_from) == site_packages / "abaw_hf" / "__init__.py"
    assert CHECKOUT not in Path(imported_from).parents and str(CHECKOUT / "abaw_hf") not in log
