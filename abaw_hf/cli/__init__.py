"""The ``abaw-hf`` command line.

The one layer that parses arguments: one module per subcommand in this package (``build``, ``extract``, ``train``, ``evaluate``, ``predict``, ``tune``,
``submit``, ``push``, ``export_onnx``), each exposing ``add_arguments(parser)`` and ``run(args) -> int`` and calling
the library (which never imports argparse); ``arguments`` holds the value types and flags several commands share.
Modules are imported only when their subcommand runs, so ``abaw-hf --help`` stays fast and one broken optional
dependency cannot break the others. ``scripts/*.py`` call the same functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import DEBUG_FLAG, run_command, strip_debug_flag

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build": ("abaw_hf.cli.build", "build a feature dataset from annotations and feature files"),
    "extract": ("abaw_hf.cli.extract", "extract per-frame features from frames or a video into a dataset"),
    "train": ("abaw_hf.cli.train", "train the fusion model (--config FILE.yaml and flags; also under accelerate launch)"),
    "evaluate": ("abaw_hf.cli.evaluate", "evaluate one or several trained models on a dataset"),
    "predict": ("abaw_hf.cli.predict", "per-frame predictions for a video or images, as CSV"),
    "tune": ("abaw_hf.cli.tune", "choose the smoothing width and per-AU thresholds on validation"),
    "submit": ("abaw_hf.cli.submit", "write or check an ABAW MTL test submission file"),
    "push": ("abaw_hf.cli.push", "stage and upload a trained model (and its Space) to the Hub"),
    "export-onnx": ("abaw_hf.cli.export_onnx", "export the fusion model and its torch extractors to verified ONNX graphs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abaw-hf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


# subcommands that run networks: their threads follow the cores free to them (`abaw_hf.threads`)
RUNS_NETWORKS = {"extract", "train", "evaluate", "predict", "tune", "submit", "export-onnx"}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; a user error is a message and exit status 2 (``--debug`` shows the traceback).
    Run as the console script (``argv`` None), a subcommand that runs networks takes as many threads as cores are
    free to it (`abaw_hf.threads`); a caller in the same process keeps its own setting."""
    as_command = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = strip_debug_flag(argv)
    if not commands or commands[0] not in SUBCOMMANDS:
        build_parser().parse_args(commands)  # prints usage / error and exits
        return 2
    name, rest = commands[0], commands[1:]
    prog = f"abaw-hf {name}"
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=prog, description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(rest)
    if as_command and name in RUNS_NETWORKS:
        from ..threads import configure_threads

        configure_threads()
    return run_command(prog, lambda: module.run(args), argv)

