"""Each torch extractor and the paper-size fusion model under torch (eager) and ONNX Runtime, in one run.

Prints frames/s, the fraction of the fp32 torch.mm rate measured in the same run (FLOPs counted with
FlopCounterMode), and the largest |onnxruntime - torch| difference. CPU, torch's thread count for both runtimes.

    python benchmarks/bench_runtime.py [--extractors resnet18 poster2 eac poster] [--batch 8] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(__file__))
from profiling import calls_per_second_rate as rate  # noqa: E402
from profiling import flops_per_frame, mm_flops_per_second  # noqa: E402

from abaw_hf import AbawFusionConfig, AbawFusionModel  # noqa: E402
from abaw_hf.extractors import create_extractor  # noqa: E402
from abaw_hf.onnx.export import example_fusion_inputs, fusion_input_names  # noqa: E402
from abaw_hf.onnx.runtime import onnx_extractor, onnx_fusion_model  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractors", nargs="+", default=["resnet18", "poster2", "eac", "poster"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("ABAW_HF_ONNX_CACHE", tempfile.mkdtemp(prefix="abaw-onnx-"))
    warnings.simplefilter("ignore")
    cpu = torch.device("cpu")
    limit = mm_flops_per_second(cpu)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; "
          f"fp32 torch.mm limit {limit / 1e9:.0f} GFLOP/s")
    print(f"| network (batch {args.batch}) | GFLOPs/frame | torch frames/s | torch % of limit | onnxruntime frames/s "
          "| onnxruntime % of limit | onnx / torch | max abs diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for name in args.extractors:
        extractor = create_extractor(name, random_seed=0)
        flops = flops_per_frame(extractor, cpu)
        onnx_version = onnx_extractor(extractor)
        size = extractor.preprocess_cfg.input_size
        pixels = extractor.preprocess(rng.integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8))
        module = extractor.inference_module()
        layout = torch.channels_last if extractor.channels_last else torch.contiguous_format

        def run_torch():
            with torch.inference_mode():
                return module(pixels.contiguous(memory_format=layout))

        difference = (onnx_version.features(pixels) - run_torch()).abs().max().item()
        _row(name, flops, rate(run_torch, args.batch, args.seconds),
             rate(lambda: onnx_version.features(pixels), args.batch, args.seconds), limit, difference)
    # the paper's fusion model: resnet18 + poster2 + fau, 384-d, 4 layers, 4 heads, windows of 16 frames
    config = AbawFusionConfig(feature_dims={"resnet18": 512, "poster2": 768, "fau": 17}, hidden_size=384,
                              num_hidden_layers=4, num_attention_heads=4)
    model = AbawFusionModel(config).eval()
    windows, length = 16, 16
    inputs = example_fusion_inputs(config, windows, length, missing=0.1)
    inputs["attention_mask"][:] = True
    names = fusion_input_names(config)
    as_torch = {name: torch.from_numpy(inputs[name]) for name in names}
    torch_inputs = dict(features={n: as_torch[n] for n in config.feature_names}, attention_mask=as_torch["attention_mask"],
                        feature_mask={n: as_torch[f"feature_mask.{n}"] for n in config.feature_names},
                        frame_index=as_torch["frame_index"])
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        expected = model(**torch_inputs)
    onnx_model = onnx_fusion_model(model)
    difference = (onnx_model(**torch_inputs).valence_arousal - expected.valence_arousal).abs().max().item()

    def run_torch():
        with torch.inference_mode():
            return model(**torch_inputs)

    frames = windows * length
    _row(f"fusion ({windows} windows x {length})", counter.get_total_flops() / frames,
         rate(run_torch, frames, args.seconds), rate(lambda: onnx_model(**torch_inputs), frames, args.seconds), limit, difference)


def _row(name, flops, torch_rate, onnx_rate, limit, difference) -> None:
    print(f"| {name} | {flops / 1e9:.3f} | {torch_rate:.1f} | {100 * flops * torch_rate / limit:.0f} % | {onnx_rate:.1f} | "
          f"{100 * flops * onnx_rate / limit:.0f} % | {onnx_rate / torch_rate:.2f}x | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
