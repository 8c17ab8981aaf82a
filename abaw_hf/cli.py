"""The ``abaw-hf`` command line.

Each subcommand lives next to the code it drives: a module exposing ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their subcommand runs, so
``abaw-hf --help`` stays fast and one broken optional dependency cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build": ("abaw_hf.data.cli", "build a feature dataset from annotations and feature files"),
    "extract": ("abaw_hf.extraction.cli", "extract per-frame features from frames or a video into a dataset"),
    "evaluate": ("abaw_hf.evaluation", "evaluate one or several trained models on a dataset"),
    "predict": ("abaw_hf.pipeline_cli", "per-frame predictions for a video or images, as CSV"),
    "tune": ("abaw_hf.postprocess", "choose the smoothing width and per-AU thresholds on validation"),
    "submit": ("abaw_hf.submission", "write or check an ABAW MTL test submission file"),
    "push": ("abaw_hf.hub", "stage and upload a trained model (and its Space) to the Hub"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abaw-hf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv)  # prints usage / error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"abaw-hf {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
