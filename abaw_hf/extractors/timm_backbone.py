"""``--extractor timm:<model>[=<weights file>]``: any timm architecture as a feature column ``timm_<model>``.

The vector is timm's pre-logits (``forward_features`` then ``forward_head(pre_logits=True)``), ``num_features``
wide; preprocessing is the model's own (``timm.data.resolve_data_config`` / ``create_transform``: size, crop,
interpolation, mean/std). Weights: a local file (safetensors or a torch checkpoint) read by timm's loader
(weights-only) and its model's checkpoint filter, matched strictly but for the classifier; without a file, the
Hub weights timm names (online, or in the Hub cache); with ``--random-init``, random weights.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .base import ModelPreprocess
from .checkpoints import CheckpointError, file_sha256
from .open_models import ExtractorSpecError, OpenExtractor, column_slug
from .registry import register_extractor


class TimmPreprocess(ModelPreprocess):
    """timm's eval transform for a data config (``resolve_data_config``), applied to each RGB uint8 face crop."""

    def __init__(self, data_config: dict):
        self.data_config = {key: (tuple(value) if isinstance(value, (list, tuple)) else value)
                            for key, value in data_config.items()}
        self.input_shape = tuple(int(v) for v in self.data_config["input_size"])
        self._transform = None

    def transform(self):
        if self._transform is None:
            from timm.data import create_transform

            self._transform = create_transform(**self.data_config)
        return self._transform

    def __call__(self, images) -> torch.Tensor:
        from PIL import Image

        transform = self.transform()
        return torch.stack([transform(Image.fromarray(np.ascontiguousarray(image))) for image in images])

    def to_dict(self) -> dict:
        return {"library": "timm", **{key: list(value) if isinstance(value, tuple) else value
                                      for key, value in self.data_config.items()}}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_transform": None}  # rebuilt in each worker


def _timm():
    import timm

    return timm


@register_extractor("timm")
class TimmExtractor(OpenExtractor):
    """A timm backbone's pre-logits features of a face crop."""

    example: ClassVar[str] = "timm:convnext_tiny=convnext_tiny.safetensors"

    def __init__(self, variant: str | None = None, *, weights: str | Path | None = None, pretrained: bool = False,
                 allow_pickle: bool = False) -> None:
        super().__init__(variant)
        timm = _timm()
        spec = self.spec + (f"={weights}" if weights else "")
        if not timm.is_model(variant):
            close = timm.list_models(f"*{variant}*")[:8]
            hint = f"; similar names: {', '.join(close)}" if close else "; `python -c \"import timm; print(timm.list_models())\"` lists them"
            raise ExtractorSpecError(f"--extractor {spec}: timm has no model {variant!r}{hint}")
        self.name = f"timm_{column_slug(variant)}"
        if weights is not None:
            model = timm.create_model(variant, pretrained=False, num_classes=0)
            self._load_file(model, Path(weights), spec, allow_pickle)
            self.source_info = {"source": "file", "path": str(Path(weights).expanduser().resolve()), "random_init": False}
        elif pretrained:
            try:
                model = timm.create_model(variant, pretrained=True, num_classes=0)
            except Exception as error:  # timm / huggingface_hub raise many kinds when the weights cannot be had
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                raise ExtractorSpecError(
                    f"--extractor {spec}: cannot get the pretrained weights timm names for {variant!r} ({first}); "
                    f"give a local file, timm:{variant}=FILE, or pass --random-init (tests and benchmarks only)"
                ) from None
            cfg = getattr(model, "pretrained_cfg", {}) or {}
            self.source_info = {"source": "hub", "hub_id": cfg.get("hf_hub_id"), "tag": cfg.get("tag"),
                                "random_init": False}
            self.checkpoint_file = cfg.get("hf_hub_id") or cfg.get("url")
        else:
            model = timm.create_model(variant, pretrained=False, num_classes=0)
            self.source_info = {"source": "random", "random_init": True}
        self.model = model.eval()
        self.preprocess_cfg = TimmPreprocess(timm.data.resolve_data_config({}, model=model))
        with torch.inference_mode():
            self.dim = int(self.forward(torch.zeros(1, *self.preprocess_cfg.input_shape)).shape[-1])

    @classmethod
    def from_spec(cls, variant, checkpoint=None, *, random_seed=None, allow_pickle=False, pretrained=True, **kwargs):
        """``timm:<model>=FILE`` loads FILE; without one, the Hub weights timm names (``pretrained``) or random
        weights that ``random_seed`` makes the same in every process."""
        if checkpoint is not None or pretrained:
            return cls(variant, weights=checkpoint, pretrained=checkpoint is None, allow_pickle=allow_pickle, **kwargs)
        with torch.random.fork_rng(devices=[]):
            if random_seed is not None:
                torch.manual_seed(random_seed)
            return cls(variant, **kwargs)

    def _load_file(self, model, path: Path, spec: str, allow_pickle: bool) -> None:
        """timm's own reading (weights-only unless allowed) and checkpoint filter, then a strict match of every
        key but the classifier's: a file for another architecture is a message, never a half-loaded network."""
        from timm.models import load_state_dict

        if not path.is_file():
            raise CheckpointError(f"--extractor {spec}: no such weights file {path}")
        try:
            state = load_state_dict(str(path), weights_only=not allow_pickle)
        except Exception as error:  # torch / safetensors errors for unreadable or unsafe files
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise CheckpointError(f"--extractor {spec}: cannot read {path.name} ({first})") from None
        filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                state = filter_fn(state, model)
            except Exception as error:  # a filter meeting keys it does not expect
                raise CheckpointError(f"--extractor {spec}: {path.name} does not fit {self.variant} "
                                      f"(timm's checkpoint filter: {type(error).__name__}: {error})"[:400]) from None
        classifier = model.pretrained_cfg.get("classifier") or ()
        classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        state = {k: v for k, v in state.items() if not any(k.startswith(c + ".") for c in classifier)}
        own = model.state_dict()
        mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
                      if k in own and tuple(v.shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        if mismatched or missing or unexpected:
            parts = [f"{label} {items[:3]}{' ...' if len(items) > 3 else ''} ({len(items)})"
                     for label, items in (("shape mismatches", mismatched), ("missing", missing),
                                          ("unexpected", unexpected)) if items]
            raise CheckpointError(f"--extractor {spec}: {path.name} does not fit timm model {self.variant!r}: "
                                  + "; ".join(parts))
        model.load_state_dict(state, strict=False)
        self.checkpoint_file = path.name
        self.checkpoint_sha256 = file_sha256(path)

    @property
    def random_init(self) -> bool:
        return bool(self.source_info.get("random_init"))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(pixel_values)
        return self.model.forward_head(features, pre_logits=True)
