"""Time from upload to first result in the Gradio Space: one photograph, and a 10-second 640x360 video.

Serves the Space (``abaw_hf.space.app``) on 127.0.0.1 and sends the inputs with ``gradio_client`` (upload, analysis,
figures, CSV and the download of the outputs included), as a user of the Space would. A video's
results are shown progressively (after one temporal window, then 2, 4, ... windows), so the table
gives the time to the first shown result and to the full result.
The model is ``--model`` (e.g. the ``make demo`` output), else a model with the demo's five
extractor features built in a temporary folder (random weights: timing only), plus a row with the
two cheapest extractors (resnet18 + fau). Prints a Markdown table with the pipeline's own split
(decode / faces / extractors / fusion), the extractors' counted GFLOP/s and the fp32 ``torch.mm``
rate measured in the same run.

    python benchmarks/bench_space.py [--model outputs/abaw-fusion] [--seconds 10] [--fps 25]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import socket
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.data import astronaut  # noqa: E402

from abaw_hf import AbawFusionConfig, AbawFusionModel  # noqa: E402
from profiling import flops_per_frame, mm_flops_per_second  # noqa: E402
from abaw_hf.faces import write_video  # noqa: E402
from abaw_hf.space import app as space_module  # noqa: E402

DEMO_FEATURES = {"resnet18": 512, "poster2": 768, "poster": 512, "eac": 2048, "fau": 17}  # configs/default.yaml
CHEAP_FEATURES = {"resnet18": 512, "fau": 17}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def save_random_model(folder: Path, feature_dims: dict[str, int]) -> Path:
    """The demo's fusion architecture over ``feature_dims``; extractors without weights run random (timing only)."""
    provenance = {name: {"name": name, **({"variant": "mediapipe"} if name == "fau" else {})} for name in feature_dims}
    config = AbawFusionConfig(feature_dims=feature_dims, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              extractors=provenance)
    AbawFusionModel(config).save_pretrained(folder)
    (folder / "train_config.yaml").write_text(yaml.safe_dump({"dataset": "synthetic", "window": 16, "max_gap": 8}))
    return folder


def moving_head_video(path: Path, seconds: float, fps: int, width: int = 640, height: int = 360) -> Path:
    """The astronaut's head gliding left to right over a grey background (one face in every frame)."""
    head = np.asarray(Image.fromarray(astronaut()[20:260, 110:350]).resize((220, 220)))
    count = int(round(seconds * fps))

    def frames():
        for index in range(count):
            x = int(20 + (width - 260) * index / max(1, count - 1))
            canvas = np.full((height, width, 3), 96, np.uint8)
            canvas[70:290, x : x + 220] = head
            yield canvas

    return write_video(path, frames(), fps=fps)


def measure(space_module, model_dir: Path, inputs: list[tuple[str, str, Path]], repeats: int, image_repeats: int) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init extractors: expected here
        space = space_module.AffectSpace(str(model_dir), limits=space_module.Limits(max_upload_mb=200, max_video_seconds=600))
    assert space.pipeline is not None, space.load_error
    extractor_flops = sum(flops_per_frame(extractor, torch.device("cpu")) for extractor in space.pipeline.extractors.values()
                          if hasattr(extractor, "preprocess_cfg") and extractor.needs_checkpoint)
    port = free_port()
    app = space_module.launch(space, host="127.0.0.1", port=port, block=False)
    rows = []
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        client.predict(handle_file(inputs[0][2]), api_name="/analyse_image")  # warm-up: graphs, thread pools
        for label, api_name, path in inputs:
            runs = []
            for _ in range(repeats if api_name == "/analyse_video" else max(repeats, image_repeats)):
                started, first = time.perf_counter(), None
                job = client.submit(handle_file(path), api_name=api_name)
                while not job.done():
                    if first is None and any(not isinstance(update[6], dict) or update[6].get("data") for update in job.outputs()
                                             if isinstance(update, (list, tuple)) and len(update) > 6):
                        first = time.perf_counter() - started  # the first update that carries a table
                    time.sleep(0.02)
                result = job.result()
                seconds = time.perf_counter() - started
                assert result[0].startswith("✅"), result[0]
                frames = len(result[6]["data"])
                timings = dict(space.last_timings)  # the final update's, summed over a video's chunks
                runs.append({
                    "input": label, "extractors": " + ".join(space.pipeline.extractors), "frames": frames,
                    "first": seconds if first is None else first, "seconds": seconds, "timings": timings,
                    "extractor_gflops": extractor_flops * frames / timings["extractors"] / 1e9 if timings["extractors"] else 0.0,
                })
            rows.append(sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2])  # the median run
    finally:
        app.close()
        space.pipeline.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: random-weight models, see above)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=1, help="runs per video (the median run is shown)")
    parser.add_argument("--image-repeats", type=int, default=5, help="runs per image (the median run is shown)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    limit_before = mm_flops_per_second(torch.device("cpu")) / 1e9
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_space_") as workdir:
        workdir = Path(workdir)
        photo = workdir / "astronaut.jpg"
        Image.fromarray(astronaut()).save(photo, quality=90)
        video = moving_head_video(workdir / "clip_640x360.mp4", args.seconds, args.fps)
        inputs = [("image 512x512 (JPEG)", "/analyse_image", photo),
                  (f"video {args.seconds:g} s 640x360 @ {args.fps} fps", "/analyse_video", video)]
        models = [Path(args.model)] if args.model else [
            save_random_model(workdir / "demo5", DEMO_FEATURES), save_random_model(workdir / "cheap2", CHEAP_FEATURES)
        ]
        for model in models:
            rows += measure(space_module, model, inputs, args.repeats, args.image_repeats)
    # a shared machine: the better of the two measurements around the run is the limit
    limit = max(limit_before, mm_flops_per_second(torch.device("cpu")) / 1e9)
    print(
        f"\nSpace upload -> first result, via gradio_client on 127.0.0.1; {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"fp32 torch.mm 4096^2 rate in this run (best of 5, before and after): {limit:.0f} GFLOP/s\n"
    )
    print("| input | extractors | frames | upload -> first result (s) | upload -> full result (s) | frames/s | decode (s) "
          "| faces (s) | extractors (s) | fusion (s) | extractor GFLOP/s (% of mm) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        t = row["timings"]
        print(
            f"| {row['input']} | {row['extractors']} | {row['frames']} | {row['first']:.2f} | {row['seconds']:.2f} "
            f"| {row['frames'] / row['seconds']:.1f} "
            f"| {t['decode']:.2f} | {t['faces']:.2f} | {t['extractors']:.2f} | {t['fusion']:.2f} "
            f"| {row['extractor_gflops']:.0f} ({100 * row['extractor_gflops'] / limit:.0f}%) |"
        )
    print("\nExtractor GFLOP/s counts the torch extractors' FLOPs (FlopCounterMode, one frame x frames); fau runs a "
          "MediaPipe TFLite graph whose time is in the extractors column but whose FLOPs are not counted.")


if __name__ == "__main__":
    main()
