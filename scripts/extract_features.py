"""Extract per-frame features into a dataset; the same as `abaw-hf extract` (see `--help`).

    python scripts/extract_features.py --frames cropped_aligned --annotations train.txt \
        --extractor resnet18=resnet18_msceleb.pth --output features/train
    accelerate launch --num_processes 2 scripts/extract_features.py ...
"""

from __future__ import annotations

import sys

from abaw_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
