"""Laying out Hub repos as folders: the model repo (``stage_model_repo``: weights, ``config.json`` with its
``auto_map`` and extractor provenance, the modeling files, the evaluation/training records, optionally the extractor
weights as safetensors, and the card) and the Gradio Space (``stage_space_repo``). Nothing here talks to the Hub."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from typing import TYPE_CHECKING

import yaml

from ..model_files import TRAIN_CONFIG_FILE, read_model_record
from ..model_loading import MODELING_FILES
from ..package_data import SPACE_TEMPLATE_DIR
from .card import load_model_config, read_metrics, render_model_card, staged_weights_status
from .. import outputs
from .repo import StagedRepo, StagingError
from .wheel import build_wheel

if TYPE_CHECKING:  # `abaw-hf push --help` loads no torch
    from ..modeling import AbawFusionConfig

SPACE_SOURCE = SPACE_TEMPLATE_DIR  # package data: staging works from an installed wheel
REQUIRED_MODEL_FILES = ("config.json", "model.safetensors", *MODELING_FILES)
OPTIONAL_MODEL_FILES = ("eval_results.json", TRAIN_CONFIG_FILE, "postprocessing.json")
EXTRACTOR_WEIGHTS_DIR = "extractors"
SPACE_FILES = ("README.md", "requirements.txt", "app.py")


def trained_on_synthetic_data(model_dir: str | Path) -> bool | None:
    """True/False from the ``train_config.yaml`` saved with the model; None when it does not say."""
    dataset = read_model_record(model_dir, TRAIN_CONFIG_FILE).get("dataset")
    return None if dataset is None else dataset == "synthetic"


def _fresh_folder(output_dir: str | Path) -> Path:
    """An empty staging folder: a new or empty folder, or one of our earlier stagings (its marker; `abaw_hf.outputs`)
    emptied first, since stale files must never be uploaded. Any other folder is refused, listing what it holds."""
    try:
        output = outputs.claim(output_dir, "--staging-dir")
        outputs.clear(output, "--staging-dir")
    except outputs.OutputFolderError as error:
        raise StagingError(str(error)) from None
    return output


def export_extractor_weights(
    config: AbawFusionConfig, checkpoints: dict[str, str | Path], output_dir: str | Path, *, allow_pickle: bool = False
) -> list[str]:
    """Convert official extractor checkpoints to ``extractors/<feature>.safetensors`` (repo-relative names).

    Each checkpoint must be the file the model's provenance names (same SHA-256), so the weights
    on the Hub are those the features were made with.
    """
    from safetensors.torch import save_file

    from ..extractors import create_extractor, file_sha256

    written = []
    target = Path(output_dir) / EXTRACTOR_WEIGHTS_DIR
    for feature, checkpoint in checkpoints.items():
        if feature not in config.feature_dims:
            raise StagingError(f"--extractor-checkpoint names feature {feature!r}; the model has {config.feature_names}")
        provenance = config.extractors.get(feature) or {}
        if "name" not in provenance:
            raise StagingError(f"config.json has no extractor provenance for feature {feature!r}; cannot tell which extractor it is")
        expected_sha = provenance.get("sha256")
        actual_sha = file_sha256(checkpoint)
        if expected_sha and actual_sha != expected_sha:
            raise StagingError(
                f"{checkpoint}: SHA-256 {actual_sha[:16]}… differs from the checkpoint the features of {feature!r} were "
                f"made with ({provenance.get('checkpoint')}, {expected_sha[:16]}…)"
            )
        extractor = create_extractor(
            provenance["name"], variant=provenance.get("variant"), checkpoint=checkpoint, allow_pickle=allow_pickle
        )
        target.mkdir(parents=True, exist_ok=True)
        state = {key: value.contiguous() for key, value in extractor.state_dict().items()}
        metadata = {
            "extractor": provenance["name"],
            "variant": str(provenance.get("variant")),
            "source_checkpoint": Path(checkpoint).name,
            "source_sha256": actual_sha,
        }
        save_file(state, str(target / f"{feature}.safetensors"), metadata=metadata)
        written.append(f"{EXTRACTOR_WEIGHTS_DIR}/{feature}.safetensors")
    return written


def stage_model_repo(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    repo_id: str = "org/abaw-fusion",
    metrics: dict | str | Path | None = None,
    synthetic: bool | None = None,
    extractor_checkpoints: dict[str, str | Path] | None = None,
    allow_pickle: bool = False,
    template: str | Path | None = None,
) -> StagedRepo:
    """Copy a ``save_pretrained`` folder into ``output_dir`` as a complete Hub model repo.

    ``metrics`` (a dict or a JSON path) default to the folder's ``eval_results.json``; ``synthetic``
    defaults to what the folder's ``train_config.yaml`` says (and must be given when it says nothing).
    """
    model_dir = Path(model_dir)
    missing = [name for name in REQUIRED_MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise StagingError(f"{model_dir}: missing {missing}; save the model with AbawFusionModel.save_pretrained")
    config, _ = load_model_config(model_dir)
    if not json.loads((model_dir / "config.json").read_text()).get("auto_map"):
        raise StagingError(f"{model_dir / 'config.json'}: no auto_map; remote code would not load (register_for_auto_class)")
    if synthetic is None:
        synthetic = trained_on_synthetic_data(model_dir)
        if synthetic is None:
            raise StagingError(
                f"{model_dir}: no train_config.yaml says which data trained these weights; pass synthetic=True/False "
                "(--synthetic / --real-data)"
            )
    if metrics is None and (model_dir / "eval_results.json").is_file():
        metrics = model_dir / "eval_results.json"
    if isinstance(metrics, (str, Path)):
        metrics = read_metrics(metrics)

    output = _fresh_folder(output_dir)
    for name in (*REQUIRED_MODEL_FILES, *OPTIONAL_MODEL_FILES):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, output / name)
    if metrics is not None:
        (output / "eval_results.json").write_text(json.dumps(metrics, indent=2))
    weight_files = export_extractor_weights(config, extractor_checkpoints or {}, output, allow_pickle=allow_pickle)
    card = render_model_card(
        model_dir, metrics, synthetic=synthetic, repo_id=repo_id, template=template, extractor_weight_files=weight_files
    )
    (output / "README.md").write_text(card)
    return StagedRepo(folder=output, repo_id=repo_id, repo_type="model",
                      status=staged_weights_status(config, synthetic, weight_files))


def _set_space_models(readme: str, model_id: str, source: Path) -> str:
    """Point the Space README's ``models:`` metadata at ``model_id`` (when it is a Hub id)."""
    match = re.match(r"^---\n(.*?)\n---\n", readme, flags=re.S)
    if not match:
        raise StagingError(f"{source}: the Space README must start with a YAML header between '---' lines")
    header = yaml.safe_load(match.group(1)) or {}
    for key in ("sdk", "app_file"):
        if key not in header:
            raise StagingError(f"{source}: the Space YAML header lacks {key!r}")
    if "/" in model_id and not Path(model_id).exists():
        header["models"] = [model_id]
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n" + readme[match.end():]


def stage_space_repo(
    output_dir: str | Path,
    *,
    space_id: str,
    model_id: str,
    source: str | Path | None = None,
    wheel: str | Path | bool = True,
) -> StagedRepo:
    """Copy the Space template (``abaw_hf/space_template``) into ``output_dir`` as a Gradio Space repo that serves
    ``model_id``; its ``app.py`` runs ``abaw_hf.space.app`` from the installed wheel.

    The Space installs abaw_hf as a package: with ``wheel=True`` the wheel is built into
    ``wheels/`` and ``requirements.txt`` points at it (a path to an existing wheel also works);
    with ``wheel=False`` the requirements are copied as they are. ``ABAW_MODEL_ID`` is set as a
    Space variable at upload.
    """
    source = Path(source) if source is not None else SPACE_SOURCE
    missing = [name for name in SPACE_FILES if not (source / name).is_file()]
    if missing:
        raise StagingError(f"{source}: the Space folder lacks {missing}")
    output = _fresh_folder(output_dir)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or "__pycache__" in relative.parts or relative.name.startswith(".") or path.suffix == ".pyc":
            continue
        (output / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, output / relative)
    (output / "README.md").write_text(_set_space_models((source / "README.md").read_text(), model_id, source / "README.md"))
    if wheel:
        wheel_path = build_wheel(output / "wheels") if wheel is True else Path(wheel)
        if wheel is not True:
            (output / "wheels").mkdir(exist_ok=True)
            shutil.copy2(wheel_path, output / "wheels" / wheel_path.name)
        requirements = [
            line for line in (source / "requirements.txt").read_text().splitlines()
            if not re.match(r"^\s*abaw[_-]hf\b", line, flags=re.I)
        ]
        requirements.append(f"./wheels/{wheel_path.name}")
        (output / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return StagedRepo(folder=output, repo_id=space_id, repo_type="space", space_variables={"ABAW_MODEL_ID": model_id})

