"""ONNX export of the fusion model and its torch extractors, and an ONNX Runtime path with the torch call signatures.

    abaw-hf export-onnx outputs/abaw-fusion              # the graphs --runtime auto uses, into the ONNX cache
    abaw-hf export-onnx outputs/abaw-fusion -o onnx/     # fusion.onnx, extractors/<feature>.onnx, onnx_export.json
    abaw-hf predict clip.mp4 --runtime onnx -o out.csv   # every network run by onnxruntime

`export` writes and verifies the graphs; `runtime` holds the drop-in objects (`OnnxFusionModel`, `OnnxExtractor`)
and `runtime_networks` / `runtime_extractors`, the one switch the pipeline and extraction call. This module stays light
(no torch): the command line reads the choices below for ``--help``.
"""

from .._lazy import lazy_exports

RUNTIMES = ("auto", "torch", "onnx")  # what runs the networks; preprocessing, faces and fau are the same in all
DEFAULT_RUNTIME = "auto"

# The networks onnxruntime ran faster than eager torch on CPU at batch 1, 8 and 32 in every run, with parity
# <= 1e-5 (`benchmarks/bench_runtime.py` on the 2-core CPU, 4 runs: 1.04-1.99x; the README has the table) declare
# ``onnx_on_cpu = True`` in their extractor class (resnet18, eac, poster); ``CPU_ONNX_NETWORKS`` reads the registry
# (`abaw_hf.extractors.registry.cpu_onnx_networks`) on first use. ``auto`` runs these under onnxruntime on CPU;
# POSTER V2 (0.85-0.96x at batch 8 and 32), the fusion model (0.74-0.98x for a full batch of windows), the open
# families (timm:, hf:, audio:) and every network on a GPU (not measured: no GPU was lent) stay with torch.


# the registry imports torch: read only when asked, never for --help
__getattr__, _, _ = lazy_exports(__name__, {}, computed={
    "CPU_ONNX_NETWORKS": ("abaw_hf.extractors.registry", "cpu_onnx_networks"),
})
