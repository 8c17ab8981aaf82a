"""Third-party chatter on the console, silenced unless ``--debug`` (or ``ABAW_HF_DEBUG=1``): the progress bars
transformers draws while loading or writing weights, and the lines MediaPipe's native code writes to the process's
stderr while it builds its graphs (``W0000 ... Feedback manager ...``, ``INFO: Created TensorFlow Lite XNNPACK
delegate``). Our own messages are untouched; errors still surface as exceptions with their messages.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from .errors import debug_requested


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' ``Loading weights`` / ``Writing model shards`` bars off inside the block (unless --debug)."""
    from transformers.utils import logging as hf_logging

    if debug_requested() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """What native code writes to file descriptor 2 inside the block is dropped (unless --debug). For short blocks
    that build third-party graphs: Python output of other threads meanwhile would be dropped too."""
    if debug_requested():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr (a closed or replaced stream): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
