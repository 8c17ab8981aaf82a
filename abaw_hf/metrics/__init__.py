"""ABAW MTL metrics: the numpy core and the path of the local ``evaluate`` module around it."""

from pathlib import Path

from .core import TASK_SCORES, ccc, compute_abaw_metrics, f1_au, f1_expression, register_score, score_tasks

# evaluate.load(EVALUATE_MODULE_PATH) works offline
EVALUATE_MODULE_PATH = str(Path(__file__).with_name("abaw_mtl") / "abaw_mtl.py")

__all__ = ["EVALUATE_MODULE_PATH", "TASK_SCORES", "ccc", "compute_abaw_metrics", "f1_au", "f1_expression", "register_score",
           "score_tasks"]
