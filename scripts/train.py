"""Train the ABAW fusion model with 🤗 Accelerate.

    accelerate launch scripts/train.py --config configs/abaw7_paper.yaml
    python scripts/train.py --config configs/default.yaml --epochs 3       # one process
    accelerate launch scripts/train.py --config configs/default.yaml --resume latest
    python scripts/train.py --config configs/default.yaml --overwrite      # replace the run in output_dir

The same as ``abaw-hf train``: settings from ``--config`` and flags (``abaw_hf.training.config``), then
``abaw_hf.training.train(config)``. An output_dir that holds another run is refused unless --overwrite or
--resume says what to do with it; a user error (a file, key or flag) is a message and exit status 2 (--debug
shows the traceback).
"""

import sys

from abaw_hf.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
