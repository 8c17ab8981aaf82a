"""Losses of the ABAW fusion model, as in the authors' released code.

Every loss takes the ABAW missing-label markers (VA -5, expression -1, AU -1) and ignores those
entries; a task without any label in the batch contributes an exact zero that still carries a
(zero) gradient, so mixed batches and DDP stay well-defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .configuration_abaw_fusion import MISSING_AU, MISSING_VA


def _zero_like(prediction: torch.Tensor) -> torch.Tensor:
    # keeps the graph connected, so every parameter still receives a (zero) gradient
    return prediction.sum() * 0.0


def concordance_correlation(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """CCC with population moments; finite for one sample and for constant inputs (then 0)."""
    prediction, target = prediction.float(), target.float()
    mean_p, mean_t = prediction.mean(), target.mean()
    var_p = ((prediction - mean_p) ** 2).mean()
    var_t = ((target - mean_t) ** 2).mean()
    covariance = ((prediction - mean_p) * (target - mean_t)).mean()
    return 2.0 * covariance / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)


def regression_loss(
    prediction: torch.Tensor, target: torch.Tensor, mse_weight: float, ccc_weight: float
) -> torch.Tensor:
    """``mse_weight·MSE + ccc_weight·(1 − CCC)`` over the labelled entries of one VA dimension."""
    valid = target != MISSING_VA
    if not bool(valid.any()):
        return _zero_like(prediction)
    p, t = prediction[valid].float(), target[valid].float()
    return mse_weight * F.mse_loss(p, t) + ccc_weight * (1.0 - concordance_correlation(p, t))


def weighted_asymmetric_au_loss(logits: torch.Tensor, target: torch.Tensor, au_weights: torch.Tensor) -> torch.Tensor:
    """The released weighted asymmetric loss: ``−mean w_i [y log p + p (1−y) log(1−p)]`` over labelled entries.

    The negative term is scaled by p itself, so confident false positives cost most while easy
    negatives (p ≈ 0) cost almost nothing — the asymmetry that suits rare AUs.
    """
    valid = target != MISSING_AU
    if not bool(valid.any()):
        return _zero_like(logits)
    logits = logits.float()
    y = target.clamp(min=0).float()
    probability = torch.sigmoid(logits)
    positive = y * F.logsigmoid(logits)
    negative = probability * (1.0 - y) * F.logsigmoid(-logits)
    per_entry = -(positive + negative) * au_weights.to(logits)
    return per_entry[valid].mean()


# ----- the losses the task table names (`Task.loss`) ----------------------------------------------------------------
# Each takes (task, output [B, T, width], targets with padding marked missing, model) and returns the task's term of
# the total loss and the output fields of its parts (e.g. ``valence_loss`` and ``arousal_loss``).


def _va_mse_ccc(task, output, targets, model):
    """The paper's VA loss: per dimension ``mse·MSE + ccc·(1 − CCC)``, their mean is the task's term."""
    config = model.config
    valence = regression_loss(output[..., 0], targets[..., 0], config.valence_mse_weight, config.valence_ccc_weight)
    arousal = regression_loss(output[..., 1], targets[..., 1], config.arousal_mse_weight, config.arousal_ccc_weight)
    return (valence + arousal) / 2, {"valence_loss": valence, "arousal_loss": arousal}


def _cross_entropy(task, output, targets, model):
    """Cross-entropy over the labelled frames (the task's missing marker, −1 for expressions, ignored)."""
    valid = targets != task.missing
    term = F.cross_entropy(output[valid].float(), targets[valid].long()) if bool(valid.any()) else _zero_like(output)
    return term, {f"{task.name}_loss": term}


def _weighted_asymmetric(task, output, targets, model):
    """The released weighted asymmetric AU loss with the model's per-label weights (``au_loss_weights``)."""
    term = weighted_asymmetric_au_loss(output, targets, model.au_loss_weights)
    return term, {f"{task.name}_loss": term}


LOSSES = {"va_mse_ccc": _va_mse_ccc, "cross_entropy": _cross_entropy, "weighted_asymmetric": _weighted_asymmetric}


def register_loss(name: str, function) -> None:
    """Name a loss for the task table: ``function(task, output, targets, model) -> (term, {output field: part})``."""
    if name in LOSSES:
        raise ValueError(f"a loss named {name!r} exists")
    LOSSES[name] = function
