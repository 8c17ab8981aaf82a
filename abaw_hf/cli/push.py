"""``abaw-hf push`` (and ``scripts/push_to_hub.py``): stage the model repo (and the Space), list it, upload it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import outputs
from ..errors import run_command
from ..specs import parse_assignments
from ..hub.repo import StagingError, describe
from ..hub.staging import stage_model_repo, stage_space_repo
from ..hub.upload import upload_staged

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="folder written by save_pretrained (training output)")
    parser.add_argument("--repo-id", default="org/abaw-fusion", help="model repo on the Hub (default: %(default)s)")
    parser.add_argument("--staging-dir", default=None, help="where to stage the repo folders (default: <model_dir>/../hub_staging)")
    parser.add_argument("--metrics", default=None, help="evaluation JSON for the model-index (default: <model_dir>/eval_results.json)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--synthetic", dest="synthetic", action="store_true", default=None, help="weights come from synthetic demo data")
    data.add_argument("--real-data", dest="synthetic", action="store_false", help="weights come from real (s-Aff-Wild2) data")
    parser.add_argument(
        "--extractor-checkpoint", action="append", metavar="FEATURE=PATH",
        help="also publish this extractor's weights as extractors/FEATURE.safetensors (repeatable)",
    )
    parser.add_argument("--allow-pickle", action="store_true", help="trust checkpoints that are plain pickles (VGGFace2)")
    parser.add_argument("--space-id", default=None, help="also stage (and push) the Gradio Space to this repo")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    parser.add_argument("--dry-run", action="store_true", help="stage and list the files, upload nothing")


def _check_repo_id(repo_id: str, flag: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise StagingError(f"{flag} {repo_id!r} is not a Hub repo id; write it as ORG/NAME (letters, digits, '-', '_', '.')") from None


def run(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir)
    _check_repo_id(args.repo_id, "--repo-id")
    if args.space_id:
        _check_repo_id(args.space_id, "--space-id")
    if not model_dir.is_dir():
        raise StagingError(f"{model_dir}: no such model folder (the output_dir of scripts/train.py)")
    staging = Path(args.staging_dir) if args.staging_dir else model_dir.parent / "hub_staging"
    with outputs.writing(staging, "--staging-dir"):  # a folder abaw_hf did not write is refused; one writer at a time
        staged = _stage(args, model_dir, staging)
    for repo in staged:
        print(describe(repo))
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    for repo in staged:
        print(f"uploaded: {upload_staged(repo, token=args.token, private=args.private)}")
    return 0


def _stage(args: argparse.Namespace, model_dir: Path, staging: Path) -> list:
    staged = [
        stage_model_repo(
            model_dir, staging / "model", repo_id=args.repo_id, metrics=args.metrics, synthetic=args.synthetic,
            extractor_checkpoints=dict(parse_assignments(args.extractor_checkpoint, "--extractor-checkpoint", "FEATURE=PATH")),
            allow_pickle=args.allow_pickle,
        )
    ]
    if args.space_id:
        staged.append(stage_space_repo(staging / "space", space_id=args.space_id, model_id=args.repo_id))
    return staged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="push_to_hub", description="stage and upload a trained model (and its Space)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command("push_to_hub", lambda: run(args), argv)
