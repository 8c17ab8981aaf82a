"""abaw_hf: multi-task facial affect recognition (ABAW MTL) in the Hugging Face ecosystem.

Importing the package registers the fusion model with the transformers Auto classes, so
``AutoModel.from_pretrained("org/abaw-fusion")`` works without ``trust_remote_code``.
"""

from .modeling import (
    AU_NAMES,
    EXPRESSION_NAMES,
    AbawFusionConfig,
    AbawFusionModel,
    AbawFusionOutput,
)

__version__ = "0.1.0"

__all__ = [
    "AU_NAMES",
    "EXPRESSION_NAMES",
    "AbawFusionConfig",
    "AbawFusionModel",
    "AbawFusionOutput",
    "__version__",
]
