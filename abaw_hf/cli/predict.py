"""``abaw-hf predict VIDEO|IMAGES -o out.csv``: per-frame predictions of a trained model as CSV."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from ..errors import UserError, check_output_file
from ..faces.settings import BACKENDS, DEFAULT_BACKEND
from ..specs import parse_assignments
from .arguments import add_runtime_arguments, face_selection, non_negative_float, non_negative_int, positive_int

DEFAULT_MODEL = "outputs/abaw-fusion"  # what `make demo` writes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="a video, image files, or a folder of images")
    parser.add_argument("-o", "--output", required=True, help="CSV file to write (one row per frame or image)")
    parser.add_argument(
        "--model", default=None,
        help=f"Hub id or local folder of the fusion model (default: $ABAW_MODEL_ID, else {DEFAULT_MODEL} in the "
             "current folder, what `make demo` writes in the clone)",
    )
    parser.add_argument(
        "--checkpoint", action="append", metavar="FEATURE=PATH",
        help="official checkpoint for one of the model's extractors (repeatable)",
    )
    parser.add_argument("--allow-pickle", action="store_true", help="trust checkpoints that are plain pickles (VGGFace2)")
    parser.add_argument("--window", type=positive_int, default=None, help="frames per fusion window (default: the model's training window)")
    parser.add_argument("--max-gap", type=non_negative_int, default=None, help="a frame gap above this starts a new window")
    parser.add_argument("--smoothing-sigma", type=non_negative_float, default=None, help="temporal smoothing in frames (0 = off)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="face crops per extractor batch")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="only the first N frames of a video")
    parser.add_argument("--face-backend", default=DEFAULT_BACKEND, choices=BACKENDS,
                        help="face detector (default %(default)s: every face, in the wild)")
    parser.add_argument("--faces", type=face_selection, default="all",
                        help="which tracked faces get rows: all, largest, or a number N (the N largest; default all)")
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")
    add_runtime_arguments(parser)


def default_model() -> str:
    """``$ABAW_MODEL_ID``, else the `make demo` output in the current folder; a missing default is a message
    naming where it was looked for and how to give a model."""
    if os.environ.get("ABAW_MODEL_ID"):
        return os.environ["ABAW_MODEL_ID"]
    if not Path(DEFAULT_MODEL).is_dir():
        raise UserError(f"no --model given, and the default {DEFAULT_MODEL} is not here ({Path(DEFAULT_MODEL).resolve()}"
                        "): pass --model FOLDER or a Hub id, set ABAW_MODEL_ID, or run `make demo` in the clone and "
                        "predict from there")
    return DEFAULT_MODEL


def run(args: argparse.Namespace) -> int:
    from ..pipeline import AffectPipeline
    from ..pipeline.table import write_csv

    check_output_file(args.output)
    for item in args.inputs:  # before the (slow) model load
        if not Path(item).exists():
            raise UserError(f"{item}: no such file or folder")
    if args.model is None:
        args.model = default_model()
    checkpoints = dict(parse_assignments(args.checkpoint, "--checkpoint", "FEATURE=PATH"))
    options = {"batch_size": args.batch_size, "face_backend": args.face_backend, "faces": args.faces,
               "allow_pickle": args.allow_pickle,
               "runtime": args.runtime, "onnx_dir": args.onnx_dir}
    for name in ("window", "max_gap", "smoothing_sigma"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the weights report below says the same, once
        pipeline = AffectPipeline.from_pretrained(args.model, checkpoints=checkpoints, device=args.device, **options)
    print(pipeline.weights_report, file=sys.stderr)
    print(f"runtime: {pipeline.runtime_summary}", file=sys.stderr)
    if pipeline.runtime_notes:  # auto never makes this call wait for an export; one explicit step prepares them
        print(f"  ({', '.join(pipeline.runtime_notes)} run under torch this time: `abaw-hf export-onnx {args.model}` "
              "prepares the ONNX graphs once, then --runtime auto runs them under onnxruntime, faster on CPU)",
              file=sys.stderr)
    from ..threads import configured

    if configured() is not None:  # the console script: threads from the cores free to it
        print(f"threads: {configured()}", file=sys.stderr)
    inputs = args.inputs
    if len(inputs) == 1:
        single = Path(inputs[0])
        table = pipeline.predict_video(single, max_frames=args.max_frames) if _is_video(single) else pipeline(single)
    else:
        table = pipeline.predict_images(inputs)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_csv(table, output, pipeline.weights_report.status)
    for message in table.attrs.get("warnings", []):
        if message not in pipeline.weights_report.warnings:
            print(f"warning: {message}", file=sys.stderr)
    found = int(table["face_found"].sum())
    people = int(table["face"].nunique())
    print(f"wrote {output}: {len(table)} rows, a face in {found} ({people} tracked face{'s' * (people != 1)}); "
          f"stage seconds {_rounded(pipeline.timings)}")
    pipeline.close()
    return 0


def _is_video(path: Path) -> bool:
    from ..pipeline import IMAGE_SUFFIXES

    return path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 2) for name, value in timings.items()}
