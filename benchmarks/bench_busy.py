"""`abaw-hf predict` beside a CPU-bound neighbour: the slowdown against running alone, with the thread rule of
`abaw_hf.threads` (threads = the cores free to the process) and with one thread per core (torch's default).

Writes a 640x360 video of the astronaut photograph drifting (``--frames``, 12 fps) and a small random-weights model
(resnet18 + fau), then runs the real console script ``abaw-hf predict`` in turn: alone; beside ``--neighbours``
processes that each keep one core busy (a Python loop, started a second before); and beside them with
``ABAW_HF_NUM_THREADS`` = every core (what torch does by default). Rounds alternate the conditions and the best of
``--repeats`` is kept (the machine is shared). Prints the load average, and a Markdown table of wall time, the
``faces`` and ``extractors`` stage seconds `predict` reports, the threads it chose, and the slowdown against
alone. The goal (issue 26): at most 2x on 2 cores shared by two jobs.

    python benchmarks/bench_busy.py [--frames 24] [--neighbours 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SPIN = "while True:\n    pass\n"


def make_inputs(folder: Path, frames: int) -> tuple[Path, Path]:
    import numpy as np
    import warnings
    from skimage import data

    from abaw_hf import AbawFusionConfig, AbawFusionModel
    from abaw_hf.faces import write_video

    face = data.astronaut()[::3, ::3]  # 171 px
    canvas = np.full((360, 640, 3), 90, np.uint8)
    video_frames = []
    for index in range(frames):
        frame = canvas.copy()
        x = 40 + index * (640 - 171 - 80) // max(1, frames - 1)
        frame[90 : 90 + face.shape[0], x : x + face.shape[1]] = face
        video_frames.append(frame)
    video = write_video(folder / "drift.mp4", video_frames, fps=12)
    provenance = {"resnet18": {"name": "resnet18", "variant": "msceleb"}, "fau": {"name": "fau", "variant": "mediapipe"}}
    config = AbawFusionConfig(feature_dims={"resnet18": 512, "fau": 17}, hidden_size=64, num_hidden_layers=2,
                              num_attention_heads=4, extractors=provenance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        AbawFusionModel(config).eval().save_pretrained(folder / "model")
    return video, folder / "model"


def predict(video: Path, model: Path, output: Path, threads: int | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "ABAW_HF_NUM_THREADS")}
    if threads is not None:
        env["ABAW_HF_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    result = subprocess.run([str(BIN / "abaw-hf"), "predict", str(video), "--model", str(model), "-o", str(output),
                             "--runtime", "torch"], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    stages = ast.literal_eval(re.search(r"stage seconds (\{.*\})", result.stdout).group(1))
    chosen = re.search(r"threads: (\d+) thread", result.stderr)
    return {"wall": wall, "faces": stages.get("faces", 0.0), "extractors": stages.get("extractors", 0.0),
            "threads": int(chosen.group(1)) if chosen else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--neighbours", type=int, default=1, help="processes that each keep one core busy")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from abaw_hf.threads import usable_cores

    cores = usable_cores()
    folder = Path(tempfile.mkdtemp(prefix="abaw-busy-"))
    os.environ["ABAW_HF_ONNX_CACHE"] = str(folder / "onnx-cache")
    video, model = make_inputs(folder, args.frames)
    conditions = {
        "alone (thread rule)": (0, None),
        f"beside {args.neighbours} busy neighbour(s), thread rule": (args.neighbours, None),
        f"beside {args.neighbours} busy neighbour(s), one thread per core ({cores})": (args.neighbours, cores),
    }
    print(f"{cores} cores; load average before: {os.getloadavg()[0]:.2f}; {args.frames} frames 640x360, "
          "resnet18 + fau (random weights), --runtime torch", flush=True)
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for label, (neighbours, threads) in conditions.items():
            spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(neighbours)]
            try:
                if spinners:
                    time.sleep(1.0)  # they are running when predict samples the free cores
                run = predict(video, model, folder / "out.csv", threads)
            finally:
                for spinner in spinners:
                    spinner.kill()
                    spinner.wait()
            if label not in best or run["wall"] < best[label]["wall"]:
                best[label] = run
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    alone = best["alone (thread rule)"]
    print("| condition | threads | wall (s) | faces (s) | extractors (s) | wall / alone | faces / alone |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, run in best.items():
        print(f"| {label} | {run['threads']} | {run['wall']:.1f} | {run['faces']:.2f} | {run['extractors']:.2f} | "
              f"{run['wall'] / alone['wall']:.2f}x | {run['faces'] / max(alone['faces'], 1e-9):.2f}x |")


if __name__ == "__main__":
    main()
