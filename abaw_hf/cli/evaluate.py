"""``abaw-hf evaluate``: predict a feature dataset with one or several fusion models and print the ABAW metric
(`abaw_hf.evaluation` does the work).

    abaw-hf evaluate --model outputs/abaw-fusion --data synthetic --split validation --output eval.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import UserError, check_output_file
from ..evaluation import (LABELS_RULE, dataset_labels, format_metrics_table, load_split,
                          predict_dataset, require_labels, score_predictions)
from ..modeling.tasks_abaw_fusion import task_named
from .arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, help="model folder(s) or Hub id(s); several = ensemble")
    parser.add_argument("--data", required=True, help="'synthetic', a save_to_disk folder or a Parquet folder")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--window", type=positive_int, default=None, help="frames per window (default: the training window)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--output", "-o", default=None, help="write the metrics as JSON here")
    parser.epilog = LABELS_RULE


def run(args: argparse.Namespace) -> int:
    from ..model_loading import load_fusion_model

    if args.output:
        check_output_file(args.output)
    models = [load_fusion_model(name) for name in args.model]
    dataset = load_split(args.data, args.split)
    for name, model in zip(args.model, models):
        missing = [f for f in model.config.feature_names if f not in dataset.column_names]
        if missing:
            raise UserError(f"model {name} needs feature column(s) {missing}, which {args.data}:{args.split} lacks")
    tasks = require_labels(dataset_labels(dataset), f"{args.data}:{args.split}", "evaluate")
    predictions = predict_dataset(models, dataset, window=args.window, batch_size=args.batch_size)
    thresholds = np.mean([m.config.au_thresholds for m in models], axis=0)
    # a term of a task without labels would be a meaningless 0, and so would P_MTL: the labelled tasks are scored
    metrics = score_predictions(predictions, dataset, au_thresholds=thresholds, tasks=tasks)
    unlabelled = [task.name for task in predictions.tasks() if task.name not in tasks]
    if unlabelled:
        metrics["unlabelled_tasks"] = unlabelled
    print(format_metrics_table(metrics, f"{args.data}:{args.split} ({len(models)} model{'s' if len(models) > 1 else ''})"))
    if unlabelled:
        print(f"no {' / '.join(task_named(t).words or t for t in unlabelled)} labels in {args.data}:{args.split}: "
              "those terms and P_MTL are not reported")
    if args.output:
        Path(args.output).write_text(json.dumps(metrics, indent=2))
        print(f"metrics written to {args.output}")
    return 0
