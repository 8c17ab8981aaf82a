"""Open extractors against their bare backbones, and the sound path's speed and memory.

    python benchmarks/bench_open_extractors.py                 # vision table, then the audio table
    python benchmarks/bench_open_extractors.py --audio-minutes 1 10

Vision (timm and hf, random weights at real sizes, built offline): frames/s of the extractor's network
(`extractor(pixel_values)`: features + pooling, what the extraction runner and the pipeline run) against the bare
backbone forward on the same tensors, in alternating rounds of the same run, and the overhead between them; plus
`extract(images)` with the model's own preprocessing on 112 px crops (in extraction that runs in DataLoader
workers, beside the network). Audio (a WavLM-shaped encoder, random weights, made here): seconds of sound encoded
per second through `frame_vectors` (decode from the container, resample, chunked encoding, per-frame windows)
against the bare encoder on the same chunks (alternating rounds), and the resident memory (sampled every 20 ms) of a
process while it encodes a 1-minute and a 10-minute synthetic track (each in its own subprocess). Load (`os.getloadavg`) is printed beside every table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny-model and sound-video helpers

FPS = 25


def _best_rate(function, count: int, rounds: int) -> list[float]:
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        rates.append(count / (time.perf_counter() - started))
    return rates


def vision_rows(batch: int, rounds: int, folder: Path) -> list[dict]:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from abaw_hf.extractors import create_extractor

    torch.manual_seed(0)
    dino = folder / "dinov2_small_random"
    Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                             image_size=224, patch_size=14)).save_pretrained(dino)
    BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}).save_pretrained(dino)
    cases = [("timm", create_extractor("timm", "convnext_atto", pretrained=False, random_seed=0)),
             ("timm", create_extractor("timm", "vit_tiny_patch16_224", pretrained=False, random_seed=0)),
             ("hf", create_extractor("hf", f"{dino}:cls"))]
    crops = [np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8) for i in range(batch)]
    rows = []
    for family, extractor in cases:
        pixels = extractor.preprocess(crops)
        model = extractor.model
        if family == "timm":
            bare = lambda: model.forward_head(model.forward_features(pixels), pre_logits=True)  # noqa: E731
        else:
            bare = lambda: model(pixel_values=pixels).last_hidden_state  # noqa: E731
        with torch.inference_mode():
            bare(), extractor(pixels)  # warm-up
            wrapped, plain = [], []
            for _ in range(rounds):  # alternating rounds: the machine's load hits both alike
                plain += _best_rate(bare, batch, 1)
                wrapped += _best_rate(lambda: extractor(pixels), batch, 1)
            with_preprocessing = max(_best_rate(lambda: extractor.extract(crops, batch_size=batch), batch, 2))
        rows.append({"family": family, "extractor": extractor.name, "dim": extractor.dim,
                     "input": "x".join(map(str, extractor.preprocess_cfg.input_shape[1:])),
                     "bare_fps": max(plain), "extractor_fps": max(wrapped),
                     "overhead_pct": 100 * (max(plain) / max(wrapped) - 1), "extract_fps": with_preprocessing})
    return rows


def _encoder_folder(folder: Path) -> Path:
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    target = folder / "wavlm_small_random"
    if not target.is_dir():
        torch.manual_seed(0)
        WavLMModel(WavLMConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                               conv_dim=(256,) * 7)).save_pretrained(target)
        Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False).save_pretrained(target)
    return target


def _sound_video(folder: Path, minutes: float) -> Path:
    from open_models_fixture import tone_signal, write_video_with_audio

    path = folder / f"sound_{minutes:g}min.mp4"
    if not path.is_file():
        seconds = minutes * 60
        changes = list(np.arange(0.5, seconds, 0.5))
        frames = [np.zeros((16, 16, 3), np.uint8)] * int(seconds)  # 1 frame/s: the video stream only times frames
        write_video_with_audio(path, frames, 1, tone_signal(seconds, changes))
    return path


def _bare_encoder(extractor, seconds: float):
    """The encoder alone on chunks of the lengths `encoded_blocks` feeds it for ``seconds`` of sound (inputs made
    beforehand): what the sound path adds is decoding, resampling, the feature extractor and the windows."""
    settings = extractor.preprocess_cfg
    rate, core = settings.sampling_rate, settings.chunk_seconds - 2 * settings.context_seconds
    lengths, index = [], 0
    while index * core < seconds:
        first = max(0.0, index * core - settings.context_seconds)
        last = min(seconds, index * core - settings.context_seconds + settings.chunk_seconds)
        lengths.append(int((last - first) * rate))
        index += 1
    noise = np.random.default_rng(0).standard_normal(max(lengths)).astype(np.float32)
    inputs = [{"input_values": torch.from_numpy(noise[:length])[None]} for length in lengths]

    def run():
        with torch.inference_mode():
            for chunk in inputs:
                extractor.encoder(**chunk)

    return run


def audio_speed(folder: Path, minutes: float, rounds: int) -> dict:
    """Sound seconds per second of `frame_vectors` and of the bare encoder on the same chunks, alternating rounds."""
    from abaw_hf.extractors import create_extractor

    extractor = create_extractor("audio", str(_encoder_folder(folder)))
    video = _sound_video(folder, minutes)
    times = np.arange(int(minutes * 60 * FPS)) / FPS
    bare = _bare_encoder(extractor, minutes * 60)
    ours, plain = [], []
    for _ in range(rounds):
        plain += _best_rate(bare, minutes * 60, 1)
        ours += _best_rate(lambda: extractor.frame_vectors(video, times), minutes * 60, 1)
    return {"ours": max(ours), "bare": max(plain), "overhead_pct": 100 * (max(plain) / max(ours) - 1)}


def audio_one(folder: Path, minutes: float) -> dict:
    """In a fresh process: per-frame vectors (FPS) of the whole track; seconds and peak RSS."""
    from abaw_hf.extractors import create_extractor

    import threading

    import psutil

    extractor = create_extractor("audio", str(_encoder_folder(folder)))
    video = _sound_video(folder, minutes)
    times = np.arange(int(minutes * 60 * FPS)) / FPS
    process, peak, done = psutil.Process(), [0], threading.Event()
    before = process.memory_info().rss

    def sample():  # the resident set while encoding (ru_maxrss would keep the model loading's peak)
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    vectors, present, _ = extractor.frame_vectors(video, times)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {"minutes": minutes, "frames": len(times), "present": int(present.sum()), "seconds": seconds,
            "peak_rss_mb": peak[0] / 2**20, "rss_before_mb": before / 2**20, "vectors_mb": vectors.nbytes / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--audio-minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--skip-vision", action="store_true")
    parser.add_argument("--one-audio", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_audio is not None:
        print(json.dumps(audio_one(args.folder, args.one_audio)))
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        if not args.skip_vision:
            print(f"\nvision, batch {args.batch}, best of {args.rounds} alternating rounds (frames/s)")
            print("| family | column | dim | input | bare backbone | extractor network | overhead | extract() with preprocessing |")
            print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
            for row in vision_rows(args.batch, args.rounds, folder):
                print(f"| {row['family']} | {row['extractor']} | {row['dim']} | {row['input']} | {row['bare_fps']:.1f} | "
                      f"{row['extractor_fps']:.1f} | {row['overhead_pct']:+.1f} % | {row['extract_fps']:.1f} |")
            print(f"load after: {os.getloadavg()}")
        print("\naudio (WavLM-shaped, hidden 256, 4 layers, random weights; 20 s chunks, 1 s context, 1 s window, "
              f"{FPS} frames/s)")
        speed = audio_speed(folder, 1.0, args.rounds)
        print(f"1-minute track, best of {args.rounds} alternating rounds: frame_vectors (decode, resample, chunks, "
              f"windows) {speed['ours']:.1f} sound s/s, bare encoder on the same chunks {speed['bare']:.1f} sound s/s, "
              f"overhead {speed['overhead_pct']:+.1f} %")
        print("| sound | frames | seconds | sound s per s | peak RSS while encoding | RSS before | growth (of which the vectors) |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for minutes in args.audio_minutes:
            _encoder_folder(folder), _sound_video(folder, minutes)  # made outside the measured process
            result = subprocess.run([sys.executable, __file__, "--one-audio", str(minutes), "--folder", str(folder)],
                                    capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(f"| {minutes:g} min | {row['frames']} | {row['seconds']:.1f} | {minutes * 60 / row['seconds']:.1f} | "
                  f"{row['peak_rss_mb']:.0f} MB | {row['rss_before_mb']:.0f} MB | "
                  f"{row['peak_rss_mb'] - row['rss_before_mb']:.0f} MB ({row['vectors_mb']:.1f} MB) |")
        print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
