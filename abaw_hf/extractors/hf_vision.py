"""``--extractor hf:<repo id or folder>[:cls|mean|pooler]``: a transformers vision backbone (ViT, DINOv2, ViT-MAE,
CLIP/SigLIP vision, ConvNeXt, Swin, ...) through ``AutoModel`` + ``AutoImageProcessor``, as column
``hf_<name>_<pooling>``.

Pooling: ``cls`` (the first token of ``last_hidden_state``), ``mean`` (every token, or every position of a
convolutional map) or ``pooler`` (the model's ``pooler_output``); by default ``cls`` for token sequences (a
ViT's pooler layer may be missing from its checkpoint, hence random), and for feature maps ``pooler`` where the
model has one (ConvNeXt: normalised global average), else ``mean``. Preprocessing is the image processor's own. ViT-MAE runs
with ``mask_ratio=0`` (every patch seen); a CLIP/SigLIP folder runs its vision tower. From the Hub, the commit that
was loaded is recorded (``revision``); from a folder, the sha256 of its weights.
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import torch

from .base import ModelPreprocess
from .open_models import (ExtractorSpecError, OpenExtractor, column_slug, hub_commit, load_problem,
                          transformers_source)
from .registry import register_extractor

POOLINGS = ("cls", "mean", "pooler")


class HfImagePreprocess(ModelPreprocess):
    """A transformers image processor, applied to RGB uint8 face crops (``pixel_values``)."""

    def __init__(self, processor, probe_size: int = 112):
        self.processor = processor
        probe = np.zeros((probe_size, probe_size, 3), np.uint8)
        self.input_shape = tuple(int(v) for v in self(list([probe])).shape[1:])

    def __call__(self, images) -> torch.Tensor:
        return self.processor(images=list(images), return_tensors="pt")["pixel_values"]

    def to_dict(self) -> dict:
        settings = self.processor.to_dict()
        recorded = {"library": "transformers", "processor": type(self.processor).__name__,
                    **{key: settings[key] for key in sorted(settings) if key in _RECORDED}}
        return json.loads(json.dumps(recorded, default=str))  # as stored in dataset and config JSON


_RECORDED = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
             "do_normalize", "image_mean", "image_std", "do_convert_rgb")


def split_pooling(variant: str) -> tuple[str, str | None]:
    """``source[:pooling]`` -> (source, pooling or None)."""
    source, sep, last = variant.rpartition(":")
    if sep and last in POOLINGS:
        return source, last
    return variant, None


@register_extractor("hf")
class HfVisionExtractor(OpenExtractor):
    """A transformers vision backbone's pooled features of a face crop."""

    example: ClassVar[str] = "hf:facebook/dinov2-small:cls"

    def __init__(self, variant: str | None = None, *, revision: str | None = None) -> None:
        super().__init__(variant)
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        source, pooling = split_pooling(variant)
        spec = self.spec
        info = transformers_source(spec, source, revision)
        try:
            config = AutoConfig.from_pretrained(info["source"], revision=revision)
        except (OSError, ValueError, KeyError) as error:
            raise load_problem(spec, source, error) from None
        try:
            processor = AutoImageProcessor.from_pretrained(info["source"], revision=revision)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ExtractorSpecError(
                f"--extractor {spec}: {source} has no image processor ({str(error).splitlines()[0][:160]}); "
                "hf: takes vision backbones (speech encoders go to audio:)"
            ) from None
        if hasattr(config, "mask_ratio"):
            config.mask_ratio = 0.0  # ViT-MAE: features of the whole face, no random masking
        try:
            model = AutoModel.from_pretrained(info["source"], config=config, revision=revision)
        except (OSError, ValueError, KeyError) as error:
            raise load_problem(spec, source, error) from None
        if hasattr(model, "vision_model") and hasattr(config, "vision_config"):
            model = model.vision_model  # CLIP / SigLIP: the image tower
        if info["hub"]:
            info["revision"] = getattr(config, "_commit_hash", None) or hub_commit(info["source"], revision)
        self.model = model.eval()
        self.preprocess_cfg = HfImagePreprocess(processor)
        with torch.inference_mode():
            outputs = self.model(pixel_values=torch.zeros(1, *self.preprocess_cfg.input_shape))
        if pooling is None:  # a token model's own pooler may be untrained (ViT without pooler weights): cls
            pooling = "cls" if outputs.last_hidden_state.ndim == 3 else (
                "pooler" if getattr(outputs, "pooler_output", None) is not None else "mean")
        if pooling == "pooler" and getattr(outputs, "pooler_output", None) is None:
            raise ExtractorSpecError(f"--extractor {spec}: {type(model).__name__} has no pooler output; use :cls or :mean")
        if pooling == "cls" and outputs.last_hidden_state.ndim != 3:
            raise ExtractorSpecError(f"--extractor {spec}: {type(model).__name__} gives a feature map, no CLS token; "
                                     "use :mean or :pooler")
        self.pooling = pooling
        self.variant = f"{info['source']}:{pooling}"
        self.name = f"hf_{column_slug(source)}_{pooling}"
        self.checkpoint_sha256 = info["sha256"]
        self.checkpoint_file = None if info["hub"] else info["source"]
        self.source_info = {"source": info["source"], "hub": info["hub"], "revision": info["revision"],
                            "pooling": pooling, "model_type": config.model_type, "random_init": False}
        with torch.inference_mode():
            self.dim = int(self._pool(outputs).shape[-1])

    def _pool(self, outputs) -> torch.Tensor:
        if self.pooling == "pooler":
            return outputs.pooler_output.flatten(1)
        hidden = outputs.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.flatten(2).mean(dim=-1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._pool(self.model(pixel_values=pixel_values))
