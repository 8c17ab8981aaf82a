"""Publishing: the staged model repo loads from an offline Hub cache, its card parses, uploads send the staged files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

import abaw_hf.hub as hub
from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.cli import main as cli_main
from abaw_hf.extractors import file_sha256, get_extractor_class
from abaw_hf.model_loading import MODELING_FILES

REPO_ID = "org/abaw-fusion"
METRICS = {"p_mtl": 1.2795, "ccc_valence": 0.503, "ccc_arousal": 0.432, "va": 0.4675, "f1_expression": 0.319, "f1_au": 0.493}
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def saved_model(tiny_model):
    """``saved_model(folder, *, dataset="synthetic", extractors=None)``: a tiny model saved as training saves it."""

    def save(folder: Path, *, dataset: str | None = "synthetic", extractors: dict | None = None) -> AbawFusionModel:
        model = tiny_model(extractors=extractors, hidden_dropout_prob=0.0)
        model.save_pretrained(folder)
        (folder / "eval_results.json").write_text(json.dumps(METRICS))
        if dataset is not None:
            (folder / "train_config.yaml").write_text(yaml.safe_dump({"dataset": dataset, "window": 4, "max_gap": 2}))
        return model

    return save


def run_python(code: str, *args: str, env: dict) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
        env=dict(os.environ, **env), cwd="/",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_staged_repo_loads_from_offline_hub_cache_with_and_without_abaw_hf(tmp_path, saved_model, write_hub_cache):
    model = saved_model(tmp_path / "run")
    staged = hub.stage_model_repo(tmp_path / "run", tmp_path / "stage", repo_id=REPO_ID)
    assert set(staged.files) == {
        "README.md", "config.json", "model.safetensors", "eval_results.json", "train_config.yaml", *MODELING_FILES
    }
    config = json.loads((staged.folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"].startswith("modeling_abaw_fusion.")
    assert "extractors" in config

    hf_home = tmp_path / "hf_home"
    write_hub_cache(hf_home, REPO_ID, staged.folder, SHA)
    features = {"resnet18": torch.randn(1, 3, 512), "fau": torch.rand(1, 3, 17)}
    torch.save(features, tmp_path / "features.pt")
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    # abaw_hf is installed in this venv: block it, so only the repo's remote code can serve the model
    run_python(
        """
        import sys, torch
        sys.modules["abaw_hf"] = None
        from transformers import AutoModel
        model = AutoModel.from_pretrained("org/abaw-fusion", trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        torch.save(model(**torch.load(sys.argv[1])).au_logits, sys.argv[2])
        """,
        str(tmp_path / "features.pt"), str(tmp_path / "remote.pt"), env=env,
    )
    run_python(
        """
        import sys, torch
        import abaw_hf
        from transformers import AutoModel
        model = AutoModel.from_pretrained("org/abaw-fusion").eval()
        assert type(model) is abaw_hf.AbawFusionModel, type(model)
        torch.save(model(**torch.load(sys.argv[1])).au_logits, sys.argv[2])
        """,
        str(tmp_path / "features.pt"), str(tmp_path / "plain.pt"), env=env,
    )
    expected = model(**features).au_logits
    torch.testing.assert_close(torch.load(tmp_path / "remote.pt"), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.load(tmp_path / "plain.pt"), expected, atol=1e-6, rtol=0)


def test_card_metadata_parses_with_model_index_from_evaluation_json(tmp_path, saved_model):
    saved_model(tmp_path / "run", dataset="real")
    staged = hub.stage_model_repo(tmp_path / "run", tmp_path / "stage", repo_id="someone/abaw-paper")
    card = ModelCard.load(staged.folder / "README.md")
    data = card.data
    assert data.license == "other" and data.pipeline_tag == "video-classification"
    assert data.library_name == "transformers"
    assert "s-Aff-Wild2" in data.datasets
    assert "abaw" in data.tags and "synthetic-data" not in data.tags
    values = {result.metric_name: result.metric_value for result in data.eval_results}
    assert values["P_MTL"] == pytest.approx(METRICS["p_mtl"])
    assert values["CCC valence"] == pytest.approx(METRICS["ccc_valence"])
    assert values["F1 AU (mean of 12)"] == pytest.approx(METRICS["f1_au"])
    assert {result.dataset_split for result in data.eval_results} == {"validation"}
    assert card.data.to_dict()["model-index"][0]["name"] == "abaw-paper"
    text = card.text
    assert "synthetic demo data" not in text
    for section in ("## Training data", "## Extractors and their checkpoints", "## Intended use", "## Limitations and bias"):
        assert section in text
    assert 'AutoModel.from_pretrained("someone/abaw-paper"' in text


def test_synthetic_weights_are_stated_plainly_and_tagged(tmp_path):
    config = AbawFusionConfig(feature_dims={"fau": 17}, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    card_text = hub.render_model_card(config, None, synthetic=True)
    card = ModelCard(card_text)
    assert "synthetic-data" in card.data.tags and card.data.license == "apache-2.0"
    assert "trained on synthetic demo data, not on real faces" in card.text
    assert card.data.eval_results is None and "No evaluation results" in card.text
    assert "**No provenance recorded** for `fau`" in card.text


def test_card_lists_extractor_provenance_and_random_init(tmp_path, tiny_model):
    provenance = {
        "resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512, "checkpoint": "resnet18_msceleb.pth",
                     "sha256": "ab" * 32, "random_init": False, "preprocessing": {"input_size": 224, "color_order": "RGB"}},
        "fau": {"name": "fau", "variant": "mediapipe", "dim": 17, "checkpoint": None, "sha256": None, "random_init": True},
    }
    model = tiny_model(extractors=provenance, hidden_dropout_prob=0.0)
    text = hub.render_model_card(model.config, METRICS, synthetic=False)
    assert "| `resnet18` | resnet18 | msceleb | 512 | 224 px RGB | `resnet18_msceleb.pth` | `abababababababab…` |" in text
    assert "**Random-init extractors:** `fau`" in text


def test_upload_sends_the_staged_files_through_our_boundary(tmp_path, saved_model, recording_hub):
    saved_model(tmp_path / "run")
    api = recording_hub
    staged = hub.stage_model_repo(tmp_path / "run", tmp_path / "stage", repo_id=REPO_ID)
    (staged.folder / "stale.bin").write_text("from an earlier staging")
    staged = hub.stage_model_repo(tmp_path / "run", tmp_path / "stage", repo_id=REPO_ID)  # replaces it
    url = hub.upload_staged(staged, private=True)
    assert url == f"https://huggingface.co/{REPO_ID}"
    (create, repo, create_kwargs), (upload, upload_repo, upload_kwargs) = api.calls
    assert (create, repo, upload, upload_repo) == ("create_repo", REPO_ID, "upload_folder", REPO_ID)
    assert create_kwargs == {"repo_type": "model", "private": True, "exist_ok": True}
    assert upload_kwargs["repo_type"] == "model"
    assert upload_kwargs["files"] == sorted(
        ["README.md", "config.json", "model.safetensors", "eval_results.json", "train_config.yaml", *MODELING_FILES]
    )


def test_cli_dry_run_lists_files_and_uploads_nothing(tmp_path, capsys, saved_model, no_hub):
    saved_model(tmp_path / "run")
    code = cli_main(["push", str(tmp_path / "run"), "--repo-id", REPO_ID, "--staging-dir", str(tmp_path / "st"), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "dry run: nothing uploaded" in out
    for name in ("model.safetensors", "config.json", "README.md", "modeling_abaw_fusion.py"):
        assert f"  {name}  (" in out


def test_cli_push_uploads_model_then_space(tmp_path, monkeypatch, capsys, saved_model, recording_hub):
    saved_model(tmp_path / "run")
    space_source = tmp_path / "space_source"
    space_source.mkdir()
    for name in ("README.md", "requirements.txt"):
        (space_source / name).write_text((hub.SPACE_SOURCE / name).read_text())
    (space_source / "app.py").write_text("print('app')\n")
    monkeypatch.setattr(hub.staging, "SPACE_SOURCE", space_source)
    monkeypatch.setattr(hub.staging, "build_wheel", lambda output: _fake_wheel(Path(output)))
    api = recording_hub
    code = cli_main(["push", str(tmp_path / "run"), "--repo-id", REPO_ID, "--space-id", "org/abaw-demo",
                     "--staging-dir", str(tmp_path / "st")])
    assert code == 0, capsys.readouterr().err
    uploads = [(call[1], call[2]) for call in api.calls if call[0] == "upload_folder"]
    assert [repo for repo, _ in uploads] == [REPO_ID, "org/abaw-demo"]
    assert uploads[1][1]["repo_type"] == "space"
    assert uploads[1][1]["files"] == ["README.md", "app.py", "requirements.txt", "wheels/abaw_hf-0.1.0-py3-none-any.whl"]
    space_create = [call[2] for call in api.calls if call[0] == "create_repo" and call[1] == "org/abaw-demo"][0]
    assert space_create["space_sdk"] == "gradio"
    assert space_create["space_variables"] == [{"key": "ABAW_MODEL_ID", "value": REPO_ID}]


def _fake_wheel(output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    path = output / "abaw_hf-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("abaw_hf/__init__.py", "")
    return path


def test_space_stage_has_gradio_header_and_installs_the_built_wheel(tmp_path):
    source = tmp_path / "space_source"
    source.mkdir()
    for name in ("README.md", "requirements.txt"):
        (source / name).write_text((hub.SPACE_SOURCE / name).read_text())
    (source / "app.py").write_text("print('app')\n")
    staged = hub.stage_space_repo(tmp_path / "space", space_id="org/abaw-demo", model_id=REPO_ID, source=source)
    header = yaml.safe_load((staged.folder / "README.md").read_text().split("---")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and header["models"] == [REPO_ID]
    assert (staged.folder / header["app_file"]).is_file()
    requirements = [line for line in (staged.folder / "requirements.txt").read_text().splitlines()
                    if line and not line.startswith("#")]
    wheel_lines = [line for line in requirements if line.endswith(".whl")]
    assert len(wheel_lines) == 1 and not any(line.startswith(("-e", ".")) and not line.endswith(".whl") for line in requirements)
    wheel = staged.folder / wheel_lines[0]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"abaw_hf/pipeline/__init__.py", "abaw_hf/hub/staging.py", "abaw_hf/hub/model_card.md", "abaw_hf/modeling/modeling_abaw_fusion.py"} <= names
    assert not any(name.startswith("tests/") for name in names)


def test_extractor_weights_are_published_as_safetensors_of_the_recorded_checkpoint(tmp_path, saved_model):
    official = get_extractor_class("resnet18")().eval()
    checkpoint = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}, checkpoint)
    provenance = {"resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512, "checkpoint": checkpoint.name,
                               "sha256": file_sha256(checkpoint), "random_init": False}}
    saved_model(tmp_path / "run", extractors=provenance)
    staged = hub.stage_model_repo(tmp_path / "run", tmp_path / "stage", extractor_checkpoints={"resnet18": checkpoint})
    assert "extractors/resnet18.safetensors" in staged.files
    from safetensors import safe_open

    with safe_open(str(staged.folder / "extractors/resnet18.safetensors"), framework="pt") as handle:
        assert handle.metadata()["source_sha256"] == file_sha256(checkpoint)
        torch.testing.assert_close(handle.get_tensor("conv1.weight"), official.state_dict()["conv1.weight"])
    assert "`extractors/resnet18.safetensors`" in (staged.folder / "README.md").read_text()

    other = tmp_path / "other.pth"
    torch.save({"state_dict": get_extractor_class("resnet18")().state_dict()}, other)
    with pytest.raises(hub.StagingError, match="differs from the checkpoint the features of 'resnet18' were made with"):
        hub.stage_model_repo(tmp_path / "run", tmp_path / "stage2", extractor_checkpoints={"resnet18": other})


def test_bad_model_folders_are_clear_errors(tmp_path, saved_model):
    saved_model(tmp_path / "run", dataset=None)
    with pytest.raises(hub.StagingError, match="no train_config.yaml says which data"):
        hub.stage_model_repo(tmp_path / "run", tmp_path / "stage")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(hub.StagingError, match="not a folder abaw_hf wrote.*thesis.tex"):
        hub.stage_model_repo(tmp_path / "run", precious, synthetic=True)
    assert (precious / "thesis.tex").is_file()
    (tmp_path / "run" / "model.safetensors").unlink()
    with pytest.raises(hub.StagingError, match=r"missing \['model.safetensors'\]"):
        hub.stage_model_repo(tmp_path / "run", tmp_path / "stage", synthetic=True)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(hub.StagingError, match="bad.json: cannot read the evaluation JSON"):
        hub.read_metrics(tmp_path / "bad.json")


PUSH_FROM_WHEEL = """
import json, sys
import abaw_hf, abaw_hf.hub.upload
from abaw_hf.cli import main

site, model, staging = sys.argv[1:4]
assert abaw_hf.__file__.startswith(site + "/"), abaw_hf.__file__  # only the wheel's abaw_hf is importable
push = ["push", model, "--repo-id", "org/abaw-fusion", "--space-id", "org/abaw-demo", "--staging-dir", staging]
assert main([*push, "--dry-run"]) == 0

class RecordingApi:  # the one Hub seam, as tests/conftest.py's RecordingHubApi, without pytest in this process
    uploads = []
    def create_repo(self, repo_id, **kwargs):
        return "https://huggingface.co/" + repo_id
    def upload_folder(self, *, repo_id, folder_path, repo_type, **kwargs):
        self.uploads.append([repo_id, repo_type])

abaw_hf.hub.upload.hub_api = lambda token=None: RecordingApi()
assert main(push) == 0
print("UPLOADS " + json.dumps(RecordingApi.uploads))
"""


def test_push_with_space_works_from_the_installed_wheel_outside_any_checkout(tmp_path, saved_model):
    wheel = hub.build_wheel(tmp_path / "dist")  # from this checkout, with pip
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True)
    saved_model(tmp_path / "run")
    out = run_python(PUSH_FROM_WHEEL, str(site), str(tmp_path / "run"), str(tmp_path / "staging"),
                     env={"PYTHONPATH": str(site)})
    assert "dry run: nothing uploaded" in out
    assert json.loads(out.split("UPLOADS ", 1)[1]) == [["org/abaw-fusion", "model"], ["org/abaw-demo", "space"]]
    space = tmp_path / "staging" / "space"
    header = yaml.safe_load((space / "README.md").read_text().split("---")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py" and header["models"] == [REPO_ID]
    assert "from abaw_hf.cli.space import main" in (space / "app.py").read_text()
    requirements = (space / "requirements.txt").read_text().splitlines()
    repacked = [line for line in requirements if line.endswith(".whl")]
    assert repacked == [f"./wheels/{wheel.name}"] and not any(line.startswith("abaw_hf") for line in requirements)
    with zipfile.ZipFile(space / repacked[0]) as archive:  # repacked from the installed files: the same package
        names = set(archive.namelist())
    with zipfile.ZipFile(wheel) as archive:
        assert names == set(archive.namelist())
    assert {"abaw_hf/space/app.py", "abaw_hf/space_template/requirements.txt", "abaw_hf/space/examples/astronaut.jpg"} <= names
    reinstalled = tmp_path / "reinstalled"  # and pip takes it (its RECORD checks out)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(reinstalled),
                    str(space / repacked[0])], check=True)
    assert (reinstalled / "abaw_hf" / "space_template" / "app.py").is_file()
