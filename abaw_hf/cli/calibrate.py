"""``python scripts/calibrate_synthetic.py``: fit the synthetic default's per-extractor noise to the paper's
single-extractor rows of Table 1 (`abaw_hf.training.synthetic_calibration` does the work).

    python scripts/calibrate_synthetic.py [--rounds 3] [--extractors eac poster resnet18 poster2] [-o fit.json]
"""

from __future__ import annotations

import argparse

from ..errors import run_command
from ..training.ablation import DEFAULT_CONFIG
from ..training.synthetic_calibration import SINGLE_ROWS, run_calibration


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Fit the synthetic default's per-extractor noise to the paper's "
                                                 "single-extractor rows of Table 1.")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training YAML (its synthetic size and seed)")
    parser.add_argument("--extractors", nargs="+", default=list(SINGLE_ROWS), help="which single rows to fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time (one thread each)")
    parser.add_argument("--stage", choices=("tasks", "scale"), default="tasks",
                        help="tasks: each task's noise towards its column; scale: one factor per extractor towards P_MTL")
    parser.add_argument("--start", default=None, help="JSON file of starting noise levels (default: the frozen table)")
    parser.add_argument("--output-dir", default=None, help="keep the generated data and runs here (default: a temp folder)")
    parser.add_argument("--output", "-o", default=None, help="write the fitted table and log as JSON here")
    args = parser.parse_args(argv)
    return run_calibration(args.config, args.extractors, args.rounds, jobs=args.jobs, stage=args.stage,
                           start_file=args.start, output_dir=args.output_dir, output=args.output)


def command_line(argv: list[str] | None = None) -> int:
    return run_command("calibrate_synthetic.py", lambda: main(argv) and 0, argv)
