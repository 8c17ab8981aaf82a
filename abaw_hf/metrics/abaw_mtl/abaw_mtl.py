"""ABAW Multi-Task Learning metric as a local 🤗 evaluate module.

Usage (offline)::

    import evaluate
    from abaw_hf.metrics import EVALUATE_MODULE_PATH
    metric = evaluate.load(EVALUATE_MODULE_PATH)
    frame = {"valence": 0.2, "arousal": -0.1, "expression": 3, "aus": [0] * 12}   # one dict per frame
    metric.compute(predictions=[frame, ...], references=[frame, ...])         # references: missing markers allowed
"""

import datasets
import evaluate
import numpy as np

from abaw_hf.metrics.core import compute_abaw_metrics

_DESCRIPTION = (
    "P_MTL = (CCC_V + CCC_A)/2 + macro-F1 over 8 expressions + mean binary F1 over 12 AUs, "
    "ignoring ABAW missing-label markers (VA -5, expression -1, AU -1)."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions: dicts with `valence`, `arousal` (float), `expression` (int 0..7), `aus` (12 ints 0/1).
    references: dicts with the same keys, ABAW missing markers allowed.
Returns:
    ccc_valence, ccc_arousal, va, f1_expression, f1_au, p_mtl, num_frames.
"""


def _frame_features():
    return datasets.Features(
        {
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "expression": datasets.Value("int32"),
            "aus": datasets.Sequence(datasets.Value("int32"), length=12),
        }
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AbawMtl(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Kollias et al., ABAW7 Multi-Task Learning challenge (2024)",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _frame_features(), "references": _frame_features()}),
        )

    def _compute(self, predictions, references):
        def stack(rows, key, dtype):
            return np.asarray([row[key] for row in rows], dtype=dtype)

        return compute_abaw_metrics(
            va_pred=np.stack([stack(predictions, "valence", np.float64), stack(predictions, "arousal", np.float64)], 1),
            va_true=np.stack([stack(references, "valence", np.float64), stack(references, "arousal", np.float64)], 1),
            expr_pred=stack(predictions, "expression", np.int64),
            expr_true=stack(references, "expression", np.int64),
            au_pred=stack(predictions, "aus", np.int64),
            au_true=stack(references, "aus", np.int64),
        )
