"""What every subcommand's flags share: value types (a bad value is argparse's own 'invalid value' message, exit
status 2), ``--runtime``/``--onnx-dir`` (predict, extract) and ``--extractor``/``--random-init`` (build, extract).
The command line is the only layer that imports argparse."""

from __future__ import annotations

import argparse

from ..onnx import DEFAULT_RUNTIME, RUNTIMES
from ..specs import EXTRACTOR_SPEC, OPEN_SPEC_HELP


# ----- argparse value types: a bad flag value is argparse's own 'invalid value' message (exit 2) -------------


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def face_selection(text: str) -> str:
    """``--faces``: all, largest or a number N >= 1 (`abaw_hf.faces.multi_tracking.parse_face_selection`)."""
    from ..faces.multi_tracking import parse_face_selection

    try:
        parse_face_selection(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def add_runtime_arguments(parser) -> None:
    """``--runtime`` and ``--onnx-dir``, the same in every command that runs the networks (predict, extract)."""
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
                        help="what runs the networks: auto (on CPU onnxruntime for the extractors measured faster "
                             "there, which declare onnx_on_cpu; torch for the rest and "
                             "on GPU; default), torch, or onnx (every network, exported on first use). auto takes "
                             "the graphs `abaw-hf export-onnx MODEL` verified into $ABAW_HF_ONNX_CACHE; predict "
                             "never waits for an export (without them those networks run under torch), extract "
                             "exports them as its first step")
    parser.add_argument("--onnx-dir", metavar="DIR",
                        help="run every network from the graphs of `abaw-hf export-onnx` (implies --runtime onnx)")


def add_extractor_arguments(group: argparse._ActionsContainer, *, required: bool) -> None:
    """``--extractor`` (repeatable, one feature column each) and ``--random-init``, as build and extract take them."""
    group.add_argument("--extractor", action="append", required=required, metavar=EXTRACTOR_SPEC,
                       help="a registered extractor and its official checkpoint, or any backbone: "
                            f"{OPEN_SPEC_HELP}; repeat for several (one column each)")
    group.add_argument("--random-init", action="store_true",
                       help="allow extractors without a checkpoint (random weights: for tests and benchmarks only)")
