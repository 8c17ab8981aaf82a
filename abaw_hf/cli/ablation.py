"""``python scripts/ablation.py``: the paper's Table 1 rows, one trained and evaluated model per feature combination
(`abaw_hf.training.ablation` does the work).

    python scripts/ablation.py                                   # the paper's eight rows, configs/default.yaml
    python scripts/ablation.py --combos resnet18 poster2+resnet18 --config configs/abaw7_paper.yaml \\
        --dataset data/abaw7 --output-dir outputs/ablation -o ablation.md
"""

from __future__ import annotations

import argparse

from ..errors import run_command
from ..training.ablation import DEFAULT_CONFIG, PAPER_COMBOS, compare_with_paper, run_ablation


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description="Feature ablation (the paper's Table 1): train and evaluate one "
                                                 "model per feature combination.")
    parser.add_argument("--combos", nargs="+", default=PAPER_COMBOS, help="feature combinations, e.g. resnet18 poster2+fau")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="base training YAML (features are replaced)")
    parser.add_argument("--dataset", default=None, help="override the config's dataset")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--output-dir", default="outputs/ablation", help="one sub-folder per combination")
    parser.add_argument("--output", "-o", default=None, help="write the Markdown table here (default: <output-dir>/ablation.md)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at a time, each a subprocess with one thread (default 1: in this process)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="training seeds: with two or more, each row is the mean over them with its sd "
                             "(default: the config's seed)")
    parser.add_argument("--compare", metavar="EVAL_JSON", default=None,
                        help="only print this eval_results.json's P_MTL beside the paper's and the baseline's, and exit")
    args = parser.parse_args(argv)
    if args.compare:
        text = compare_with_paper(args.compare)
        print(text)
        return text
    return run_ablation(args.combos, args.config, dataset=args.dataset, epochs=args.epochs, output_dir=args.output_dir,
                        output=args.output, jobs=args.jobs, seeds=args.seeds)


def command_line(argv: list[str] | None = None) -> int:
    """``python scripts/ablation.py ...``: a user error is a message and exit status 2."""
    return run_command("ablation.py", lambda: main(argv) and 0, argv)
