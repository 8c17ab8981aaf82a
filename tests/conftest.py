"""Shared test set-up: everything offline, tiny configs, and the fixtures several test files use."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import socket
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The ONNX cache of --runtime auto (the default) lives for one session, shared by every test and subprocess: each
# set of weights is exported once, and nothing is written under ~/.cache. A cache given from outside is kept.
_ONNX_CACHE = None if os.environ.get("ABAW_HF_ONNX_CACHE") else tempfile.mkdtemp(prefix="abaw-hf-onnx-")
if _ONNX_CACHE:
    os.environ["ABAW_HF_ONNX_CACHE"] = _ONNX_CACHE

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    if _ONNX_CACHE:
        shutil.rmtree(_ONNX_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """``free_port()``: a TCP port nobody listens on (for accelerate launch and served apps)."""
    return _free_port


@contextlib.contextmanager
def _served_space(space):
    from abaw_hf.space import app as space_app

    port = _free_port()
    app = space_app.launch(space, host="127.0.0.1", port=port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="session")
def served_space():
    """``with served_space(space) as url:`` a real Gradio server for an ``AffectSpace`` on 127.0.0.1, closed after."""
    return _served_space


def _tiny_model(feature_dims: dict[str, int] | None = None, *, extractors: dict | None = None, seed: int | None = None,
                **config):
    """A one-layer, 8-wide fusion model in eval mode over resnet18 (512) + fau (17) unless ``feature_dims`` says
    otherwise; ``config`` overrides any AbawFusionConfig value, ``seed`` fixes its initial weights."""
    from abaw_hf import AbawFusionConfig, AbawFusionModel

    if seed is not None:
        torch.manual_seed(seed)
    settings = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, extractors=extractors or {})
    settings.update(config)
    return AbawFusionModel(AbawFusionConfig(feature_dims=feature_dims or {"resnet18": 512, "fau": 17}, **settings)).eval()


@pytest.fixture(scope="session")
def tiny_model():
    """``tiny_model(feature_dims=None, *, extractors=None, seed=None, **config)``: see ``_tiny_model``."""
    return _tiny_model


# provenance of the Space tests' model: resnet18 with random init (no checkpoint here) and MediaPipe fau
SPACE_MODEL_PROVENANCE = {
    "resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512, "checkpoint": "resnet18_msceleb.pth"},
    "fau": {"name": "fau", "variant": "mediapipe", "dim": 17},
}


@pytest.fixture
def space_model_provenance():
    """The ``extractors`` block of the Space tests' models (a copy the test may change)."""
    return {name: dict(entry) for name, entry in SPACE_MODEL_PROVENANCE.items()}


def _save_space_model(folder: Path) -> Path:
    """A tiny fusion model over resnet18 (random init) and MediaPipe fau, 'trained' on synthetic data, saved to
    ``folder`` with the train_config.yaml the Space reads (window 4, max gap 2)."""
    import yaml

    _tiny_model(hidden_size=16, max_window=64, extractors=SPACE_MODEL_PROVENANCE).save_pretrained(folder)
    (folder / "train_config.yaml").write_text(yaml.safe_dump({"dataset": "synthetic", "window": 4, "max_gap": 2}))
    return folder


@pytest.fixture(scope="session")
def save_space_model():
    """``save_space_model(folder) -> folder``: see ``_save_space_model``."""
    return _save_space_model


def _write_hub_cache(hf_home: Path, repo_id: str, folder: Path, sha: str = "89abcdef0123456789abcdef0123456789abcdef"):
    """Lay a staged repo out as the Hub cache does, so offline ``from_pretrained(repo_id)`` resolves it."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    for file in folder.rglob("*"):
        if file.is_file():
            target = repo / "snapshots" / sha / file.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)


@pytest.fixture(scope="session")
def write_hub_cache():
    """``write_hub_cache(hf_home, repo_id, folder, sha=...)``: see ``_write_hub_cache``."""
    return _write_hub_cache


class RecordingHubApi:
    """Stands in for HfApi at our one Hub boundary (``abaw_hf.hub.upload.hub_api``); records each call and the
    files it would send."""

    def __init__(self, commit_url: str | None = None):
        self.calls = []
        self.commit_url = commit_url

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=(), **kwargs):
        files = sorted(
            str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*")
            if p.is_file() and not any(fnmatch.fnmatch(p.name, pattern) for pattern in ignore_patterns or ())
            and (allow_patterns is None or any(fnmatch.fnmatch(str(p.relative_to(folder_path)), pattern)
                                               for pattern in allow_patterns))
        )
        self.calls.append(("upload_folder", repo_id, dict(kwargs, files=files)))
        return self.commit_url


@pytest.fixture
def recording_hub(monkeypatch):
    """Every Hub call of the test goes to a RecordingHubApi (returned), none to the network."""
    api = RecordingHubApi()
    monkeypatch.setattr("abaw_hf.hub.upload.hub_api", lambda token=None: api)
    return api


@pytest.fixture
def no_hub(monkeypatch):
    """Any Hub call of the test is a failure."""

    def refuse(token=None):
        raise AssertionError("this test must not touch the Hub")

    monkeypatch.setattr("abaw_hf.hub.upload.hub_api", refuse)
