"""Start-up and one photograph: wall time of `abaw-hf --help`, `abaw-hf predict --help` and `abaw-hf predict photo`
(split into import / model load / work) beside `python -c pass`, all in one run, with the fp32 torch.mm rate.

The model is the paper's set (resnet18 + poster2 + fau, 384-d, 4 layers) with random weights; --runtime torch, auto (the default) and onnx.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PHOTO_CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
started = time.perf_counter()
from abaw_hf.pipeline import AffectPipeline
imported = time.perf_counter()
pipeline = AffectPipeline.from_pretrained(sys.argv[1], runtime=sys.argv[3])
loaded = time.perf_counter()
table = pipeline(sys.argv[2])
done = time.perf_counter()
assert bool(table["face_found"].all())
print(json.dumps({"import": imported - started, "model load": loaded - imported, "work": done - loaded}))
"""


def wall(command: list[str], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    import torch
    import warnings

    from skimage import data
    from PIL import Image

    sys.path.insert(0, os.path.dirname(__file__))
    from profiling import mm_flops_per_second

    from abaw_hf import AbawFusionConfig, AbawFusionModel

    warnings.simplefilter("ignore")
    folder = Path(tempfile.mkdtemp(prefix="abaw-startup-"))
    os.environ.setdefault("ABAW_HF_ONNX_CACHE", str(folder / "onnx-cache"))
    provenance = {"resnet18": {"name": "resnet18", "variant": "msceleb"}, "poster2": {"name": "poster2", "variant": "8cls"},
                  "fau": {"name": "fau", "variant": "mediapipe"}}
    config = AbawFusionConfig(feature_dims={"resnet18": 512, "poster2": 768, "fau": 17}, hidden_size=384,
                              num_hidden_layers=4, num_attention_heads=4, extractors=provenance)
    AbawFusionModel(config).eval().save_pretrained(folder / "model")
    photo = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    limit = mm_flops_per_second(torch.device("cpu"))
    print(f"load {os.getloadavg()[0]:.1f}; fp32 torch.mm limit {limit / 1e9:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
    print("| command | wall (s) |")
    print("| --- | ---: |")
    for label, command in [
        ("`python -c pass`", [sys.executable, "-c", "pass"]),
        ("`abaw-hf --help`", [str(BIN / "abaw-hf"), "--help"]),
        ("`abaw-hf predict --help`", [str(BIN / "abaw-hf"), "predict", "--help"]),
        ("`python -c 'import torch'` (for scale)", [sys.executable, "-c", "import torch"]),
    ]:
        print(f"| {label} | {wall(command):.2f} |", flush=True)
    exported = {"onnx": "poster2 and the fusion model (resnet18 is cached)"}
    for runtime in ("torch", "auto", "onnx"):
        if runtime == "auto":  # a call never waits for an export: torch, then the explicit step prepares the graph
            first = [str(BIN / "abaw-hf"), "predict", str(photo), "--model", str(folder / "model"), "-o",
                     str(folder / "first.csv")]
            print(f"| first `abaw-hf predict photo` (auto, nothing prepared: resnet18 on torch, no export) | "
                  f"{wall(first, repeats=1):.2f} |", flush=True)
            prepare = [str(BIN / "abaw-hf"), "export-onnx", str(folder / "model")]
            print(f"| `abaw-hf export-onnx MODEL` (the explicit step: export + verify resnet18 into the cache) | "
                  f"{wall(prepare, repeats=1):.2f} |", flush=True)
        if runtime in exported:  # the first use exports and verifies into the cache: once per set of weights
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", PHOTO_CHILD, str(folder / "model"), str(photo), runtime], check=True,
                           capture_output=True)
            print(f"| first `--runtime {runtime}` use: export + verify {exported[runtime]} into the cache, included | "
                  f"{time.perf_counter() - started:.2f} |")
        command = [str(BIN / "abaw-hf"), "predict", str(photo), "--model", str(folder / "model"), "-o",
                   str(folder / "out.csv"), "--runtime", runtime]
        print(f"| `abaw-hf predict photo --runtime {runtime}` (median of 3) | {wall(command):.2f} |", flush=True)
        splits = []
        for _ in range(3):
            result = subprocess.run([sys.executable, "-c", PHOTO_CHILD, str(folder / "model"), str(photo), runtime],
                                    check=True, capture_output=True, text=True)
            splits.append(json.loads(result.stdout.splitlines()[-1]))
        split = sorted(splits, key=lambda times: sum(times.values()))[1]  # the median run
        print(f"| ↳ in-process split, {runtime}: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()) + " | "
              f"{sum(split.values()):.2f} |", flush=True)


if __name__ == "__main__":
    main()
