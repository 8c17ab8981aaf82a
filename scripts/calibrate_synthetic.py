"""Fit the synthetic default's per-extractor noise to the paper's single-extractor rows of Table 1.

    python scripts/calibrate_synthetic.py [--rounds 3] [--extractors eac poster resnet18 poster2] [-o fit.json]

The command line is ``abaw_hf.cli.calibrate``; the logic lives in ``abaw_hf.training.synthetic_calibration``.
"""

import sys

from abaw_hf.cli.calibrate import command_line

if __name__ == "__main__":
    sys.exit(command_line(sys.argv[1:]))
