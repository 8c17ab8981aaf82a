"""How many threads a process runs its networks with: the cores actually free to it.

On a machine other jobs share, torch's default (one thread per core) makes every parallel region wait for a
thread the kernel has given to a neighbour: on 2 cores beside one CPU-bound job, face detection took 16x longer
with 2 threads than with 1 (`benchmarks/bench_busy.py`). The rule, in one place:

    threads = max(1, round((cores this process may use - cores busy with other work) / processes sharing them))

* cores this process may use: its CPU affinity (a container's or ``taskset``'s limit), else every core;
* cores busy with other work: the system's CPU use sampled for a moment at start-up, before this process works
  (``psutil.cpu_percent``), so it counts the neighbours only;
* processes sharing them: the processes of this launch (``accelerate launch``'s ``LOCAL_WORLD_SIZE``), or
  what the caller says (concurrent jobs of a server).

``$ABAW_HF_NUM_THREADS``, then ``$OMP_NUM_THREADS`` (set by the user, or by ``accelerate launch
--num_cpu_threads_per_process``), override the rule. DataLoader workers run with one thread each (PyTorch's
default), onnxruntime sessions with torch's count (`abaw_hf.onnx.sessions.create_session`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

THREADS_ENV = "ABAW_HF_NUM_THREADS"
SAMPLE_SECONDS = 0.2

logger = logging.getLogger(__name__)
_configured: ThreadChoice | None = None


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    cores: int  # cores this process may use
    busy: float | None  # cores busy with other work when sampled (None: not sampled, an override decided)
    processes: int
    source: str  # "rule", ABAW_HF_NUM_THREADS or OMP_NUM_THREADS

    def __str__(self) -> str:
        if self.source != "rule":
            return f"{self.threads} thread(s) per process (${self.source})"
        return (f"{self.threads} thread(s) per process: {self.cores} core(s), {self.busy:.1f} busy with other work, "
                f"{self.processes} process(es) sharing them")


def _affinity() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    affinity = _affinity()
    return max(1, len(affinity) if affinity else os.cpu_count() or 1)


def busy_cores(cores: int, seconds: float = SAMPLE_SECONDS) -> float:
    """Cores busy with other work: the CPU use, over ``seconds`` while this process waits, of the cores this
    process may run on (a neighbour on other cores takes none of them)."""
    import psutil

    per_core = psutil.cpu_percent(interval=seconds, percpu=True)
    affinity = _affinity()
    if affinity and all(index < len(per_core) for index in affinity):
        per_core = [per_core[index] for index in affinity]
    return min(float(cores), sum(per_core) / 100.0)


def threads_for(cores: int, busy: float, processes: int = 1) -> int:
    """The rule: the free cores shared between ``processes``, rounded, at least 1."""
    free = max(0.0, cores - busy)
    return max(1, int(free / max(1, processes) + 0.5))


def _override() -> tuple[int, str] | None:
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return None


def choose_threads(processes: int | None = None, *, busy: float | None = None) -> ThreadChoice:
    """The thread count for this process (see the module's rule); ``busy`` given skips the sampling (tests)."""
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    cores = usable_cores()
    override = _override()
    if override is not None:
        return ThreadChoice(override[0], cores, None, processes, override[1])
    if busy is None:
        busy = busy_cores(cores)
    return ThreadChoice(threads_for(cores, busy, processes), cores, busy, processes, "rule")


def configured() -> ThreadChoice | None:
    """What `configure_threads` chose in this process (None when it did not run)."""
    return _configured


def configure_threads(processes: int | None = None, *, force: bool = False) -> ThreadChoice:
    """Set torch's (and OpenCV's) thread count by `choose_threads`, once per process (``force``: again)."""
    global _configured
    if _configured is not None and not force:
        return _configured
    import torch

    choice = choose_threads(processes)
    torch.set_num_threads(choice.threads)
    try:
        import cv2

        cv2.setNumThreads(choice.threads)
    except ImportError:
        pass
    logger.info("%s", choice)
    _configured = choice
    return choice
