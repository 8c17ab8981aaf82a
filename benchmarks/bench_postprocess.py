"""What post-processing and ensembling add, on the synthetic default: one command, one table.

Trains (or reuses, with ``--reuse``) one model on the whole training split and K models on K video-disjoint
folds of it (configs/default.yaml), predicts the validation split, and scores P_MTL with temporal smoothing
off/on, AU thresholds 0.5/tuned, 1 model vs the K-fold ensemble. Smoothing width and thresholds are chosen on
half of the validation videos and applied to the other half (and vice versa): the main column never scores
frames that were used for tuning. The in-sample column (chosen and scored on all validation frames) shows how
much tuning on the scored frames would overstate the gain. A second table times the post-processing itself.

    python benchmarks/bench_postprocess.py [--config configs/default.yaml] [--folds 5] [--epochs N] [--reuse]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from profiling import mm_flops_per_second
from abaw_hf.evaluation import average_predictions, dataset_labels, predict_dataset
from abaw_hf.postprocess import DEFAULT_SIGMAS, choose_smoothing, cross_fit_score, smooth_predictions, tune_au_thresholds
from abaw_hf.training import TrainConfig, load_train_config, load_training_data, train

ROOT = Path(__file__).resolve().parents[1]


def trained_model(config: TrainConfig, reuse: bool):
    from transformers import AutoModel

    folder = Path(config.output_dir)
    if not (reuse and (folder / "config.json").is_file()):
        train(dataclasses.replace(config, overwrite=True))  # not reusing: retrain
    return AutoModel.from_pretrained(str(folder))


def fold_config(base: TrainConfig, folds: int, fold: int, root: Path) -> TrainConfig:
    """Fold ``fold`` of ``folds``: trained on the training videos outside that fold (``--folds/--fold``)."""
    return dataclasses.replace(base, folds=folds, fold=fold, output_dir=str(root / f"fold-{fold}"))




def timing_table(num_rows: int = 200_000, columns: int = 22) -> str:
    """Post-processing speed on ABAW-test-scale arrays (numpy, single thread)."""
    rng = np.random.default_rng(0)
    videos = np.repeat(np.arange(num_rows // 500), 500)
    frames = np.tile(np.arange(500), num_rows // 500)
    values = rng.random((len(frames), columns)).astype(np.float32)
    lines = ["| step | rows | seconds | rows/s | GFLOP/s | % of torch.mm |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    peak = mm_flops_per_second(torch.device("cpu")) / 1e9
    for sigma in (2.0, 8.0):
        start = time.perf_counter()
        smooth_predictions(values, videos, frames, sigma=sigma, max_gap=8)
        seconds = time.perf_counter() - start
        taps = 2 * int(np.ceil(3 * sigma)) + 1
        flops = len(frames) * taps * (2 * columns + 6)  # per tap: a multiply-add per column + the weight
        lines.append(f"| smooth σ={sigma:g} ({columns} columns) | {len(frames)} | {seconds:.3f} | {len(frames) / seconds:,.0f} "
                     f"| {flops / seconds / 1e9:.2f} | {100 * flops / seconds / 1e9 / peak:.2f} |")
    probs, truth = rng.random((27_000, 12)), (rng.random((27_000, 12)) < 0.3).astype(np.int64)
    start = time.perf_counter()
    tune_au_thresholds(probs, truth)
    seconds = time.perf_counter() - start
    lines.append(f"| tune 12 AU thresholds (92 candidates) | {len(probs)} | {seconds:.3f} | {len(probs) / seconds:,.0f} | – | – |")
    lines.append(f"| fp32 torch.mm 4096² (reference, {torch.get_num_threads()} threads) | – | – | – | {peak:.1f} | 100 |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--output-dir", default=str(ROOT / "outputs" / "bench-postprocess"))
    parser.add_argument("--reuse", action="store_true", help="reuse models already trained in --output-dir")
    args = parser.parse_args()

    base = load_train_config(args.config, progress=False, plot=False)
    if args.epochs:
        base.epochs = args.epochs
    root = Path(args.output_dir)
    started = time.perf_counter()
    single = trained_model(dataclasses.replace(base, output_dir=str(root / "single")), args.reuse)
    fold_models = [
        trained_model(fold_config(base, args.folds, fold, root), args.reuse) for fold in range(args.folds)
    ]
    train_seconds = time.perf_counter() - started

    data, _ = load_training_data(base)
    validation = data[base.eval_split]
    labels = dataset_labels(validation)
    setups = {
        "1 model": predict_dataset(single, validation),
        f"{args.folds} folds (ensemble)": average_predictions([predict_dataset(m, validation) for m in fold_models]),
    }
    lines = [
        "| model | smoothing | AU thresholds | σ chosen | VA | F1 expr | F1 AU | P_MTL | P_MTL in-sample |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    results = {}
    for name, predictions in setups.items():
        rows = predictions.row_index
        row_labels = {key: labels[key][rows] for key in ("va", "expression", "au")}
        video, frame = labels["video"][rows], labels["frame"][rows]
        for smoothing in (False, True):
            for tune in (False, True):
                sigmas = DEFAULT_SIGMAS if smoothing else (0.0,)
                metrics, choices = cross_fit_score(predictions, row_labels, video, frame, sigmas=sigmas,
                                                   tune_thresholds=tune, max_gap=base.max_gap)
                in_sample = choose_smoothing(predictions, row_labels, video, frame, sigmas=sigmas,
                                             tune_thresholds=tune, max_gap=base.max_gap).best
                chosen = "/".join(f"{c.smoothing_sigma:g}" for c in choices) if smoothing else "–"
                lines.append(
                    f"| {name} | {'on' if smoothing else 'off'} | {'tuned' if tune else '0.5'} | {chosen} "
                    f"| {metrics['va']:.4f} | {metrics['f1_expression']:.4f} | {metrics['f1_au']:.4f} "
                    f"| {metrics['p_mtl']:.4f} | {in_sample['p_mtl']:.4f} |"
                )
                results[f"{name}|smoothing={smoothing}|tuned={tune}"] = {"cross_fit": metrics, "in_sample": in_sample}
    if base.dataset == "synthetic":
        from abaw_hf.data.synthetic import synthetic_oracle_score

        oracle = synthetic_oracle_score(validation)
        lines.append(f"| ceiling: noise-free label function | – | – | – | {oracle['va']:.4f} | {oracle['f1_expression']:.4f} "
                     f"| {oracle['f1_au']:.4f} | {oracle['p_mtl']:.4f} | – |")
    table = "\n".join(lines)
    print(f"### Post-processing and ensembles ({base.dataset} `{Path(args.config).name}`, {base.epochs} epochs, "
          f"validation {len(validation)} frames; training {train_seconds / 60:.1f} min)\n")
    print(table)
    print("\nσ chosen: the width picked on each half of the validation videos (frames). "
          "P_MTL: chosen on the other half (cross-fit); in-sample: chosen and scored on all validation frames.\n")
    print("### Post-processing speed\n")
    print(timing_table())
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench_postprocess.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
