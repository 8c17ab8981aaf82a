"""``abaw-hf train`` and ``scripts/train.py``: the same flags (``--config FILE.yaml`` + TrainConfig's), the same
``train(config)``. A user error is a message and exit status 2 (``--debug`` shows the traceback)."""

from __future__ import annotations

import argparse
import sys

from ..errors import run_command
from .config import add_arguments, parse_train_config, train_config_from_args

__all__ = ["add_arguments", "run", "main"]


def run(args: argparse.Namespace) -> int:
    from .loop import train  # torch and accelerate load here, not for --help

    train(train_config_from_args(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python scripts/train.py ...`` (also under ``accelerate launch``)."""
    argv = sys.argv[1:] if argv is None else argv

    def parse_and_train() -> int:
        from .loop import train

        train(parse_train_config(argv))
        return 0

    return run_command("train.py", parse_and_train, argv)
