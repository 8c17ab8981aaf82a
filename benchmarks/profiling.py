"""Measuring extractors against the machine: FLOPs, frames/s, the torch.mm compute limit, peak memory."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil

import torch
from torch.utils.flop_counter import FlopCounterMode

from abaw_hf.extractors.base import Extractor


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mm_flops_per_second(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 4096, repeats: int = 5) -> float:
    """The compute limit: FLOP/s of ``a @ b`` for two ``size`` x ``size`` matrices, best of ``repeats``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up (thread pool, cuBLAS handles)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_frame(extractor: Extractor, device: torch.device) -> int:
    """FLOPs of one frame's forward pass counted by ``FlopCounterMode`` (matmuls, convolutions, attention)."""
    size = extractor.preprocess_cfg.input_size
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        extractor(torch.randn(1, 3, size, size, device=device))
    return counter.get_total_flops()


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def frames_per_second(
    extractor: Extractor,
    batch_size: int,
    device: torch.device,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    min_seconds: float = 3.0,
    min_iterations: int = 2,
) -> float:
    """Model-only throughput of what ``extract`` runs (preprocessed input already on the device)."""
    size = extractor.preprocess_cfg.input_size
    model = extractor.eval().inference_module()
    batch = torch.randn(batch_size, 3, size, size, device=device)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(device, autocast_dtype):
        model(batch)  # warm-up
        _sync(device)
        iterations, start = 0, time.perf_counter()
        while iterations < min_iterations or time.perf_counter() - start < min_seconds:
            model(batch)
            _sync(device)
            iterations += 1
        elapsed = time.perf_counter() - start
    return iterations * batch_size / elapsed


class PeakMemory:
    """Peak memory while the ``with`` block runs, in MiB: CUDA's max allocated, or on CPU the process's
    resident set size sampled every 5 ms, minus ``baseline_bytes`` (RSS taken before the model existed)."""

    def __init__(self, device: torch.device, baseline_bytes: int = 0) -> None:
        self.device, self.baseline_bytes = device, baseline_bytes
        self.peak_bytes = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(0.005):
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

    @property
    def peak_mb(self) -> float:
        return (self.peak_bytes - self.baseline_bytes) / 2**20


def current_rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def calls_per_second_rate(function, frames_per_call: int, seconds: float) -> float:
    """Frames per second of repeated ``function()`` calls (one warm-up call, then at least ``seconds`` of calls)."""
    function()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 2:
        function()
        calls += 1
    return calls * frames_per_call / (time.perf_counter() - started)
