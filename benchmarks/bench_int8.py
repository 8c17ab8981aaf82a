"""Does int8 pay? onnxruntime static (QDQ, per-channel) quantisation of the CPU extractors against fp32 ONNX.

The issue's bar for keeping int8 as an option: >= 1.5x faster, feature cosine >= 0.99 against fp32 on real face
crops, and the same expression decision on >= 98 % of frames. Real crops: the frames of the shipped astronaut
clip, detected and aligned like the pipeline does (calibration on the first half, scoring on the second half).
The extractors have random weights here (no official checkpoints offline), and the expression decision comes
from a random-weight fusion model on top, so the table says how much quantisation moves these networks' outputs.

    python benchmarks/bench_int8.py [--extractors resnet18 eac] [--batch 8] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from profiling import calls_per_second_rate as rate  # noqa: E402



def real_face_crops(limit: int = 96) -> list[np.ndarray]:
    """Aligned 112-px face crops from the astronaut clip (every frame with a face)."""
    from abaw_hf.faces import FaceDetector, MultiFaceTracker, iter_video_frames

    from abaw_hf.space import EXAMPLES_DIR

    clip = EXAMPLES_DIR / "astronaut_clip.mp4"
    tracker = MultiFaceTracker(FaceDetector(), faces="largest")
    crops = [frame.faces[0].aligned for frame in tracker.track(iter_video_frames(clip)) if frame.faces]
    return crops[:limit]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractors", nargs="+", default=["resnet18", "eac"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from abaw_hf.extractors import create_extractor
    from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel
    from abaw_hf.onnx.export import export_extractor
    from abaw_hf.onnx.runtime import create_session

    crops = real_face_crops()
    half = len(crops) // 2
    work = Path(tempfile.mkdtemp(prefix="abaw-int8-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; "
          f"{len(crops)} real aligned crops ({half} calibrate, {len(crops) - half} score)")
    print(f"| extractor (batch {args.batch}), int8 format | fp32 ORT frames/s | int8 ORT frames/s | speed-up | mean cosine | "
          "min cosine | same expression | verdict |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, quant_format in [(n, f) for n in args.extractors for f in (QuantFormat.QDQ,)]:  # QOperator fails here
        extractor = create_extractor(name, random_seed=0)
        batch = extractor.preprocess(crops).float().numpy()
        fp32_path, int8_path = work / f"{name}.onnx", work / f"{name}.{quant_format.name}.onnx"
        export_extractor(extractor, fp32_path)

        class Calibration(CalibrationDataReader):
            def __init__(self):
                self.items = iter([{"pixel_values": batch[i : i + 1]} for i in range(half)])

            def get_next(self):
                return next(self.items, None)

        quantize_static(str(fp32_path), str(int8_path), Calibration(), quant_format=quant_format,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        fp32, int8 = create_session(fp32_path), create_session(int8_path)
        scored = batch[half:]
        a = fp32.run(["features"], {"pixel_values": scored})[0]
        b = int8.run(["features"], {"pixel_values": scored})[0]
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        torch.manual_seed(0)
        fusion = AbawFusionModel(AbawFusionConfig(feature_dims={name: int(extractor.dim)}, hidden_size=64,
                                                  num_hidden_layers=1, num_attention_heads=2)).eval()
        with torch.inference_mode():
            decide = lambda f: fusion(**{name: torch.from_numpy(f)[:, None]}).expression_logits[:, 0].argmax(-1)  # noqa: E731
            same = float((decide(a) == decide(b)).float().mean())
        inputs = {"pixel_values": batch[: args.batch]}
        fp32_rate = rate(lambda: fp32.run(["features"], inputs), args.batch, args.seconds)
        int8_rate = rate(lambda: int8.run(["features"], inputs), args.batch, args.seconds)
        speedup = int8_rate / fp32_rate
        keep = speedup >= 1.5 and cosine.min() >= 0.99 and same >= 0.98
        print(f"| {name}, {quant_format.name} | {fp32_rate:.1f} | {int8_rate:.1f} | {speedup:.2f}x | {cosine.mean():.4f} | {cosine.min():.4f} "
              f"| {same:.1%} | {'keep' if keep else 'leave out'} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
