"""Publish a trained fusion model (and its Space) to the Hugging Face Hub.

``stage_model_repo`` lays out the model repo folder: ``model.safetensors``, ``config.json`` (with
``auto_map`` and the ``extractors`` provenance block), the self-contained modeling files, the
evaluation/training records, optionally the extractor weights as safetensors, and ``README.md``
rendered from the top-level ``model_card.md`` template. ``stage_space_repo`` lays out the Gradio
Space. ``upload_staged`` sends a staged folder with ``create_repo`` + ``upload_folder``; every Hub
call goes through ``hub_api`` (tests replace it), and ``--dry-run`` only lists the files.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError, run_command
from .modeling import AU_NAMES, EXPRESSION_NAMES, AbawFusionConfig

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
MODEL_CARD_TEMPLATE = PACKAGE_ROOT / "model_card.md"  # top-level model_card.md links here, so the wheel ships it
SPACE_SOURCE = PROJECT_ROOT / "space"

MODELING_FILES = ("configuration_abaw_fusion.py", "modeling_abaw_fusion.py", "losses_abaw_fusion.py")
REQUIRED_MODEL_FILES = ("config.json", "model.safetensors", *MODELING_FILES)
OPTIONAL_MODEL_FILES = ("eval_results.json", "train_config.yaml", "postprocessing.json")
EXTRACTOR_WEIGHTS_DIR = "extractors"
SPACE_FILES = ("README.md", "requirements.txt", "app.py")
STAGING_MARKER = ".abaw_hf_staging"  # lets a later staging replace the folder; excluded from uploads

# (metric key in the evaluation JSON, model-index type, human label)
CARD_METRICS = (
    ("p_mtl", "p_mtl", "P_MTL"),
    ("ccc_valence", "ccc", "CCC valence"),
    ("ccc_arousal", "ccc", "CCC arousal"),
    ("va", "ccc", "CCC mean (V, A)"),
    ("f1_expression", "f1", "F1 expression (macro, 8 classes)"),
    ("f1_au", "f1", "F1 AU (mean of 12)"),
)
BASE_TAGS = [
    "abaw", "affective-computing", "facial-expression-recognition", "action-units", "valence-arousal",
    "multi-task-learning", "video", "custom_code", "abaw_hf",
]
PIPELINE_TAG = "video-classification"
REAL_DATASET = "s-Aff-Wild2"
SYNTHETIC_DATASET = "abaw_hf synthetic demo data"


class StagingError(UserError, ValueError):
    """A model folder or option that cannot be published; the message says which file and why."""


@dataclass
class StagedRepo:
    """A folder ready to upload as it is."""

    folder: Path
    repo_id: str
    repo_type: str  # "model" or "space"
    space_variables: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file() and p.name != STAGING_MARKER
        )


# ----- reading a saved model -----------------------------------------------------------------------------------


def _load_config(model_dir_or_config) -> tuple[AbawFusionConfig, Path | None]:
    if isinstance(model_dir_or_config, AbawFusionConfig):
        return model_dir_or_config, None
    folder = Path(model_dir_or_config)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise StagingError(f"{folder}: no config.json; expected a folder written by AbawFusionModel.save_pretrained")
    try:
        values = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise StagingError(f"{config_file}: not valid JSON ({error})") from error
    if values.get("model_type") != AbawFusionConfig.model_type:
        raise StagingError(f"{config_file}: model_type is {values.get('model_type')!r}, not {AbawFusionConfig.model_type!r}")
    return AbawFusionConfig.from_pretrained(folder), folder


def _count_parameters(weights_file: Path) -> int | None:
    if not weights_file.is_file():
        return None
    from safetensors import safe_open

    total = 0
    with safe_open(str(weights_file), framework="pt") as handle:
        for key in handle.keys():
            count = 1
            for size in handle.get_slice(key).get_shape():
                count *= size
            total += count
    return total


def trained_on_synthetic_data(model_dir: str | Path) -> bool | None:
    """True/False from the ``train_config.yaml`` saved with the model; None when it does not say."""
    from .training import saved_train_config

    dataset = saved_train_config(model_dir).get("dataset")
    return None if dataset is None else dataset == "synthetic"


def read_metrics(path: str | Path) -> dict[str, float]:
    """The evaluation JSON (as written by training / ``abaw-hf evaluate``) as a flat ``{metric: value}``."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise StagingError(f"{path}: cannot read the evaluation JSON ({error})") from error
    if not isinstance(values, dict):
        raise StagingError(f"{path}: expected a JSON object of metric values, found {type(values).__name__}")
    return values


def _metric_rows(metrics: dict | None) -> list[dict]:
    if not metrics:
        return []
    rows = []
    for key, metric_type, label in CARD_METRICS:
        for candidate in (key, f"eval_{key}", f"validation_{key}"):
            if candidate in metrics:
                value = metrics[candidate]
                if not isinstance(value, (int, float)) or value != value:
                    raise StagingError(f"metric {candidate!r} must be a number, got {value!r}")
                rows.append({"key": key, "type": metric_type, "label": label, "value": float(value)})
                break
    return rows


# ----- the model card ----------------------------------------------------------------------------------------


def _extractor_rows(config: AbawFusionConfig) -> tuple[list[dict], list[str], list[str]]:
    """Card rows, the features whose extractor ran with random weights, and those with no provenance at all."""
    rows, random_features, unrecorded = [], [], []
    for feature in config.feature_names:
        provenance = dict(config.extractors.get(feature) or {})
        preprocessing = provenance.get("preprocessing") or {}
        checkpoint = provenance.get("checkpoint")
        random_init = bool(provenance.get("random_init"))
        if random_init:
            random_features.append(f"`{feature}`")
        if not provenance:
            unrecorded.append(f"`{feature}`")
        sha = provenance.get("sha256")
        rows.append(
            {
                "feature": feature,
                "name": provenance.get("name", "not recorded"),
                "variant": provenance.get("variant") or "-",
                "dim": config.feature_dims[feature],
                "input": (
                    f"{preprocessing.get('input_size')} px {preprocessing.get('color_order', 'RGB')}" if preprocessing else "-"
                ),
                "checkpoint": (
                    f"`{checkpoint}`" if checkpoint else "random init" if random_init else "not recorded" if not provenance
                    else "none needed"
                ),
                "sha256": f"`{sha[:16]}…`" if sha else "-",
            }
        )
    return rows, random_features, unrecorded


def render_model_card(
    model_dir_or_config,
    metrics: dict | None = None,
    *,
    synthetic: bool,
    repo_id: str = "org/abaw-fusion",
    template: str | Path | None = None,
    extractor_weight_files: list[str] | None = None,
    license: str | None = None,
) -> str:
    """The Hub model card (YAML metadata + prose) for a saved model folder or an ``AbawFusionConfig``.

    ``metrics`` are the evaluation JSON's values (``p_mtl``, ``ccc_valence``, ...); they become the
    ``model-index``. ``synthetic`` says the weights come from the synthetic demo data, which the card
    states plainly and tags. ``license`` defaults to apache-2.0 for synthetic weights and to "other"
    (the Aff-Wild2 end-user licence) otherwise.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    config, folder = _load_config(model_dir_or_config)
    template = Path(template) if template is not None else MODEL_CARD_TEMPLATE
    if not template.is_file():
        raise StagingError(f"model card template {template} not found (it lives at the top of the abaw_hf checkout)")
    results = _metric_rows(metrics)
    dataset_name = SYNTHETIC_DATASET if synthetic else REAL_DATASET
    split = (metrics or {}).get("split", "validation")
    evaluation_dataset = f"{dataset_name}, {split} split"
    eval_results = [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name="ABAW Multi-Task Learning (valence/arousal, expression, action units)",
            dataset_type="synthetic" if synthetic else REAL_DATASET,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=row["type"],
            metric_name=row["label"],
            metric_value=round(row["value"], 6),
        )
        for row in results
    ]
    if license is None:
        license = "apache-2.0" if synthetic else "other"
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        license=license,
        license_name=None if license != "other" else "aff-wild2-eula",
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=BASE_TAGS + (["synthetic-data", "demo"] if synthetic else []),
        datasets=None if synthetic else [REAL_DATASET],
        metrics=sorted({row["type"] for row in results}) or None,
        eval_results=eval_results or None,
    )
    rows, random_features, unrecorded = _extractor_rows(config)
    num_parameters = _count_parameters(folder / "model.safetensors") if folder else None
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_title=f"{repo_id.split('/')[-1]}: valence/arousal, expressions and action units from faces"
        + (" (synthetic demo weights)" if synthetic else ""),
        repo_id=repo_id,
        synthetic=synthetic,
        config=config,
        expression_names=[config.id2label[i] for i in sorted(config.id2label)] or EXPRESSION_NAMES,
        au_names=config.au_names or AU_NAMES,
        au_thresholds=", ".join(f"{name} {value:.2f}" for name, value in zip(config.au_names, config.au_thresholds)),
        num_parameters=f"{num_parameters:,}" if num_parameters else "(not counted)",
        extractor_rows=rows,
        random_extractors=random_features,
        unrecorded_extractors=unrecorded,
        extractor_weight_files=[f"`{name}`" for name in extractor_weight_files or []],
        results=results,
        evaluation_dataset=evaluation_dataset,
    )
    return str(card)


# ----- staging -------------------------------------------------------------------------------------------------


def _fresh_folder(output_dir: str | Path) -> Path:
    """An empty staging folder; one of our earlier stagings (it carries the marker) is replaced, nothing else is."""
    output = Path(output_dir)
    if output.exists():
        if not output.is_dir():
            raise StagingError(f"{output}: exists and is not a folder")
        if any(output.iterdir()):
            if not (output / STAGING_MARKER).is_file():
                raise StagingError(f"{output}: the folder is not empty and was not staged by abaw_hf; pick another --staging-dir")
            shutil.rmtree(output)  # stale files of an earlier staging must never be uploaded
    output.mkdir(parents=True, exist_ok=True)
    (output / STAGING_MARKER).write_text("staged by abaw_hf.hub; never uploaded\n")
    return output


def export_extractor_weights(
    config: AbawFusionConfig, checkpoints: dict[str, str | Path], output_dir: str | Path, *, allow_pickle: bool = False
) -> list[str]:
    """Convert official extractor checkpoints to ``extractors/<feature>.safetensors`` (repo-relative names).

    Each checkpoint must be the file the model's provenance names (same SHA-256), so the weights
    on the Hub are those the features were made with.
    """
    from safetensors.torch import save_file

    from .extractors import create_extractor, file_sha256

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
    config, _ = _load_config(model_dir)
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
    return StagedRepo(folder=output, repo_id=repo_id, repo_type="model")


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


def stage_space_repo(
    output_dir: str | Path,
    *,
    space_id: str,
    model_id: str,
    source: str | Path | None = None,
    wheel: str | Path | bool = True,
) -> StagedRepo:
    """Copy ``space/`` into ``output_dir`` as a Gradio Space repo that serves ``model_id``.

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


# ----- upload --------------------------------------------------------------------------------------------------


def hub_api(token: str | None = None):
    """The one object every Hub call goes through (tests replace this function)."""
    from huggingface_hub import HfApi

    return HfApi(token=token)


def upload_staged(
    staged: StagedRepo, *, token: str | None = None, private: bool = False, commit_message: str | None = None
) -> str:
    """Create the repo if needed and upload the staged folder in one commit; returns the repo URL."""
    api = hub_api(token)
    create_kwargs = {"repo_type": staged.repo_type, "private": private, "exist_ok": True}
    if staged.repo_type == "space":
        create_kwargs["space_sdk"] = "gradio"
        create_kwargs["space_variables"] = [{"key": k, "value": v} for k, v in staged.space_variables.items()]
    url = api.create_repo(staged.repo_id, **create_kwargs)
    api.upload_folder(
        repo_id=staged.repo_id,
        folder_path=str(staged.folder),
        repo_type=staged.repo_type,
        commit_message=commit_message or f"Upload {staged.repo_type} from abaw_hf",
        ignore_patterns=[STAGING_MARKER],
    )
    return str(url)


def describe(staged: StagedRepo) -> str:
    """What would be sent: one line per file with its size."""
    lines = [f"{staged.repo_type} repo {staged.repo_id} <- {staged.folder}"]
    for name in staged.files:
        lines.append(f"  {name}  ({(staged.folder / name).stat().st_size:,} bytes)")
    return "\n".join(lines)


# ----- command line (`abaw-hf push`, scripts/push_to_hub.py) -----------------------------------------------------


def _parse_assignments(values: list[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for value in values or []:
        feature, sep, path = value.partition("=")
        if not sep or not feature or not path:
            raise StagingError(f"{flag} expects FEATURE=PATH, got {value!r}")
        result[feature] = path
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="folder written by save_pretrained (training output)")
    parser.add_argument("--repo-id", default="org/abaw-fusion", help="model repo on the Hub (default: %(default)s)")
    parser.add_argument("--staging-dir", default=None, help="where to stage the repo folders (default: <model_dir>/../hub_staging)")
    parser.add_argument("--metrics", default=None, help="evaluation JSON for the model-index (default: <model_dir>/eval_results.json)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--synthetic", dest="synthetic", action="store_true", default=None, help="weights come from synthetic demo data")
    data.add_argument("--real-data", dest="synthetic", action="store_false", help="weights come from real (s-Aff-Wild2) data")
    parser.add_argument(
        "--extractor-checkpoint", action="append", metavar="FEATURE=PATH",
        help="also publish this extractor's weights as extractors/FEATURE.safetensors (repeatable)",
    )
    parser.add_argument("--allow-pickle", action="store_true", help="trust checkpoints that are plain pickles (VGGFace2)")
    parser.add_argument("--space-id", default=None, help="also stage (and push) the Gradio Space to this repo")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    parser.add_argument("--dry-run", action="store_true", help="stage and list the files, upload nothing")


def _check_repo_id(repo_id: str, flag: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise StagingError(f"{flag} {repo_id!r} is not a Hub repo id; write it as ORG/NAME (letters, digits, '-', '_', '.')") from None


def run(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir)
    _check_repo_id(args.repo_id, "--repo-id")
    if args.space_id:
        _check_repo_id(args.space_id, "--space-id")
    if not model_dir.is_dir():
        raise StagingError(f"{model_dir}: no such model folder (the output_dir of scripts/train.py)")
    staging = Path(args.staging_dir) if args.staging_dir else model_dir.parent / "hub_staging"
    staged = [
        stage_model_repo(
            model_dir, staging / "model", repo_id=args.repo_id, metrics=args.metrics, synthetic=args.synthetic,
            extractor_checkpoints=_parse_assignments(args.extractor_checkpoint, "--extractor-checkpoint"),
            allow_pickle=args.allow_pickle,
        )
    ]
    if args.space_id:
        staged.append(stage_space_repo(staging / "space", space_id=args.space_id, model_id=args.repo_id))
    for repo in staged:
        print(describe(repo))
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    for repo in staged:
        print(f"uploaded: {upload_staged(repo, token=args.token, private=args.private)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="push_to_hub", description="stage and upload a trained model (and its Space)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command("push_to_hub", lambda: run(args), argv)
