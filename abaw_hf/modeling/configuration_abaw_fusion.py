"""Configuration of the ABAW fusion model.

Self-contained (single-dot imports only) so that ``save_pretrained`` ships working remote code.

Validated once, by the dataclass: the annotations below are real types (no ``from __future__ import annotations``,
which would turn them into strings that huggingface_hub's ``@strict`` skips), so ``@strict`` checks every field's
type on assignment, and ``__post_init__`` checks the values no type can express (ranges, choices, lengths).
"""

import math
import re
from typing import Any

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers import PretrainedConfig

from .labels_abaw_fusion import (  # noqa: F401  re-exported: the label space is part of the config's API
    AU_NAMES,
    EXPRESSION_NAMES,
    FUSION_MODES,
    MODEL_DEFAULTS,
    MISSING_AU,
    MISSING_EXPRESSION,
    MISSING_VA,
    NUM_AUS,
    NUM_EXPRESSIONS,
    POSITION_ENCODINGS,
)

# The paper's best Table 1 row: ResNet-18 (MS-Celeb) + POSTER V2 + OpenFace AU intensities.
DEFAULT_FEATURE_DIMS = {"resnet18": 512, "poster2": 768, "fau": 17}


# Keys that transformers itself reads or writes in config.json; any other unknown key is an error.
_TRANSFORMERS_KEYS = {
    "model_type", "auto_map", "name_or_path", "_name_or_path", "torch_dtype", "num_labels",
    "output_attentions", "use_cache", "tie_word_embeddings", "pad_token_id", "bos_token_id",
    "eos_token_id", "sep_token_id", "decoder_start_token_id", "tokenizer_class", "prefix",
    "task_specific_params", "finetuning_task", "add_cross_attention", "tf_legacy_loss",
    "use_bfloat16", "pruned_heads", "torchscript", "cross_attention_hidden_size",
    "attn_implementation", "experts_implementation", "_attn_implementation_autoset",
    "_commit_hash", "_attn_implementation_internal", "_experts_implementation_internal",
    "per_layer_config", "trust_remote_code",
}


_POSITIVE_INTS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "max_window", "num_expressions", "num_aus")


@strict(accept_kwargs=True)
class AbawFusionConfig(PretrainedConfig):
    r"""
    Configuration for [`AbawFusionModel`]: per-extractor affine layers, positional encoding, a transformer
    encoder and three heads (valence/arousal, 8 expressions, 12 action units).

    Args:
        feature_dims (`dict[str, int]`): extractor name -> feature dimension.
        feature_names (`list[str]`, *optional*): the extractors' order (concatenation order); defaults to the
            order of `feature_dims`. Kept as a list because config.json sorts dict keys.
        hidden_size (`int`): common dimension every feature is projected to (the affine module).
        fusion (`str`): `"concat"` (paper eq. 2: per-frame concatenation, encoder over the T frames) or
            `"tokens"` (released code: one token per extractor plus a cls token, encoder across extractors per frame).
        concat_projection (`int`, *optional*): in `concat` mode, project the n·hidden_size concatenation to this
            width before the encoder; `None` keeps n·hidden_size.
        position_encoding (`str`): `"sinusoidal"`, `"learned"` or `"none"`; follows `frame_index`.
        max_window (`int`): largest frame offset inside a window (size of the learned table; checked for both).
        window (`int`, *optional*): frames per window the model was trained with; every inference path uses it.
        max_gap (`int`, *optional*): a frame-number gap above this started a new window in training; inference
            splits windows and smoothing the same way. Both are set by training (`None`: not recorded).
        num_hidden_layers, num_attention_heads, mlp_ratio, hidden_dropout_prob, attention_dropout_prob: encoder.
        num_expressions, num_aus: head sizes.
        valence_mse_weight, valence_ccc_weight, arousal_mse_weight, arousal_ccc_weight: per-dimension VA losses.
        va_loss_weight, expression_loss_weight, au_loss_weight: task weights of the total loss
            (total = va·(L_V + L_A)/2 + expr·L_expr + au·L_AU); a weight of 0 switches a head's loss off.
        au_loss_weights (`list[float]`): per-AU weights w_i of the weighted asymmetric loss.
        au_thresholds (`list[float]`): per-AU probability thresholds used by every prediction path.
        au_names (`list[str]`): names of the AU outputs, in order.
        extractors (`dict[str, dict]`): provenance per feature (registry name, variant, preprocessing,
            checkpoint file and sha256) so a pipeline can rebuild the extractors from the model alone.
        tasks (`list[str]`, *optional*): the model's heads, by task name (rows of `tasks_abaw_fusion.TASKS`); `None`:
            ABAW's three (va, expression, au). Training sets it when `register_task` added a row.
    """

    model_type = "abaw_fusion"

    feature_dims: dict[str, int] | None = None
    feature_names: list[str] | None = None
    hidden_size: int = MODEL_DEFAULTS["hidden_size"]
    fusion: str = MODEL_DEFAULTS["fusion"]
    concat_projection: int | None = MODEL_DEFAULTS["concat_projection"]
    position_encoding: str = MODEL_DEFAULTS["position_encoding"]
    max_window: int = 512
    window: int | None = None
    max_gap: int | None = None
    num_hidden_layers: int = MODEL_DEFAULTS["num_hidden_layers"]
    num_attention_heads: int = MODEL_DEFAULTS["num_attention_heads"]
    mlp_ratio: float | int = MODEL_DEFAULTS["mlp_ratio"]
    hidden_dropout_prob: float | int = MODEL_DEFAULTS["hidden_dropout_prob"]
    attention_dropout_prob: float | int = MODEL_DEFAULTS["attention_dropout_prob"]
    layer_norm_eps: float | int = 1e-5
    initializer_range: float | int = 0.02
    num_expressions: int = NUM_EXPRESSIONS
    num_aus: int = NUM_AUS
    valence_mse_weight: float | int = 0.6
    valence_ccc_weight: float | int = 0.4
    arousal_mse_weight: float | int = 0.5
    arousal_ccc_weight: float | int = 0.5
    va_loss_weight: float | int = MODEL_DEFAULTS["va_loss_weight"]
    expression_loss_weight: float | int = MODEL_DEFAULTS["expression_loss_weight"]
    au_loss_weight: float | int = MODEL_DEFAULTS["au_loss_weight"]
    au_loss_weights: list[float | int] | None = None
    au_thresholds: list[float | int] | None = None
    au_names: list[str] | None = None
    extractors: dict[str, Any] | None = None
    tasks: list[str] | None = None

    def __post_init__(self, **kwargs):
        unknown = sorted(set(kwargs) - _TRANSFORMERS_KEYS)
        if unknown:
            raise ValueError(f"AbawFusionConfig got unknown key(s) {unknown}; known keys: {sorted(self._own_keys())}")
        if self.feature_dims is None:
            self.feature_dims = dict(DEFAULT_FEATURE_DIMS)
        self.feature_dims = {str(k): int(v) for k, v in self.feature_dims.items()}
        # feature names name files (extractors/<feature>.safetensors) and dataset columns: plain words only
        bad_names = [k for k in self.feature_dims if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", k) or ".." in k]
        if bad_names:
            raise ValueError(f"feature names must be plain words (letters, digits, '_', '-', '.'), got {bad_names}")
        if not self.feature_dims or any(d <= 0 for d in self.feature_dims.values()):
            raise ValueError(f"feature_dims must name at least one extractor with a positive dim, got {self.feature_dims}")
        self.feature_names = list(self.feature_names) if self.feature_names is not None else list(self.feature_dims)
        if sorted(self.feature_names) != sorted(self.feature_dims) or len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"feature_names {self.feature_names} must list each key of feature_dims {list(self.feature_dims)} once")
        self.feature_dims = {name: self.feature_dims[name] for name in self.feature_names}
        self._check_ranges()
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.position_encoding not in POSITION_ENCODINGS:
            raise ValueError(f"position_encoding must be one of {POSITION_ENCODINGS}, got {self.position_encoding!r}")
        if self.encoder_width % self.num_attention_heads:
            raise ValueError(
                f"encoder width {self.encoder_width} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        self.au_names = list(self.au_names) if self.au_names is not None else list(AU_NAMES[: self.num_aus])
        self.au_loss_weights = self._per_au("au_loss_weights", self.au_loss_weights, 1.0)
        self.au_thresholds = self._per_au("au_thresholds", self.au_thresholds, 0.5)
        self.extractors = dict(self.extractors or {})
        unknown_provenance = sorted(set(self.extractors) - set(self.feature_dims))
        if unknown_provenance:
            raise ValueError(f"extractors provenance names {unknown_provenance}, which are not in feature_dims")
        if self.id2label is None:
            self.id2label = {i: name for i, name in enumerate(EXPRESSION_NAMES[: self.num_expressions])}
            self.label2id = {name: i for i, name in self.id2label.items()}
        super().__post_init__(**kwargs)

    def _check_ranges(self) -> None:
        """The values a type cannot refuse but no model can have (e.g. a hand-edited config.json): one message
        naming every such key."""
        problems = [f"{key} must be >= 1, got {getattr(self, key)!r}" for key in _POSITIVE_INTS
                    if not getattr(self, key) >= 1]
        if not (math.isfinite(self.mlp_ratio) and self.mlp_ratio > 0):
            problems.append(f"mlp_ratio must be a finite number > 0, got {self.mlp_ratio!r}")
        for key in ("hidden_dropout_prob", "attention_dropout_prob"):
            if not 0 <= getattr(self, key) <= 1:
                problems.append(f"{key} must be between 0 and 1, got {getattr(self, key)!r}")
        if self.window is not None and not self.window >= 1:
            problems.append(f"window must be >= 1, got {self.window!r}")
        if self.max_gap is not None and not self.max_gap >= 0:
            problems.append(f"max_gap must be >= 0, got {self.max_gap!r}")
        thresholds, weights = list(self.au_thresholds or []), list(self.au_loss_weights or [])
        if not all(math.isfinite(t) and 0 < t < 1 for t in thresholds):
            problems.append(f"au_thresholds must be finite numbers strictly between 0 and 1, got {thresholds}")
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            problems.append(f"au_loss_weights must be finite numbers >= 0, got {weights}")
        if problems:
            raise ValueError("; ".join(problems))

    def _own_keys(self) -> list[str]:
        return [k for k in type(self).__annotations__ if not k.startswith("_")]

    def _per_au(self, name: str, values, default: float) -> list[float]:
        values = [float(default)] * self.num_aus if values is None else [float(v) for v in values]
        if len(values) != self.num_aus:
            raise ValueError(f"{name} needs {self.num_aus} values (one per AU), got {len(values)}")
        return values

    def to_dict(self) -> dict[str, Any]:
        # ``tasks`` is written only for a model whose heads are not ABAW's three (config.json stays as it was)
        output = super().to_dict()
        if output.get("tasks") is None:
            output.pop("tasks", None)
        return output

    @property
    def encoder_width(self) -> int:
        """Width of the transformer encoder's tokens."""
        if self.fusion == "concat":
            return self.concat_projection or self.hidden_size * len(self.feature_dims)
        return self.hidden_size


def config_problem(error: BaseException) -> str:
    """What AbawFusionConfig refused, in one line: a wrong type (``@strict`` names the field and the expected type
    one line below its own heading) or a value (``__post_init__``)."""
    cause = error.__cause__ if isinstance(error, StrictDataclassError) and error.__cause__ else error
    text = str(cause).strip()
    return (text.splitlines()[0] if text else type(cause).__name__)[:300]


__all__ = [
    "AU_NAMES", "EXPRESSION_NAMES", "MISSING_AU", "MISSING_EXPRESSION", "MISSING_VA", "NUM_AUS", "NUM_EXPRESSIONS",
    "AbawFusionConfig",
]
