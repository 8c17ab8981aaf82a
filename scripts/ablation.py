"""Feature ablation (the paper's Table 1): train and evaluate one model per feature combination.

    python scripts/ablation.py                                   # the paper's eight rows, configs/default.yaml
    python scripts/ablation.py --combos resnet18 poster2+resnet18 --config configs/abaw7_paper.yaml \\
        --dataset data/abaw7 --output-dir outputs/ablation -o ablation.md

The command line is ``abaw_hf.cli.ablation``; the logic lives in ``abaw_hf.training.ablation``.
"""

import sys

from abaw_hf.cli.ablation import command_line

if __name__ == "__main__":
    sys.exit(command_line(sys.argv[1:]))
