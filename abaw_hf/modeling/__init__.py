"""The fusion model. The files in this folder are self-contained and ship as remote code.

The package itself is lazy: ``labels_abaw_fusion`` (names, missing markers) and ``tasks_abaw_fusion`` (the task table:
each head's output name, width and activation) import without torch, and the classes load on first access. ``register_auto_classes`` is the one place that registers ``abaw_fusion``
with the transformers Auto classes; ``abaw_hf/__init__.py`` calls it once transformers or these modules load.
"""

from __future__ import annotations

from .._import_hooks import is_executing
from .._lazy import lazy_exports
from .labels_abaw_fusion import AU_NAMES, EXPRESSION_NAMES
from .tasks_abaw_fusion import OUTPUT_FIELDS, PREDICTION_FIELDS, TASKS, Task, register_task, unregister_task

_CONFIGURATION = "abaw_hf.modeling.configuration_abaw_fusion"
_MODELING = "abaw_hf.modeling.modeling_abaw_fusion"
# the classes load on first access (PEP 562, `abaw_hf._lazy`): the names above need no torch
__getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, {
    ".configuration_abaw_fusion": ["AbawFusionConfig"],
    ".modeling_abaw_fusion": ["AbawFusionModel", "AbawFusionOutput", "AbawFusionPreTrainedModel"],
})

__all__ = ["AU_NAMES", "EXPRESSION_NAMES", "OUTPUT_FIELDS", "PREDICTION_FIELDS", "TASKS", "Task", *_LAZY_NAMES,
           "register_auto_classes", "register_task", "unregister_task"]


def register_auto_classes() -> None:
    """Register the config and model with AutoConfig / AutoModel, and for ``save_pretrained``'s remote code.

    Called from import hooks; while one of the modeling modules is still executing (its own import of
    transformers fired the hook) this returns, and the hook after that module's import registers.
    """
    if is_executing(_CONFIGURATION) or is_executing(_MODELING):
        return
    from transformers import AutoConfig, AutoModel

    from .configuration_abaw_fusion import AbawFusionConfig
    from .modeling_abaw_fusion import AbawFusionModel

    AutoConfig.register(AbawFusionConfig.model_type, AbawFusionConfig, exist_ok=True)
    AutoModel.register(AbawFusionConfig, AbawFusionModel, exist_ok=True)
    # save_pretrained copies the modeling files and writes `auto_map`, so trust_remote_code works without abaw_hf
    AbawFusionConfig.register_for_auto_class()
    AbawFusionModel.register_for_auto_class("AutoModel")
