"""abaw_hf: multi-task facial affect recognition (ABAW MTL) in the Hugging Face ecosystem.

Importing the package is light (no torch, no transformers) so that ``abaw-hf --help`` starts at once. The model
classes load on first access (``abaw_hf.AbawFusionModel``), and the fusion model is registered with the
transformers Auto classes as soon as transformers is imported — before or after ``import abaw_hf`` — so
``AutoModel.from_pretrained("org/abaw-fusion")`` works without ``trust_remote_code`` either way.
"""

from __future__ import annotations

import importlib

from ._import_hooks import when_imported
from ._lazy import lazy_exports

__version__ = "0.1.0"

# public names, imported from their module on first access (PEP 562, `abaw_hf._lazy`)
__getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, {
    ".modeling": ["AU_NAMES", "EXPRESSION_NAMES", "AbawFusionConfig", "AbawFusionModel", "AbawFusionOutput"],
})

__all__ = [*_LAZY_NAMES, "__version__", "register_auto_classes"]


def register_auto_classes() -> None:
    """Register ``abaw_fusion`` with ``AutoConfig`` / ``AutoModel`` (the hooks below do it on their own)."""
    importlib.import_module("abaw_hf.modeling").register_auto_classes()


# Register when transformers is imported (by the user or by our modeling code), never earlier: torch costs
# seconds. The modeling modules are watched too because their own import of transformers comes too early.
for _module in ("transformers", "abaw_hf.modeling.configuration_abaw_fusion", "abaw_hf.modeling.modeling_abaw_fusion"):
    when_imported(_module, register_auto_classes)
del _module
