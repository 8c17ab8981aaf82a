"""The pipeline's errors: user errors (`abaw_hf.errors.UserError`) whose message names the file and the reason."""

from __future__ import annotations

from ..errors import UserError


class PipelineError(UserError, ValueError):
    """Input the pipeline cannot use; the message names the file and the reason."""


class ImageReadError(PipelineError):
    """An image file that cannot be used; `path` and `reason` say which and why."""

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path, self.reason = path, reason


class ExtractorNotInstalledError(PipelineError):
    """The model's provenance names an extractor this installation does not have."""
