"""``abaw-hf export-onnx MODEL -o DIR``: the fusion model and each torch extractor it names, as verified ONNX graphs.

Writes DIR/fusion.onnx (inputs: one [batch, time, D] tensor per feature, attention_mask, feature_mask.<feature>,
frame_index; outputs valence_arousal, expression_logits, au_logits), DIR/extractors/<feature>.onnx (pixel_values
[batch, 3, S, S] -> features [batch, D]; preprocessing in the JSON) and DIR/onnx_export.json (inputs, outputs,
weights fingerprints, extractor provenance, versions, and the measured onnxruntime-vs-torch difference).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import check_output_folder
from ..specs import parse_assignments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="Hub id or local folder of the fusion model")
    parser.add_argument("-o", "--output", required=True, help="folder to write the graphs and onnx_export.json into")
    parser.add_argument("--checkpoint", action="append", metavar="FEATURE=PATH",
                        help="official checkpoint for one of the model's extractors (repeatable)")
    parser.add_argument("--allow-pickle", action="store_true", help="trust checkpoints that are plain pickles (VGGFace2)")
    parser.add_argument("--revision", help="Hub revision of the model")


def run(args: argparse.Namespace) -> int:
    output = check_output_folder(args.output)
    checkpoints = dict(parse_assignments(args.checkpoint, "--checkpoint", "FEATURE=PATH"))
    from ..model_loading import load_fusion_model
    from ..pipeline.weights import build_extractors
    from .runtime import require_onnxruntime
    from .export import export_model

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
