"""``abaw-hf tune``: choose the smoothing width and per-AU thresholds on validation and write them into the model
folder (config.json ``au_thresholds``, ``postprocessing.json``) or a tuned copy (`abaw_hf.postprocess` does the work).

    abaw-hf tune --model outputs/abaw-fusion --data synthetic --split validation
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from .. import outputs
from ..errors import UserError, check_output_file
from ..evaluation import LABELS_RULE  # the one statement of what evaluate and tune do without labels
from ..model_files import POSTPROCESSING_FILE
from ..postprocess import DEFAULT_SIGMAS, choose_smoothing, copy_model_folder, hub_cache_links, save_postprocessing
from .arguments import non_negative_float, non_negative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, help="model folder(s); several = one ensemble")
    parser.add_argument("--data", required=True, help="'synthetic', a save_to_disk folder or a Parquet folder")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--sigmas", type=non_negative_float, nargs="+", default=list(DEFAULT_SIGMAS), help="smoothing widths (frames)")
    parser.add_argument("--max-gap", type=non_negative_int, default=None, help="frame gap that stops smoothing (default: the training max_gap)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--dry-run", action="store_true", help="print the choice without writing the model folders")
    parser.add_argument("--output", metavar="DIR",
                        help="write a tuned copy of the (one) --model here instead of changing the model folder; "
                             "needed for a Hub id or a model in the Hub cache, which tune never writes into")
    parser.epilog = LABELS_RULE


def run(args: argparse.Namespace) -> int:
    if args.output and args.dry_run:
        raise UserError("--output and --dry-run: give one (--dry-run writes nothing)")
    if args.output and len(args.model) != 1:
        raise UserError(f"--output writes a tuned copy of one model; {len(args.model)} --model given "
                        "(drop --output to write the choice into each model folder)")
    if args.output:
        outputs.check_claimable(args.output, "--output")
    elif not args.dry_run:  # the choice is written into each model folder: check they are writable folders first
        for name in args.model:
            if not Path(name).is_dir():
                raise UserError(f"--model {name}: tune writes into the model folder; give a local folder, "
                                "--output DIR for a tuned copy, or --dry-run")
            if hub_cache_links(name):
                raise UserError(
                    f"--model {name} is a Hub-cache snapshot ({', '.join(hub_cache_links(name)[:3])} link to shared "
                    "blobs); tune never writes into the cache: pass --output DIR to save a tuned copy"
                )
            check_output_file(Path(name) / POSTPROCESSING_FILE, "--model")
    if args.output:  # one writer per output: the tuned copy's folder is claimed and locked for the whole run
        with outputs.writing(args.output, "--output"):
            return _tune(args)
    return _tune(args)  # a model folder is locked only while the choice is written into it (a refusal adds no file)


def _tune(args: argparse.Namespace) -> int:
    from ..evaluation import TASK_NAMES, UnlabelledSplitError, dataset_labels, load_split, predict_dataset, require_labels
    from ..model_files import inference_settings
    from ..model_loading import load_fusion_model

    models = [load_fusion_model(name) for name in args.model]
    dataset = load_split(args.data, args.split)
    labels = dataset_labels(dataset)
    # thresholds and a smoothing width chosen from missing labels would be noise written into the model folder
    where = f"{args.data}:{args.split}"
    unlabelled = [TASK_NAMES[task] for task in TASK_NAMES if task not in require_labels(labels, where, "tune")]
    if unlabelled:
        raise UnlabelledSplitError(
            f"{where} has no {' / '.join(unlabelled)} labels; tune chooses by P_MTL, which needs all three tasks "
            "labelled (nothing was written)"
        )
    max_gap = args.max_gap if args.max_gap is not None else inference_settings(models[0].config, args.model[0]).max_gap
    predictions = predict_dataset(models, dataset, batch_size=args.batch_size)
    rows = predictions.row_index
    row_labels = {key: labels[key][rows] for key in ("va", "expression", "au")}
    choice = choose_smoothing(
        predictions, row_labels, labels["video"][rows], labels["frame"][rows], sigmas=args.sigmas, max_gap=max_gap
    )
    print("| smoothing σ (frames) | P_MTL | VA | F1 expr | F1 AU |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for sigma, metrics in choice.scores.items():
        mark = " (chosen)" if sigma == choice.smoothing_sigma else ""
        print(f"| {sigma:g}{mark} | {metrics['p_mtl']:.4f} | {metrics['va']:.4f} | "
              f"{metrics['f1_expression']:.4f} | {metrics['f1_au']:.4f} |")
    print("AU thresholds: " + ", ".join(f"{t:.2f}" for t in choice.au_thresholds))
    if args.output:
        outputs.clear(args.output, "--output")
        save_postprocessing(copy_model_folder(args.model[0], Path(args.output)), choice)
        print(f"saved a tuned copy of {args.model[0]} to {args.output} (config.json au_thresholds, {POSTPROCESSING_FILE}); "
              f"{args.model[0]} is unchanged")
    elif not args.dry_run:
        with contextlib.ExitStack() as held:  # one writer per model folder: a second tune or a training run is refused
            for name in args.model:
                held.enter_context(outputs.locked(name, "--model"))
            for name in args.model:
                save_postprocessing(name, choice)
        print(f"saved to {', '.join(args.model)} (config.json au_thresholds, {POSTPROCESSING_FILE})")
    return 0
