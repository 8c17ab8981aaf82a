"""Which weights the pipeline runs with: the extractors a model's provenance names, and the report that says
whether each one has real weights (an official checkpoint, the model repo's copy, built-in) or RANDOM ones."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..model_files import model_file
from .errors import ExtractorNotInstalledError, PipelineError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractorWeights:
    feature: str
    extractor: str
    variant: str | None
    source: str  # "checkpoint", "hub", "built-in" (no weights of its own) or "random"
    checkpoint: str | None = None
    sha256: str | None = None

    @property
    def random_init(self) -> bool:
        return self.source == "random"


@dataclass
class WeightsReport:
    """What is loaded: the model, whether it was trained on synthetic data, each extractor's weights."""

    model: str
    synthetic_training: bool | None
    extractors: list[ExtractorWeights] = field(default_factory=list)

    @property
    def random_extractors(self) -> list[str]:
        return [item.feature for item in self.extractors if item.random_init]

    @property
    def trustworthy(self) -> bool:
        return not self.synthetic_training and not self.random_extractors

    @property
    def status(self) -> str:
        """What the predictions are, in the words every output uses (`abaw_hf.status.weights_status`)."""
        from ..status import weights_status

        return weights_status(self.synthetic_training, self.random_extractors)

    @property
    def warnings(self) -> list[str]:
        """Banner texts: why the predictions should not be believed (empty when nothing is wrong)."""
        messages = []
        if self.synthetic_training:
            messages.append(f"The model {self.model} was trained on SYNTHETIC DEMO DATA: its predictions are meaningless.")
        if self.random_extractors:
            messages.append(
                f"Extractor(s) {', '.join(self.random_extractors)} run with RANDOM WEIGHTS (no checkpoint found): "
                "their features, and so the predictions, carry no affect information."
            )
        return messages

    def __str__(self) -> str:
        from ..status import status_line

        lines = [status_line(self.status), f"model: {self.model} (training data: "
                 f"{'synthetic demo' if self.synthetic_training else 'real' if self.synthetic_training is False else 'not recorded'})"]
        for item in self.extractors:
            detail = item.checkpoint or "-"
            if item.sha256:
                detail += f" sha256 {item.sha256[:12]}…"
            lines.append(f"  {item.feature}: {item.extractor}/{item.variant} <- {item.source} ({detail})")
        lines += [f"WARNING: {message}" for message in self.warnings]
        return "\n".join(lines)


def build_extractors(
    config,
    *,
    checkpoints: dict[str, str | Path] | None = None,
    model_id: str | Path | None = None,
    revision: str | None = None,
    allow_pickle: bool = False,
) -> tuple[dict, list[ExtractorWeights]]:
    """One extractor per feature of ``config``, as its ``extractors`` provenance describes.

    Weights come from ``checkpoints[feature]`` (an official checkpoint file), else from the model
    repo's ``extractors/<feature>.safetensors``, else the extractor runs with random weights and a
    loud warning. An extractor name this installation does not know is an error naming it.
    """
    from ..extractors import create_extractor, file_sha256, get_extractor_class, list_extractors, load_matching_state_dict
    from ..extractors.registry import random_init_seed

    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(config.feature_names))
    if unknown:
        raise PipelineError(f"checkpoints given for {unknown}, which the model does not use; it uses {config.feature_names}")
    extractors, report = {}, []
    for feature in config.feature_names:
        provenance = dict((config.extractors or {}).get(feature) or {})
        name = provenance.get("name", feature)
        variant = provenance.get("variant")
        if not provenance:
            logger.warning("config.json has no extractor provenance for feature %r; assuming extractor %r", feature, name)
        try:
            extractor_class = get_extractor_class(name)
        except ValueError:
            raise ExtractorNotInstalledError(
                f"the model {model_id or ''} needs extractor {name!r} (feature {feature!r}), which is not installed; "
                f"installed extractors: {list_extractors()}"
            ) from None
        if extractor_class.open_family:  # timm:, hf:, audio: (`extractors.open_models`)
            extractor, weights = _build_open(feature, provenance, checkpoints.get(feature), model_id, revision,
                                             allow_pickle, config)
            extractors[feature] = extractor
            report.append(weights)
            continue
        if variant is not None and variant not in extractor_class.layouts:
            raise PipelineError(
                f"{model_id or 'the model'}: config.json asks for variant {variant!r} of extractor {name!r} (feature "
                f"{feature!r}); this abaw_hf has {list(extractor_class.layouts)}"
            )
        hub_weights = None if feature in checkpoints or model_id is None else model_file(
            model_id, f"extractors/{feature}.safetensors", revision
        )
        if not extractor_class.needs_checkpoint:
            extractor = create_extractor(name, variant=variant)
            source, checkpoint, sha = "built-in", provenance.get("checkpoint"), provenance.get("sha256")
        elif feature in checkpoints:
            extractor = create_extractor(name, variant=variant, checkpoint=checkpoints[feature], allow_pickle=allow_pickle)
            source, checkpoint, sha = "checkpoint", extractor.checkpoint_file, extractor.checkpoint_sha256
            if provenance.get("sha256") and sha != provenance["sha256"]:
                warnings.warn(
                    f"{checkpoints[feature]}: not the checkpoint the model was trained with (sha256 {sha[:12]}… vs "
                    f"{provenance['sha256'][:12]}… of {provenance.get('checkpoint')}); features of {feature!r} will differ",
                    UserWarning, stacklevel=2,
                )
        elif hub_weights is not None:
            from safetensors import safe_open
            from safetensors.torch import load_file

            extractor = extractor_class(variant=variant)
            load_matching_state_dict(extractor, load_file(str(hub_weights)), source=hub_weights, strict=True)
            with safe_open(str(hub_weights), framework="pt") as handle:
                metadata = handle.metadata() or {}
            extractor.checkpoint_file = metadata.get("source_checkpoint", hub_weights.name)
            extractor.checkpoint_sha256 = metadata.get("source_sha256") or file_sha256(hub_weights)
            extractor.eval()
            source, checkpoint, sha = "hub", f"extractors/{feature}.safetensors", extractor.checkpoint_sha256
        else:
            # same model, same random network: in the CLI, the Space and every other process
            seed = random_init_seed(json.dumps([config.feature_dims, config.extractors], sort_keys=True), feature, name, variant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ours below says it once, with the feature name
                extractor = create_extractor(name, variant=variant, random_seed=seed)
            wanted = f"the model was trained with {provenance['checkpoint']!r}; " if provenance.get("checkpoint") else ""
            message = (
                f"extractor {name!r} for feature {feature!r} has NO weights ({wanted}pass checkpoints={{{feature!r}: path}} "
                "or publish extractors/<feature>.safetensors): it runs with RANDOM WEIGHTS and the predictions are meaningless"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            source, checkpoint, sha = "random", None, None
        if extractor.dim != config.feature_dims[feature]:
            raise PipelineError(
                f"extractor {name!r} (variant {extractor.variant!r}) gives {extractor.dim}-d features, but the model "
                f"expects {config.feature_dims[feature]} for feature {feature!r}"
            )
        extractors[feature] = extractor
        report.append(ExtractorWeights(feature, name, extractor.variant, source, checkpoint, sha))
    return extractors, report


def _build_open(feature: str, provenance: dict, given, model_id, revision, allow_pickle: bool, config):
    """An open-family extractor (``timm:``, ``hf:``, ``audio:``) rebuilt from the model's provenance.

    timm: the file given (``--checkpoint FEATURE=FILE``), else the model repo's ``extractors/<feature>.safetensors``,
    else the Hub weights timm names when the features came from them, else random weights and a loud warning.
    hf / audio: the folder given, else the Hub id at the recorded commit, else the recorded folder when it is on this
    machine and its weights have the recorded sha256 (a path read from config.json is used only then)."""
    from ..extractors import create_extractor, file_sha256, load_matching_state_dict
    from ..extractors.open_models import ExtractorSpecError, folder_weights_sha256
    from ..extractors.registry import random_init_seed

    family, variant = provenance["name"], provenance.get("variant")
    recorded_sha = provenance.get("sha256")
    dim = config.feature_dims[feature]

    def built(extractor, source, checkpoint=None, sha=None):
        if extractor.dim != dim:
            raise PipelineError(f"{provenance.get('spec', family)} gives {extractor.dim}-d features, but the model "
                                f"expects {dim} for feature {feature!r}")
        if source == "checkpoint" and recorded_sha and sha != recorded_sha:
            warnings.warn(f"{given}: not the weights the model was trained with (sha256 {str(sha)[:12]}… vs "
                          f"{recorded_sha[:12]}…); features of {feature!r} will differ", UserWarning, stacklevel=3)
        extractor.name = feature
        return extractor, ExtractorWeights(feature, family, variant, source, checkpoint, sha)

    if family == "timm":
        if given is not None:
            extractor = create_extractor("timm", variant, given, allow_pickle=allow_pickle)
            return built(extractor, "checkpoint", extractor.checkpoint_file, extractor.checkpoint_sha256)
        seed = random_init_seed(json.dumps([config.feature_dims, config.extractors], sort_keys=True), feature, family, variant)
        hub_weights = None if model_id is None else model_file(model_id, f"extractors/{feature}.safetensors", revision)
        if hub_weights is not None:
            from safetensors.torch import load_file

            extractor = create_extractor("timm", variant, pretrained=False, random_seed=seed)
            load_matching_state_dict(extractor, load_file(str(hub_weights)), source=hub_weights, strict=True)
            extractor.source_info["random_init"] = False
            return built(extractor, "hub", f"extractors/{feature}.safetensors", file_sha256(hub_weights))
        recorded = Path(str(provenance.get("path") or ""))
        if provenance.get("source") == "file" and recorded.is_absolute() and recorded.is_file() and recorded_sha \
                and file_sha256(recorded) == recorded_sha:  # a path from config.json, used only with its sha256
            extractor = create_extractor("timm", variant, str(recorded), allow_pickle=False)
            return built(extractor, "checkpoint", extractor.checkpoint_file, extractor.checkpoint_sha256)
        if provenance.get("source") == "hub":
            try:
                return built(create_extractor("timm", variant, pretrained=True), "hub", provenance.get("hub_id"))
            except ExtractorSpecError as error:
                logger.warning("%s", error)
        extractor = create_extractor("timm", variant, pretrained=False, random_seed=seed)
        warnings.warn(
            f"extractor timm:{variant} for feature {feature!r} has NO weights (the model was trained with "
            f"{provenance.get('checkpoint')!r}; pass checkpoints={{{feature!r}: path}} or --checkpoint {feature}=FILE): "
            "it runs with RANDOM WEIGHTS and the predictions are meaningless", UserWarning, stacklevel=3)
        return built(extractor, "random")

    options = {}
    if family == "audio":
        audio = provenance.get("audio") or provenance.get("preprocessing") or {}
        options = {key: float(audio[key]) for key in ("window_seconds", "chunk_seconds", "context_seconds") if key in audio}
    source, pooling = provenance.get("source") or variant, provenance.get("pooling")
    suffix = f":{pooling}" if family == "hf" and pooling else ""
    if given is not None:
        extractor = create_extractor(family, f"{Path(given).expanduser().resolve()}{suffix}", **options)
        return built(extractor, "checkpoint", str(given), extractor.checkpoint_sha256)
    if provenance.get("hub"):
        extractor = create_extractor(family, f"{source}{suffix}", revision=provenance.get("revision"), **options)
        return built(extractor, "hub", source, provenance.get("revision"))
    folder = Path(str(source))
    if not folder.is_absolute() or not (folder / "config.json").is_file():
        raise PipelineError(f"feature {feature!r} comes from {family}:{source}, which is not on this machine; pass "
                            f"--checkpoint {feature}=FOLDER (checkpoints={{{feature!r}: folder}}) with that model")
    if recorded_sha and folder_weights_sha256(folder) != recorded_sha:
        raise PipelineError(f"feature {feature!r}: {folder} no longer holds the weights the model was trained with "
                            f"(sha256 differs); pass --checkpoint {feature}=FOLDER to use it anyway")
    extractor = create_extractor(family, f"{folder}{suffix}", **options)
    return built(extractor, "checkpoint", str(folder), extractor.checkpoint_sha256)


def report_given_extractors(config, extractors: dict) -> list[ExtractorWeights]:
    """The weights report of extractors built by the caller (tests, benchmarks) rather than from provenance."""
    missing = [name for name in config.feature_names if name not in extractors]
    if missing:
        raise PipelineError(f"extractors for {missing} are missing; the model uses {config.feature_names}")
    report = []
    for name in config.feature_names:
        extractor = extractors[name]
        source = "random" if extractor.random_init else "checkpoint" if extractor.needs_checkpoint else "built-in"
        report.append(ExtractorWeights(name, extractor.name, extractor.variant, source,
                                       extractor.checkpoint_file, extractor.checkpoint_sha256))
    return report
