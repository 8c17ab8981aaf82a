"""Tiny random-weight backbones made offline for the open-extractor tests (timm file, DINOv2, WavLM, Whisper folders),
and test videos whose sound changes at known times (numpy signal muxed with PyAV)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLING_RATE = 16000


def save_timm_weights(path: Path, model_name: str = "test_vit", seed: int = 0) -> Path:
    """A timm ``test_*`` model's random weights saved as safetensors (what a user's fine-tuned file would be)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def save_tiny_dinov2(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                          image_size=56, patch_size=14)
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56},
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def save_tiny_wavlm(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(seed)
    config = WavLMConfig(hidden_size=40, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    WavLMModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, do_normalize=True,
                             return_attention_mask=False).save_pretrained(folder)
    return folder


def save_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """A Whisper whose encoder takes 1 s (100 mel frames, 50 outputs) instead of 30 s."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    config = WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                           max_source_positions=50, max_target_positions=32, vocab_size=100,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(folder)
    return folder


def tone_signal(seconds: float, changes: list[float]) -> np.ndarray:
    """Mono float32 sound of equal-loudness tones: 200 Hz, then from each time in ``changes`` on another pitch."""
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    frequency = np.full(len(t), 200.0)
    for number, start in enumerate(changes):
        frequency[t >= start] = 200.0 * (number + 2.5)
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_video_with_audio(path: Path, frames, fps: int, audio: np.ndarray | None,
                           sampling_rate: int = SAMPLING_RATE) -> Path:
    """RGB frames (even sizes) as H.264, and ``audio`` (mono float) as AAC in the same container, with PyAV."""
    import av

    frames = list(frames)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sampling_rate)
            sound.layout = "mono"
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            step = 1024
            for start in range(0, len(audio), step):
                block = audio[start : start + step].astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="mono")
                frame.sample_rate = sampling_rate
                frame.pts = start
                frame.time_base = Fraction(1, sampling_rate)
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path
