"""Feature ablation (the paper's Table 1): train and evaluate one model per feature combination.

    python scripts/ablation.py                                   # the paper's eight rows, configs/default.yaml
    python scripts/ablation.py --combos resnet18 poster2+resnet18 --config configs/abaw7_paper.yaml \\
        --dataset data/abaw7 --output-dir outputs/ablation -o ablation.md

Each combination trains with the base config (``--config``, plus ``--epochs`` / ``--dataset`` overrides) and only
its features; the row is the best epoch's validation score. Writes a Markdown table with the paper's columns
(Features, Valence, Arousal, FER, AU, score; score = (V + A)/2 + FER + AU = P_MTL).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..errors import UserError, run_command
from .config import TrainConfig, parse_train_config
from .loop import train

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"  # in a checkout

# The eight rows of the paper's Table 1, in its order and spelling.
PAPER_COMBOS = [
    "EAC", "POSTER", "ResNet18", "POSTER2", "ResNet18+Fau", "ResNet18+POSTER2", "POSTER2+POSTER+EAC",
    "ResNet18+POSTER2+FAU",
]
# Table 1 of the paper (s-Aff-Wild2 validation): Valence, Arousal, FER, AU, score
PAPER_TABLE1 = {
    "EAC": (0.414, 0.425, 0.249, 0.433, 1.1015),
    "POSTER": (0.439, 0.347, 0.247, 0.423, 1.063),
    "ResNet18": (0.420, 0.451, 0.266, 0.454, 1.1555),
    "POSTER2": (0.483, 0.374, 0.253, 0.441, 1.1775),
    "ResNet18+FAU": (0.443, 0.393, 0.281, 0.468, 1.167),
    "ResNet18+POSTER2": (0.462, 0.412, 0.315, 0.452, 1.204),
    "POSTER2+POSTER+EAC": (0.453, 0.398, 0.243, 0.446, 1.1145),
    "ResNet18+POSTER2+FAU": (0.503, 0.432, 0.319, 0.493, 1.2795),
}
DISPLAY_NAMES = {"resnet18": "ResNet18", "poster2": "POSTER2", "poster": "POSTER", "eac": "EAC", "fau": "FAU"}


def train_and_score(config: TrainConfig) -> dict:
    """Train one model and return its best validation metrics (the saved ``eval_results.json``)."""
    train(config)
    return json.loads((Path(config.output_dir) / "eval_results.json").read_text())


def parse_combo(text: str) -> list[str]:
    """'ResNet18+Fau' -> ['resnet18', 'fau'] (case-insensitive; '+' or ',' between features)."""
    names = [name.strip().lower() for name in text.replace(",", "+").split("+") if name.strip()]
    unknown = [name for name in names if name not in DISPLAY_NAMES]
    if not names or unknown:
        raise UserError(f"--combos {text!r}: unknown feature(s) {unknown or [text]}; known: {sorted(DISPLAY_NAMES)}")
    return names


def combo_label(features: list[str]) -> str:
    return "+".join(DISPLAY_NAMES[name] for name in features)


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| Features | Valence | Arousal | FER | AU | score |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, metrics in rows:
        lines.append(
            f"| {label} | {metrics['ccc_valence']:.3f} | {metrics['ccc_arousal']:.3f} | {metrics['f1_expression']:.3f} "
            f"| {metrics['f1_au']:.3f} | {metrics['p_mtl']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combos", nargs="+", default=PAPER_COMBOS, help="feature combinations, e.g. resnet18 poster2+fau")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="base training YAML (features are replaced)")
    parser.add_argument("--dataset", default=None, help="override the config's dataset")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--output-dir", default="outputs/ablation", help="one sub-folder per combination")
    parser.add_argument("--output", "-o", default=None, help="write the Markdown table here (default: <output-dir>/ablation.md)")
    args = parser.parse_args(argv)

    base = parse_train_config(["--config", args.config, "--no_progress", "--no_plot"])
    overrides = {key: value for key, value in (("dataset", args.dataset), ("epochs", args.epochs)) if value is not None}
    combos = [parse_combo(text) for text in args.combos]
    rows = []
    for features in combos:
        label = combo_label(features)
        # a rerun retrains every combination: --overwrite replaces only the earlier training outputs
        config = TrainConfig(**{**dataclasses.asdict(base), **overrides, "features": features, "overwrite": True,
                                "output_dir": str(Path(args.output_dir) / label.lower().replace("+", "_"))})
        print(f"== {label}: training {config.epochs} epoch(s) -> {config.output_dir}", flush=True)
        rows.append((label, train_and_score(config)))
        print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)

    table = markdown_table(rows)
    output = Path(args.output or Path(args.output_dir) / "ablation.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table + "\n")
    (output.with_suffix(".json")).write_text(json.dumps({label: metrics for label, metrics in rows}, indent=2))
    print(table)
    print(f"table written to {output}")
    return table


def command_line(argv: list[str] | None = None) -> int:
    """``python scripts/ablation.py ...``: a user error is a message and exit status 2."""
    return run_command("ablation.py", lambda: main(argv) and 0, argv)
