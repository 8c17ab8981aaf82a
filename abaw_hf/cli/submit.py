"""``abaw-hf submit``: write an ABAW MTL test submission from one or several models, or check an existing file
(`abaw_hf.submission` does the work).

    abaw-hf submit --model outputs/fold-0 outputs/fold-1 --data test_features --test-list MTL.txt -o predictions.txt
    abaw-hf submit --check predictions.txt --test-list MTL.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import UserError, check_output_file
from ..model_files import inference_settings
from ..submission import check_submission, listed_rows, read_test_list, submission_text
from .arguments import non_negative_float, non_negative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test-list", required=True, help="the challenge's MTL.txt")
    parser.add_argument("--check", metavar="FILE", help="only validate an existing submission file against --test-list")
    parser.add_argument("--model", nargs="+", help="model folder(s) or Hub id(s); several = ensemble (averaged)")
    parser.add_argument("--data", help="feature dataset of the test frames: a save_to_disk or Parquet folder")
    parser.add_argument("--split", default="test", help="split of --data (ignored for a single-split dataset)")
    parser.add_argument("--output", "-o", help="submission file to write")
    parser.add_argument("--smoothing-sigma", type=non_negative_float, default=None,
                        help="temporal smoothing in frames, 0 = off (default: the first model's tuned value, else the "
                             "pipeline's default, as `abaw-hf predict` uses)")
    parser.add_argument("--max-gap", type=non_negative_int, default=None, help="frame gap that stops smoothing (default: the model's own)")
    parser.add_argument("--window", type=positive_int, default=None, help="frames per window (default: the training window)")
    parser.add_argument("--batch-size", type=positive_int, default=64)


def run(args: argparse.Namespace) -> int:
    if args.check:
        count = check_submission(args.check, args.test_list)
        print(f"{args.check}: valid ABAW MTL submission, {count} rows in the order of {args.test_list}")
        return 0
    missing = [flag for flag, value in (("--model", args.model), ("--data", args.data), ("--output", args.output)) if not value]
    if missing:
        raise UserError(f"{', '.join(missing)} required (or --check FILE to validate a file)")
    from ..data.columns import column_array
    from ..evaluation import load_split, predict_dataset
    from ..model_loading import load_fusion_model

    check_output_file(args.output)
    test_list = read_test_list(args.test_list)
    dataset = load_split(args.data, args.split)
    models = [load_fusion_model(name) for name in args.model]
    features = sorted({name for model in models for name in model.config.feature_names})
    lacking_columns = [name for name in features if name not in dataset.column_names]
    if lacking_columns:
        raise UserError(f"{args.data}: the model(s) need feature column(s) {lacking_columns}, which the dataset lacks")
    present = np.zeros(len(dataset), dtype=bool)
    for name in features:
        present |= column_array(dataset, name)[1]
    video = np.asarray(dataset.with_format(None)["video"])
    frame = np.asarray(dataset.with_format("numpy")["frame"])
    listed_rows(test_list, video, frame, present)  # fail before the (long) prediction
    settings = inference_settings(models[0].config, args.model[0])  # the same settings the pipeline uses
    sigma = args.smoothing_sigma if args.smoothing_sigma is not None else settings.smoothing_sigma
    max_gap = args.max_gap if args.max_gap is not None else settings.max_gap
    thresholds = np.mean([model.config.au_thresholds for model in models], axis=0)
    predictions = predict_dataset(models, dataset, window=args.window, batch_size=args.batch_size)
    text = submission_text(test_list, predictions, video, frame, au_thresholds=thresholds,
                           smoothing_sigma=sigma, max_gap=max_gap, present=present)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text, encoding="utf-8")
    check_submission(args.output, test_list)
    print(f"wrote {args.output}: {len(test_list)} rows, {len(models)} model(s), smoothing σ={sigma:g} frames")
    return 0
