"""Each torch extractor and the paper-size fusion model under torch (eager) and ONNX Runtime, in one run.

Prints frames/s at each batch size, the fraction of the fp32 torch.mm rate measured in the same run (FLOPs counted
with FlopCounterMode), and the largest |onnxruntime - torch| difference; then which runtime was faster at every
batch size, beside what ``--runtime auto`` picks on CPU (`abaw_hf.onnx.CPU_ONNX_NETWORKS`). CPU, torch's thread
count for both runtimes.

    python benchmarks/bench_runtime.py [--extractors resnet18 poster2 eac poster] [--batch 1 8 32] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(__file__))
from profiling import calls_per_second_rate as rate  # noqa: E402
from profiling import flops_per_frame, mm_flops_per_second  # noqa: E402

from abaw_hf import AbawFusionConfig, AbawFusionModel  # noqa: E402
from abaw_hf.extractors import create_extractor  # noqa: E402
from abaw_hf.onnx import CPU_ONNX_NETWORKS  # noqa: E402
from abaw_hf.onnx.export import example_fusion_inputs, fusion_input_names  # noqa: E402
from abaw_hf.onnx.runtime import onnx_extractor, onnx_fusion_model  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractors", nargs="+", default=["resnet18", "poster2", "eac", "poster"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("ABAW_HF_ONNX_CACHE", tempfile.mkdtemp(prefix="abaw-onnx-"))
    warnings.simplefilter("ignore")
    cpu = torch.device("cpu")
    limit = mm_flops_per_second(cpu)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; "
          f"fp32 torch.mm limit {limit / 1e9:.0f} GFLOP/s")
    print("| network | batch | GFLOPs/frame | torch frames/s | torch % of limit | onnxruntime frames/s "
          "| onnxruntime % of limit | onnx / torch | max abs diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    speedups: dict[str, list[float]] = {}
    for name in args.extractors:
        extractor = create_extractor(name, random_seed=0)
        flops = flops_per_frame(extractor, cpu)
        onnx_version = onnx_extractor(extractor)
        size = extractor.preprocess_cfg.input_size
        module = extractor.inference_module()
        layout = torch.channels_last if extractor.channels_last else torch.contiguous_format
        for batch in args.batch:
            pixels = extractor.preprocess(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))

            def run_torch():
                with torch.inference_mode():
                    return module(pixels.contiguous(memory_format=layout))

            difference = (onnx_version.features(pixels) - run_torch()).abs().max().item()
            speedups.setdefault(name, []).append(_row(
                name, batch, flops, rate(run_torch, batch, args.seconds),
                rate(lambda: onnx_version.features(pixels), batch, args.seconds), limit, difference))
    # the paper's fusion model: resnet18 + poster2 + fau, 384-d, 4 layers, 4 heads, windows of 16 frames
    config = AbawFusionConfig(feature_dims={"resnet18": 512, "poster2": 768, "fau": 17}, hidden_size=384,
                              num_hidden_layers=4, num_attention_heads=4)
    model = AbawFusionModel(config).eval()
    onnx_model = onnx_fusion_model(model)
    names = fusion_input_names(config)
    length = 16
    for windows in (1, 16):  # one window (a photo, a short clip) and a full batch of windows
        inputs = example_fusion_inputs(config, windows, length, missing=0.1)
        inputs["attention_mask"][:] = True
        as_torch = {name: torch.from_numpy(inputs[name]) for name in names}
        torch_inputs = dict(features={n: as_torch[n] for n in config.feature_names},
                            attention_mask=as_torch["attention_mask"],
                            feature_mask={n: as_torch[f"feature_mask.{n}"] for n in config.feature_names},
                            frame_index=as_torch["frame_index"])
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            expected = model(**torch_inputs)
        difference = (onnx_model(**torch_inputs).valence_arousal - expected.valence_arousal).abs().max().item()

        def run_torch():
            with torch.inference_mode():
                return model(**torch_inputs)

        frames = windows * length
        speedups.setdefault("fusion", []).append(_row(
            "fusion", f"{windows} x {length} frames", counter.get_total_flops() / frames,
            rate(run_torch, frames, args.seconds), rate(lambda: onnx_model(**torch_inputs), frames, args.seconds),
            limit, difference))

    print("\n| network | onnx / torch at each batch | faster at every batch | `--runtime auto` on CPU |")
    print("| --- | --- | --- | --- |")
    for name, ratios in speedups.items():
        faster = "onnxruntime" if min(ratios) > 1 else "torch" if max(ratios) < 1 else "neither"
        chosen = "onnxruntime" if name in CPU_ONNX_NETWORKS else "torch"
        print(f"| {name} | {', '.join(f'{r:.2f}x' for r in ratios)} | {faster} | {chosen} |")


def _row(name, batch, flops, torch_rate, onnx_rate, limit, difference) -> float:
    print(f"| {name} | {batch} | {flops / 1e9:.3f} | {torch_rate:.1f} | {100 * flops * torch_rate / limit:.0f} % | "
          f"{onnx_rate:.1f} | {100 * flops * onnx_rate / limit:.0f} % | {onnx_rate / torch_rate:.2f}x | {difference:.1e} |",
          flush=True)
    return onnx_rate / torch_rate


if __name__ == "__main__":
    main()
