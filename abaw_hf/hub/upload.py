"""Sending staged folders to the Hub: model repos, Spaces and feature datasets alike. ``hub_api`` is the one
object every Hub call goes through (tests replace it)."""

from __future__ import annotations

from .repo import BOOKKEEPING_PATTERN, StagedRepo


def hub_api(token: str | None = None):
    """The one object every Hub call goes through (tests replace this function)."""
    from huggingface_hub import HfApi

    return HfApi(token=token)


def upload_folder(
    staged: StagedRepo, *, token: str | None = None, private: bool = False, revision: str | None = None,
    commit_message: str | None = None,
) -> tuple[str, str | None]:
    """Create the repo if needed and upload the staged folder in one commit; returns (repo URL, commit URL)."""
    api = hub_api(token)
    create_kwargs = {"repo_type": staged.repo_type, "private": private, "exist_ok": True}
    if staged.repo_type == "space":
        create_kwargs["space_sdk"] = "gradio"
        create_kwargs["space_variables"] = [{"key": k, "value": v} for k, v in staged.space_variables.items()]
    url = api.create_repo(staged.repo_id, **create_kwargs)
    commit = api.upload_folder(
        repo_id=staged.repo_id,
        folder_path=str(staged.folder),
        repo_type=staged.repo_type,
        revision=revision,
        commit_message=commit_message or f"Upload {staged.repo_type} from abaw_hf",
        allow_patterns=staged.allow_patterns,
        ignore_patterns=[BOOKKEEPING_PATTERN],
    )
    return str(url), None if commit is None else str(getattr(commit, "commit_url", commit))


def upload_staged(
    staged: StagedRepo, *, token: str | None = None, private: bool = False, commit_message: str | None = None
) -> str:
    """``upload_folder``, returning the repo URL."""
    return upload_folder(staged, token=token, private=private, commit_message=commit_message)[0]
