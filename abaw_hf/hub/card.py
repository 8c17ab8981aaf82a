"""The Hub model card of a saved fusion model: YAML metadata (license, tags, ``model-index`` from the evaluation
JSON) and prose rendered from ``model_card.md``, the template beside this module (so an installed wheel has it)."""

from __future__ import annotations

import json
from pathlib import Path

from ..modeling import AU_NAMES, EXPRESSION_NAMES
from ..modeling.tasks_abaw_fusion import tasks_of
from .repo import StagingError

MODEL_CARD_TEMPLATE = Path(__file__).resolve().with_name("model_card.md")

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


def load_model_config(model_dir_or_config) -> tuple[AbawFusionConfig, Path | None]:
    from ..modeling import AbawFusionConfig  # here, not at the top: `abaw-hf push --help` loads no torch

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
    from huggingface_hub.errors import StrictDataclassError

    from ..modeling.configuration_abaw_fusion import config_problem

    try:
        return AbawFusionConfig.from_pretrained(folder), folder
    except (ValueError, TypeError, StrictDataclassError) as error:  # a hand-edited value no model can have
        raise StagingError(f"{config_file}: not a valid abaw_fusion config ({config_problem(error)})") from error


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


def staged_weights_status(config: AbawFusionConfig, synthetic: bool | None, extractor_weight_files=()) -> str:
    """What a published model's predictions are (`abaw_hf.status.weights_status`, the words of every output): its
    training data, and the extractors that will run with random weights wherever it is loaded from the repo, those
    that need a checkpoint and have no ``extractors/<feature>.safetensors`` in it (as `build_extractors` decides)."""
    from ..extractors import get_extractor_class
    from ..status import weights_status

    published = set(extractor_weight_files or ())
    random_features = []
    for feature in config.feature_names:
        name = (config.extractors.get(feature) or {}).get("name", feature)
        try:
            needs_checkpoint = get_extractor_class(name).needs_checkpoint
        except ValueError:  # not installed here: `predict` refuses it by name
            continue
        if needs_checkpoint and f"extractors/{feature}.safetensors" not in published:
            random_features.append(feature)
    return weights_status(synthetic, random_features)


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

    config, folder = load_model_config(model_dir_or_config)
    template = Path(template) if template is not None else MODEL_CARD_TEMPLATE
    if not template.is_file():
        raise StagingError(f"model card template {template} not found")
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
    outputs = [f"`{task.output} [B, T, {task.head_width(config)}]`" for task in tasks_of(config)]  # the task table's
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
        outputs=", ".join(outputs[:-1]) + " and " + outputs[-1] if len(outputs) > 1 else outputs[0],
        evaluation_dataset=evaluation_dataset,
        status=staged_weights_status(config, synthetic, extractor_weight_files),
    )
    return str(card)

