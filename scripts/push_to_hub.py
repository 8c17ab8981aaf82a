"""Stage a trained model (and optionally the Space) and upload it to the Hugging Face Hub.

    python scripts/push_to_hub.py runs/demo --repo-id org/abaw-fusion --dry-run
    python scripts/push_to_hub.py runs/paper --repo-id org/abaw-fusion --real-data \
        --extractor-checkpoint resnet18=ckpt/resnet18_msceleb.pth --space-id org/abaw-fusion-demo

Same as ``abaw-hf push`` (``abaw_hf.cli.push``); the logic lives in ``abaw_hf.hub``.
"""

from __future__ import annotations

import sys

from abaw_hf.cli.push import main

if __name__ == "__main__":
    sys.exit(main())
