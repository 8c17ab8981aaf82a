"""``abaw-hf train`` and ``scripts/train.py``: the same flags (``--config FILE.yaml`` + TrainConfig's), the same
``train(config)``. A user error is a message and exit status 2 (``--debug`` shows the traceback)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import EXIT_USER_ERROR, run_command
from ..training.config import add_arguments, parse_train_config, train_config_from_args

__all__ = ["add_arguments", "run", "main"]


def run(args: argparse.Namespace) -> int:
    from ..training.loop import train  # torch and accelerate load here, not for --help

    train(train_config_from_args(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python scripts/train.py ...`` (also under ``accelerate launch``). As a script (``argv`` None), each process
    takes the threads of its share of the free cores (`abaw_hf.threads`)."""
    as_script = argv is None
    argv = sys.argv[1:] if argv is None else argv

    def parse_and_train() -> int:
        from ..training.loop import train

        config = parse_train_config(argv)
        if as_script:
            from ..threads import configure_threads

            configure_threads()
        train(config)
        return 0

    status = run_command("train.py", parse_and_train, argv)
    if status == EXIT_USER_ERROR and os.environ.get("ACCELERATE_MIXED_PRECISION") is not None:
        # `accelerate launch` answers a non-zero exit with its own CalledProcessError traceback after this line
        print("train.py: (the error is the line above; accelerate launch may add a CalledProcessError traceback "
              "of its own, reporting this exit status 2: `accelerate launch --quiet` leaves it out)", file=sys.stderr)
    return status
