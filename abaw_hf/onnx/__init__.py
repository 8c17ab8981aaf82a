"""ONNX export of the fusion model and its torch extractors, and an ONNX Runtime path with the torch call signatures.

    abaw-hf export-onnx outputs/abaw-fusion -o onnx/     # fusion.onnx, extractors/<feature>.onnx, onnx_export.json
    abaw-hf predict clip.mp4 --runtime onnx -o out.csv   # the same pipeline, networks run by onnxruntime

`export` writes and verifies the graphs; `runtime` holds the drop-in objects (`OnnxFusionModel`, `OnnxExtractor`)
and `use_runtime`, the one switch the pipeline and extraction call. Needs the ``onnx`` extra (onnx, onnxruntime).
"""

RUNTIMES = ("torch", "onnx")  # which engine runs the networks; preprocessing, faces and fau are the same in both
DEFAULT_RUNTIME = "torch"


def add_runtime_arguments(parser) -> None:
    """``--runtime`` and ``--onnx-dir``, the same in every command that runs the networks (predict, extract)."""
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
                        help="what runs the networks: torch, or onnxruntime (CPU; its CUDA provider when installed) "
                             "on graphs exported and verified against torch on first use (default: %(default)s)")
    parser.add_argument("--onnx-dir", metavar="DIR",
                        help="with --runtime onnx: the graphs of `abaw-hf export-onnx` (default: export into the cache)")
