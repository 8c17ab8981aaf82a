"""``abaw-hf train`` and ``scripts/train.py``: the same flags (``--config FILE.yaml`` + one flag per `TrainConfig`
field), the same ``train(config)``. A user error is a message and exit status 2 (``--debug`` shows the traceback).

The flags take the forms of transformers' HfArgumentParser (``--name`` and ``--name-with-dashes``, ``--flag
[true|false]`` and ``--no_flag`` for a boolean that defaults to true, ``nargs="+"`` for a list), built here so
``--help`` needs no transformers. Their values go through TrainConfig's own type engine
(`abaw_hf.training.config.checked_config_value`), the one that reads the YAML file: a flag and a YAML key accept
the same words. A flag that is not given stays out of the namespace, so the YAML value (or the default) holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from ..errors import EXIT_USER_ERROR, ConfigError, run_command, strip_debug_flag
from ..training.config import (SettingError, TrainConfig, checked_config_value, field_type,
                               load_train_config)

__all__ = ["add_arguments", "run", "main", "parse_train_config", "train_config_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` and one ``--flag`` per TrainConfig field on ``parser``."""
    parser.add_argument("--config", metavar="FILE.yaml", nargs="?", const="", default=argparse.SUPPRESS,
                        help="settings file: its values are the defaults, flags override them")
    for item in dataclasses.fields(TrainConfig):
        _add_field_flag(parser, item)


def _add_field_flag(parser: argparse.ArgumentParser, item: dataclasses.Field) -> None:
    names = [f"--{item.name}"] + ([f"--{item.name.replace('_', '-')}"] if "_" in item.name else [])
    base = field_type(item.name)
    common = {"help": item.metadata.get("help"), "default": argparse.SUPPRESS}
    if base is bool:
        parser.add_argument(*names, type=_value_of(item.name, bool), nargs="?", const=True, metavar="true|false",
                            **common)
        if item.default is True:
            parser.add_argument(f"--no_{item.name}", f"--no-{item.name.replace('_', '-')}", action="store_false",
                                dest=item.name, help=f"turn off --{item.name}", default=argparse.SUPPRESS)
    elif typing.get_origin(base) is list:
        parser.add_argument(*names, nargs="+", **common)  # the names; TrainConfig splits "a+b" and checks them
    else:
        parser.add_argument(*names, type=_value_of(item.name, base), **common)


def _value_of(key: str, base: type):
    """The flag's value through TrainConfig's type engine; a bad one is argparse's 'invalid int value: ...'
    (or 'expected true or false' for a boolean), as before."""

    def convert(text: str):
        try:
            return checked_config_value(key, text)
        except SettingError:
            if base is bool:
                raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None
            raise ValueError(text) from None

    convert.__name__ = base.__name__  # argparse names the type in its message
    return convert


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a namespace parsed with ``add_arguments``: the YAML file's values, then the flags."""
    flags = {item.name: getattr(args, item.name) for item in dataclasses.fields(TrainConfig) if hasattr(args, item.name)}
    return load_train_config(getattr(args, "config", None), **flags)


def parse_train_config(argv: list[str] | None = None) -> TrainConfig:
    """``--config file.yaml`` gives defaults, every other ``--flag`` overrides them; unknown keys are errors.
    Every problem is a ConfigError naming the file, key or flag (``--debug`` is left to ``run_command``)."""
    parser = argparse.ArgumentParser(prog="train.py", description="--config FILE.yaml gives defaults; flags override them")

    def refuse(message: str):  # argparse would print the whole usage; one line naming the flag is enough
        raise ConfigError(f"{message} (--help lists the flags)")

    parser.error = refuse
    add_arguments(parser)
    args, unused = parser.parse_known_args(strip_debug_flag(sys.argv[1:] if argv is None else argv))
    if unused:
        raise ConfigError(f"unknown flag(s) {' '.join(unused)}; --help lists the flags")
    return train_config_from_args(args)


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
