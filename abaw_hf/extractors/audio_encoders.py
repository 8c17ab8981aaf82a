"""``--extractor audio:<repo id or folder>``: a speech encoder (wav2vec 2.0, WavLM, HuBERT, Whisper's encoder) through
``AutoModel`` + ``AutoFeatureExtractor``, as column ``audio_<name>``: one vector per video frame.

The sound (`abaw_hf.audio`: PyAV, mono, the model's sampling rate) is encoded in chunks of
``chunk_seconds`` with ``context_seconds`` of overlap on each side (Whisper: its own fixed input length), keeping
each chunk's outputs of its middle part only, so every output saw context and memory does not grow with the
length of the video. A frame's vector is the mean of the encoder outputs (``last_hidden_state``) whose time lies
in a window of ``window_seconds`` (default 1.0 s) centred on the frame's time; a frame beyond the end of the sound
has none (a missing vector). Face crops carry no sound: called on crops (a photo, webcam frames), the extractor
gives missing vectors, and the fusion model's missing-feature embedding takes their place.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch

from .open_models import (ExtractorSpecError, OpenExtractor, column_slug, hub_commit, load_problem,
                          transformers_source)
from .registry import register_extractor

DEFAULT_WINDOW_SECONDS = 1.0
DEFAULT_CHUNK_SECONDS = 20.0
DEFAULT_CONTEXT_SECONDS = 1.0


class AudioSettings:
    """What turns sound into per-frame vectors (recorded in the provenance; no image preprocessing)."""

    input_shape = (0, 0, 0)

    def __init__(self, sampling_rate: int, window_seconds: float, chunk_seconds: float, context_seconds: float,
                 hop_seconds: float, processor: str):
        self.sampling_rate, self.window_seconds = int(sampling_rate), float(window_seconds)
        self.chunk_seconds, self.context_seconds = float(chunk_seconds), float(context_seconds)
        self.hop_seconds, self.processor = float(hop_seconds), processor

    def to_dict(self) -> dict:
        return {"library": "transformers", "processor": self.processor, "sampling_rate": self.sampling_rate,
                "window_seconds": self.window_seconds, "chunk_seconds": self.chunk_seconds,
                "context_seconds": self.context_seconds, "output_hop_seconds": round(self.hop_seconds, 6),
                "frame_time": "(frame - 1) / fps"}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AudioSettings) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __repr__(self) -> str:
        return f"AudioSettings({self.to_dict()!r})"


@register_extractor("audio")
class AudioEncoderExtractor(OpenExtractor):
    """Per-frame vectors of a video's sound from a transformers speech encoder."""

    modality: ClassVar[str] = "audio"
    example: ClassVar[str] = "audio:microsoft/wavlm-base-plus"

    def __init__(self, variant: str | None = None, *, revision: str | None = None,
                 window_seconds: float = DEFAULT_WINDOW_SECONDS, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                 context_seconds: float = DEFAULT_CONTEXT_SECONDS) -> None:
        super().__init__(variant)
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
        from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor

        spec = self.spec
        if not window_seconds > 0:
            raise ExtractorSpecError(f"--extractor {spec}: the audio window must be positive, got {window_seconds}")
        info = transformers_source(spec, variant, revision)
        try:
            config = AutoConfig.from_pretrained(info["source"], revision=revision)
        except (OSError, ValueError, KeyError) as error:
            raise load_problem(spec, variant, error) from None
        try:
            processor = AutoFeatureExtractor.from_pretrained(info["source"], revision=revision)
        except (OSError, ValueError, KeyError, TypeError):
            processor = None
        if not isinstance(processor, SequenceFeatureExtractor) or not getattr(processor, "sampling_rate", None):
            kind = type(processor).__name__ if processor is not None else "no feature extractor"
            raise ExtractorSpecError(
                f"--extractor {spec}: {variant} is not a speech encoder ({config.model_type}, {kind}); audio: takes "
                f"speech models such as WavLM, wav2vec 2.0, HuBERT or Whisper (vision backbones go to hf:{variant})"
            )
        try:
            model = AutoModel.from_pretrained(info["source"], config=config, revision=revision)
        except (OSError, ValueError, KeyError) as error:
            raise load_problem(spec, variant, error) from None
        encoder = model.get_encoder() if getattr(config, "is_encoder_decoder", False) else model
        sampling_rate = int(processor.sampling_rate)
        fixed = getattr(processor, "n_samples", None)  # Whisper: a fixed input length, padded
        if fixed and getattr(config, "max_source_positions", None):
            chunk_seconds = fixed / sampling_rate
            hop = chunk_seconds / config.max_source_positions
            context_seconds = min(context_seconds, chunk_seconds / 4)
        elif getattr(config, "conv_stride", None):
            hop = math.prod(config.conv_stride) / sampling_rate
            context_seconds = min(context_seconds, chunk_seconds / 4)
        else:
            raise ExtractorSpecError(f"--extractor {spec}: cannot tell the output rate of {config.model_type} "
                                     "(known: wav2vec 2.0 family, Whisper)")
        if info["hub"]:
            info["revision"] = getattr(config, "_commit_hash", None) or hub_commit(info["source"], revision)
        self.encoder = encoder.eval()
        self.processor = processor
        self.fixed_input = bool(fixed)
        self.preprocess_cfg = AudioSettings(sampling_rate, window_seconds, chunk_seconds, context_seconds, hop,
                                            type(processor).__name__)
        self.dim = int(getattr(config, "hidden_size", None) or config.d_model)
        self.name = f"audio_{column_slug(variant)}"
        self.variant = info["source"]
        self.checkpoint_sha256 = info["sha256"]
        self.checkpoint_file = None if info["hub"] else info["source"]
        self.source_info = {"source": info["source"], "hub": info["hub"], "revision": info["revision"],
                            "model_type": config.model_type, "audio": self.preprocess_cfg.to_dict(), "random_init": False}

    # ----- sound -> encoder outputs ----------------------------------------------------------------------------

    def encode(self, samples: np.ndarray) -> torch.Tensor:
        """Mono float samples at the model's rate -> encoder outputs [T, dim] (one every ``hop_seconds``)."""
        settings = self.preprocess_cfg
        inputs = self.processor(samples, sampling_rate=settings.sampling_rate, return_tensors="pt")
        device = next(self.encoder.parameters()).device
        feed = {key: inputs[key].to(device) for key in self.processor.model_input_names if key in inputs
                and key != "attention_mask"}
        with torch.inference_mode():
            return self.encoder(**feed).last_hidden_state[0].float().cpu()

    def encoded_blocks(self, blocks: Iterator[np.ndarray], start: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(times [n], outputs [n, dim]) in time order for the sound ``blocks`` (first sample at 0 s), from the
        chunk that holds ``start`` on: each chunk's input reaches ``context_seconds`` beyond its kept middle part."""
        s = self.preprocess_cfg
        rate = s.sampling_rate
        core = s.chunk_seconds - 2 * s.context_seconds
        index = max(0, int(start // core))
        buffer, buffer_start, exhausted = np.zeros(0, np.float32), 0, False  # buffer_start: sample number of buffer[0]
        blocks = iter(blocks)
        while True:
            keep_from, keep_to = index * core, (index + 1) * core
            first = max(0, int(round((keep_from - s.context_seconds) * rate)))
            last = int(round((keep_from - s.context_seconds + s.chunk_seconds) * rate))
            parts, have = [buffer], buffer_start + len(buffer)  # blocks joined once per chunk
            while not exhausted and have < last:
                block = next(blocks, None)
                if block is None:
                    exhausted = True
                elif have + len(block) <= first:  # sound before this chunk (a later shard's start): dropped now
                    parts, have = [], have + len(block)
                    buffer_start = have
                else:
                    parts.append(block)
                    have += len(block)
            buffer = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            if first > buffer_start:  # samples no later chunk needs
                buffer, buffer_start = buffer[first - buffer_start :], first
            samples = buffer[: last - buffer_start]
            if len(samples) == 0:
                return
            end = buffer_start + len(samples)  # sample number just after the real sound of this chunk
            outputs = self.encode(samples)
            times = first / rate + (np.arange(len(outputs)) + 0.5) * s.hop_seconds
            kept = (times >= keep_from) & (times < keep_to) & (times < end / rate)
            if kept.any():
                yield times[kept], outputs[kept].numpy()
            if exhausted and end >= buffer_start + len(buffer):
                if end / rate <= keep_to:
                    return
            index += 1

    def frame_vectors(self, path, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, str | None]:
        """Vectors [n, dim], present [n] and why the sound ended early (or None) for frame ``times`` (seconds,
        ascending) of the sound of ``path``; only the sound from the first frame's window on is encoded."""
        from ..audio import iter_audio_blocks

        pooler = WindowPooler(self, iter_audio_blocks(path, self.preprocess_cfg.sampling_rate),
                              start=float(times[0]) - self.preprocess_cfg.window_seconds / 2 if len(times) else 0.0)
        vectors, present = pooler.vectors(times)
        return vectors, present, pooler.problem

    def stream(self, path) -> WindowPooler:
        """A pooler over the sound of ``path`` that takes frame times in ascending order across calls (the pipeline)."""
        from ..audio import iter_audio_blocks

        return WindowPooler(self, iter_audio_blocks(path, self.preprocess_cfg.sampling_rate))

    # ----- the image-extractor interface: crops carry no sound -------------------------------------------------

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(pixel_values), self.dim)

    def preprocess(self, images) -> torch.Tensor:
        return torch.zeros(len(images), 0)

    def extract_with_mask(self, images, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Face crops alone (a photo, webcam frames) have no sound: every vector is missing."""
        return torch.zeros(len(images), self.dim), torch.zeros(len(images), dtype=torch.bool)


class WindowPooler:
    """Mean of the encoder outputs within ``window_seconds`` around each frame time; times must not go back.
    Holds only the outputs a later frame can still need."""

    def __init__(self, extractor: AudioEncoderExtractor, blocks: Iterator[np.ndarray], start: float = 0.0):
        self.half = extractor.preprocess_cfg.window_seconds / 2
        self.dim = extractor.dim
        self._encoded = extractor.encoded_blocks(blocks, max(0.0, start))
        self._times = np.zeros(0)
        self._outputs = np.zeros((0, extractor.dim), np.float32)
        self._done = False
        self.problem: str | None = None  # why the sound ended early (a decoding error), if it did

    def _pull(self) -> None:
        from ..audio import AudioProblem

        try:
            block = next(self._encoded, None)
        except AudioProblem as error:
            self.problem, block = str(error), None
        if block is None:
            self._done = True
            return
        self._times = np.concatenate([self._times, block[0]])
        self._outputs = np.concatenate([self._outputs, block[1]])

    def vectors(self, times) -> tuple[np.ndarray, np.ndarray]:
        times = np.asarray(times, dtype=np.float64)
        vectors = np.zeros((len(times), self.dim), np.float32)
        present = np.zeros(len(times), bool)
        for i, t in enumerate(times):
            while not self._done and (len(self._times) == 0 or self._times[-1] < t + self.half):
                self._pull()
            drop = int(np.searchsorted(self._times, t - self.half, side="left"))
            self._times, self._outputs = self._times[drop:], self._outputs[drop:]
            inside = int(np.searchsorted(self._times, t + self.half, side="right"))
            if inside:
                vectors[i] = self._outputs[:inside].mean(axis=0)
                present[i] = True
        return vectors, present
