"""``abaw-hf export-onnx MODEL -o DIR``: the fusion model and each torch extractor it names, as verified ONNX graphs.

Without ``-o``, the graphs ``--runtime auto`` uses (on CPU: the extractors that declare `onnx_on_cpu`) go into the ONNX
cache, verified: the explicit step after which `predict` and the pipeline run those networks under onnxruntime
(they never export during a call).

Writes DIR/fusion.onnx (inputs: one [batch, time, D] tensor per feature, attention_mask, feature_mask.<feature>,
frame_index; outputs: one per task of the model, `Task.output`), DIR/extractors/<feature>.onnx (pixel_values
[batch, 3, S, S] -> features [batch, D]; preprocessing in the JSON) and DIR/onnx_export.json (inputs, outputs,
weights fingerprints, extractor provenance, versions, and the measured onnxruntime-vs-torch difference).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .. import outputs
from ..specs import parse_assignments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="Hub id or local folder of the fusion model")
    parser.add_argument("-o", "--output", default=None,
                        help="folder to write the graphs and onnx_export.json into (default: prepare the graphs "
                             "--runtime auto uses, in the ONNX cache $ABAW_HF_ONNX_CACHE)")
    parser.add_argument("--checkpoint", action="append", metavar="FEATURE=PATH",
                        help="official checkpoint for one of the model's extractors (repeatable)")
    parser.add_argument("--allow-pickle", action="store_true", help="trust checkpoints that are plain pickles (VGGFace2)")
    parser.add_argument("--revision", help="Hub revision of the model")


def run(args: argparse.Namespace) -> int:
    if args.output is None:
        return prepare_cache(args)
    output = outputs.check_claimable(args.output, "--output")  # a folder abaw_hf did not write is refused
    with outputs.writing(output, "--output"):  # one writer at a time
        return _export(args, output)


def _export(args: argparse.Namespace, output) -> int:
    checkpoints = dict(parse_assignments(args.checkpoint, "--checkpoint", "FEATURE=PATH"))
    from ..model_loading import load_fusion_model
    from ..pipeline.weights import build_extractors
    from ..onnx.runtime import require_onnxruntime
    from ..onnx.export import export_model

    require_onnxruntime()
    model = load_fusion_model(args.model, revision=args.revision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the weights report below says the same, once
        extractors, weights = build_extractors(model.config, checkpoints=checkpoints, model_id=args.model,
                                               revision=args.revision, allow_pickle=args.allow_pickle)
    for entry in weights:
        if entry.source == "random":
            print(f"warning: extractor {entry.extractor!r} for {entry.feature!r} has RANDOM weights", file=sys.stderr)
    exported = export_model(model, extractors, output, model_id=args.model)
    manifest = exported.manifest
    graphs = ["fusion.onnx", *(entry["file"] for entry in manifest["extractors"].values())]
    differences = [manifest["fusion"]["max_abs_difference"], *(e["max_abs_difference"] for e in manifest["extractors"].values())]
    print(f"wrote {output}: {', '.join(graphs)} and onnx_export.json; largest |onnxruntime - torch| "
          f"{max(differences):.2g}; in {manifest['export_seconds']} s")
    return 0


def prepare_cache(args: argparse.Namespace) -> int:
    """The graphs ``--runtime auto`` runs under onnxruntime, exported and checked into the ONNX cache."""
    from ..model_loading import load_fusion_model
    from ..pipeline.weights import build_extractors
    from ..onnx.runtime import cache_folder, prepare_graphs

    checkpoints = dict(parse_assignments(args.checkpoint, "--checkpoint", "FEATURE=PATH"))
    model = load_fusion_model(args.model, revision=args.revision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights are said where predictions are made
        extractors, _ = build_extractors(model.config, checkpoints=checkpoints, model_id=args.model,
                                         revision=args.revision, allow_pickle=args.allow_pickle)
    done = prepare_graphs(extractors)
    if not done:
        print(f"{args.model}: --runtime auto runs none of its networks under onnxruntime; nothing to prepare")
        return 0
    for feature, what in done.items():
        print(f"{feature}: {what}")
    ready = [feature for feature, what in done.items() if not what.startswith("not prepared")]
    print(f"ONNX cache: {cache_folder()}; --runtime auto runs {', '.join(ready) or 'none of them'} under onnxruntime")
    return 0
