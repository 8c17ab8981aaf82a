"""What the open families (`timm:`, `hf:`, `audio:`) share: the feature column a spec makes, where the weights came
from (a file's sha256, a folder's weights, the Hub commit), and the messages for sources that are not models.

Column names (documented in the README): ``timm:<model>`` -> ``timm_<model>``, ``hf:<source>[:<pooling>]`` ->
``hf_<name>_<pooling>``, ``audio:<source>`` -> ``audio_<name>``, where ``<name>`` is the folder's or Hub repo's
last part, lower case, every run of other characters than letters and digits as one ``_``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import ClassVar

from ..errors import UserError
from .base import Extractor
from .checkpoints import CheckpointError, file_sha256

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class ExtractorSpecError(UserError, ValueError):
    """An ``--extractor`` spec of an open family that cannot be built (names the spec and what to do)."""


def column_slug(text: str) -> str:
    """``facebook/dinov2-small`` -> ``dinov2_small``; ``/models/My Model/`` -> ``my_model``."""
    last = str(text).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^a-z0-9]+", "_", last.lower()).strip("_") or "model"


def is_local_source(source: str) -> bool:
    """A folder on disk (or a path written as one), rather than a Hub repo id ``org/name``."""
    return Path(source).expanduser().exists() or source.startswith((".", "/", "~")) or "\\" in source


def folder_weights_sha256(folder: str | Path) -> str | None:
    """One sha256 over a model folder's weight files (names and bytes, in name order); None without any."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        return None
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    return digest.hexdigest()


def transformers_source(spec: str, source: str, revision: str | None) -> dict:
    """Where a transformers model comes from: the absolute folder and its weights' sha256, or the Hub id and the
    commit it resolved to (filled in after loading). A folder without config.json is a message naming the spec."""
    if is_local_source(source):
        folder = Path(source).expanduser().resolve()
        if not folder.is_dir():
            raise ExtractorSpecError(f"--extractor {spec}: {folder} is not a folder (give a model folder or a Hub id)")
        if not (folder / "config.json").is_file():
            raise ExtractorSpecError(
                f"--extractor {spec}: {folder} is not a transformers model folder (no config.json); save one with "
                "model.save_pretrained(folder) and processor.save_pretrained(folder)"
            )
        return {"source": str(folder), "hub": False, "revision": None, "sha256": folder_weights_sha256(folder)}
    return {"source": source, "hub": True, "revision": revision, "sha256": None}


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a Hub id resolves to (from the Hub, or the Hub cache offline): the snapshot folder's name."""
    from huggingface_hub import hf_hub_download

    try:
        snapshot = Path(hf_hub_download(repo_id, "config.json", revision=revision)).parent.name
    except Exception:  # huggingface_hub raises many kinds; the model itself loaded, the commit stays unknown
        return revision
    return snapshot if re.fullmatch(r"[0-9a-f]{40}", snapshot) else revision


def load_problem(spec: str, source: str, error: Exception) -> ExtractorSpecError:
    """A transformers loading error as one message naming the spec (a Hub id that is not cached offline, say)."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    hint = "" if is_local_source(source) else " (offline, a Hub id loads only when it is in the Hub cache)"
    return ExtractorSpecError(f"--extractor {spec}: cannot load {source}: {first}{hint}")


class OpenExtractor(Extractor):
    """Base of the open families: any variant string, the column name on the instance, provenance of the source."""

    open_family: ClassVar[bool] = True
    layouts: ClassVar[dict] = {}

    def __init__(self, variant: str | None = None) -> None:
        if not variant:
            raise ExtractorSpecError(f"--extractor {type(self).name}: needs a model, e.g. {type(self).example}")
        super().__init__(variant)
        self.family = type(self).name
        self.source_info: dict = {}

    example: ClassVar[str] = ""

    @classmethod
    def from_spec(cls, variant: str | None, checkpoint=None, *, random_seed: int | None = None,
                  allow_pickle: bool = False, pretrained: bool = True, **kwargs) -> OpenExtractor:
        """The extractor of ``<family>:<variant>[=<checkpoint>]`` (`registry.create_extractor` calls this)."""
        if checkpoint is not None:
            raise CheckpointError(f"--extractor {cls.name}:{variant}={checkpoint}: {cls.name}: takes its weights from "
                                  "the model folder or Hub id itself, not from =FILE")
        return cls(variant, **kwargs)

    @classmethod
    def resolve_variant(cls, variant: str | None) -> str | None:
        return variant

    @property
    def layout(self) -> str:
        return self.family

    @property
    def spec(self) -> str:
        return f"{self.family}:{self.variant}"

    @property
    def random_init(self) -> bool:
        return bool(self.source_info.get("random_init"))

    def load_checkpoint(self, path, *, strict: bool = True, allow_pickle: bool = False):
        raise CheckpointError(f"--extractor {self.spec}={path}: {self.family}: takes its weights from the model "
                              "folder or Hub id itself, not from =FILE")

    def provenance(self) -> dict:
        return {
            "name": self.family,
            "variant": self.variant,
            "family": self.family,
            "spec": self.spec,
            "column": self.name,
            "dim": int(self.dim),
            "layout": self.layout,
            "preprocessing": self.preprocess_cfg.to_dict(),
            "checkpoint": self.checkpoint_file,
            "sha256": self.checkpoint_sha256,
            "random_init": self.random_init,
            **{key: value for key, value in self.source_info.items() if key not in ("random_init", "sha256")},
        }
