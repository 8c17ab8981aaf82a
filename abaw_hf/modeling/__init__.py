"""The fusion model. The files in this folder are self-contained and ship as remote code."""

from transformers import AutoConfig, AutoModel

from .configuration_abaw_fusion import AU_NAMES, EXPRESSION_NAMES, AbawFusionConfig
from .modeling_abaw_fusion import AbawFusionModel, AbawFusionOutput, AbawFusionPreTrainedModel

AutoConfig.register(AbawFusionConfig.model_type, AbawFusionConfig, exist_ok=True)
AutoModel.register(AbawFusionConfig, AbawFusionModel, exist_ok=True)
# save_pretrained copies the modeling files and writes `auto_map`, so trust_remote_code works without abaw_hf
AbawFusionConfig.register_for_auto_class()
AbawFusionModel.register_for_auto_class("AutoModel")

__all__ = [
    "AU_NAMES",
    "EXPRESSION_NAMES",
    "AbawFusionConfig",
    "AbawFusionModel",
    "AbawFusionOutput",
    "AbawFusionPreTrainedModel",
]
