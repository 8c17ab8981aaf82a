"""Publishing to the Hugging Face Hub, by job:

- ``repo``: what a staged repo is (``StagedRepo``, ``StagingError``, ``describe``)
- ``card``: the model card, rendered from ``model_card.md`` beside it
- ``staging``: model repo and Space folders (nothing here talks to the Hub); ``wheel``: the wheel a Space installs
- ``upload``: the one seam to the Hub (``hub_api``), used by models, Spaces and datasets (``abaw_hf.data.publish``)
"""

from .card import MODEL_CARD_TEMPLATE, read_metrics, render_model_card
from .repo import STAGING_MARKER, StagedRepo, StagingError, describe
from .staging import (
    EXTRACTOR_WEIGHTS_DIR,
    SPACE_SOURCE,
    export_extractor_weights,
    stage_model_repo,
    stage_space_repo,
    trained_on_synthetic_data,
)
from .upload import hub_api, upload_folder, upload_staged
from .wheel import build_wheel

__all__ = [
    "EXTRACTOR_WEIGHTS_DIR", "MODEL_CARD_TEMPLATE", "SPACE_SOURCE", "STAGING_MARKER", "StagedRepo", "StagingError",
    "build_wheel", "describe", "export_extractor_weights", "hub_api", "read_metrics",
    "render_model_card", "stage_model_repo", "stage_space_repo", "trained_on_synthetic_data",
    "upload_folder", "upload_staged",
]
