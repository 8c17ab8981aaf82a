"""Losses of the ABAW fusion model, as in the authors' released code.

Every loss takes the ABAW missing-label markers (VA -5, expression -1, AU -1) and ignores those
entries; a task without any label in the batch contributes an exact zero that still carries a
(zero) gradient, so mixed batches and DDP stay well-defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .configuration_abaw_fusion import MISSING_AU, MISSING_EXPRESSION, MISSING_VA


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


def expression_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled frames (−1 ignored)."""
    valid = target != MISSING_EXPRESSION
    if not bool(valid.any()):
        return _zero_like(logits)
    return F.cross_entropy(logits[valid].float(), target[valid].long())


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
