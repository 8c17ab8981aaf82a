"""What an output is, in one line: the same words in every output that carries predictions, weights or features.

`weights_status` makes that line. It is the ``weights`` column of `abaw-hf predict`'s CSV and of the Space's CSV,
the ``weights:`` line of the Space's status (what `gradio_client` users read), of `predict`'s report on stderr and
of `abaw-hf push --dry-run`, and the status line of the model card and of the dataset card. Light: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

STATUS_LABEL = "weights"  # the CSV column and the label of the line


def weights_status(synthetic: bool | None, random_extractors: Sequence[str] = ()) -> str:
    """``synthetic``: the model was trained on (or the features are) the synthetic demo data (None: not recorded);
    ``random_extractors``: the features whose extractor runs (or ran) with random weights.

    >>> weights_status(True, ["resnet18"])
    'DEMO ONLY, not real affect: SYNTHETIC demo data; RANDOM weights for resnet18'
    >>> weights_status(False)
    'real data; every extractor with its weights'
    """
    random_extractors = list(random_extractors)
    problems = ["SYNTHETIC demo data"] if synthetic else []
    if random_extractors:
        problems.append(f"RANDOM weights for {', '.join(random_extractors)}")
    if problems:
        return "DEMO ONLY, not real affect: " + "; ".join(problems)
    data = "real data" if synthetic is False else "training data not recorded"
    return f"{data}; every extractor with its weights"


def status_line(status: str) -> str:
    """The line as text outputs print it: ``weights: <status>``."""
    return f"{STATUS_LABEL}: {status}"
