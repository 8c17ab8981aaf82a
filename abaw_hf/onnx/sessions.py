"""onnxruntime sessions: the one place that opens a graph (export verifies with it, the runtime runs with it).

It imports onnxruntime only when a session is asked for; a missing onnxruntime is a user error naming the package.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UserError("--runtime onnx needs onnxruntime: pip install onnxruntime") from None
    return onnxruntime


def execution_providers() -> list[str]:
    """CUDA when this onnxruntime build has it, then CPU."""
    available = require_onnxruntime().get_available_providers()
    return [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]


def create_session(path: str | Path, threads: int | None = None):
    """An InferenceSession on `path` with all graph optimisations and torch's thread count (same budget)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only: unused-input notices are expected
    # Idle threads sleep instead of spinning: in the pipeline torch networks, face detection and MediaPipe run
    # between onnxruntime calls and need those cores (spinning cost them 10-15 % here, more than it saves).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=execution_providers())
