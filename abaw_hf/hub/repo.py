"""What a staged Hub repo is: a folder to upload as it is, its marker, and the error for anything that cannot be
published."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..outputs import MARKER as STAGING_MARKER  # the output marker (`abaw_hf.outputs`): never uploaded
from ..outputs import BOOKKEEPING_PATTERN


class StagingError(UserError, ValueError):
    """A model folder or option that cannot be published; the message says which file and why."""


@dataclass
class StagedRepo:
    """A folder ready to upload as it is."""

    folder: Path
    repo_id: str
    repo_type: str  # "model", "space" or "dataset"
    space_variables: dict[str, str] = field(default_factory=dict)
    allow_patterns: list[str] | None = None  # the files of the folder that form the repo (None: all)
    status: str | None = None  # what the weights are (`abaw_hf.status.weights_status`), for a model repo

    @property
    def files(self) -> list[str]:
        names = (str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file()
                 and not fnmatch.fnmatch(p.name, BOOKKEEPING_PATTERN))
        return sorted(name for name in names if self.allow_patterns is None
                      or any(fnmatch.fnmatch(name, pattern) for pattern in self.allow_patterns))


def describe(staged: StagedRepo) -> str:
    """What would be sent: one line per file with its size."""
    lines = [f"{staged.repo_type} repo {staged.repo_id} <- {staged.folder}"]
    if staged.status is not None:
        from ..status import status_line

        lines.append(f"  {status_line(staged.status)}")
    for name in staged.files:
        lines.append(f"  {name}  ({(staged.folder / name).stat().st_size:,} bytes)")
    return "\n".join(lines)

