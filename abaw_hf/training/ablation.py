"""Feature ablation (the paper's Table 1): train and evaluate one model per feature combination.

    python scripts/ablation.py                                   # the paper's eight rows, configs/default.yaml
    python scripts/ablation.py --combos resnet18 poster2+resnet18 --config configs/abaw7_paper.yaml \\
        --dataset data/abaw7 --output-dir outputs/ablation -o ablation.md

Each combination trains with the base config (``--config``, plus ``--epochs`` / ``--dataset`` overrides) and only
its features; the row is the best epoch's validation score. Writes a Markdown table with the paper's columns
(Features, Valence, Arousal, FER, AU, score; score = (V + A)/2 + FER + AU = P_MTL).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from ..errors import UserError
from .config import TrainConfig, load_train_config
from .loop import train

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"  # in a checkout

# The eight rows of the paper's Table 1, in its order and spelling.
PAPER_COMBOS = [
    "EAC", "POSTER", "ResNet18", "POSTER2", "ResNet18+Fau", "ResNet18+POSTER2", "POSTER2+POSTER+EAC",
    "ResNet18+POSTER2+FAU",
]
# Table 1 of the paper (s-Aff-Wild2 validation): Valence, Arousal, FER, AU, score
PAPER_TABLE1 = {
    "EAC": (0.414, 0.425, 0.249, 0.433, 1.1015),
    "POSTER": (0.439, 0.347, 0.247, 0.423, 1.063),
    "ResNet18": (0.420, 0.451, 0.266, 0.454, 1.1555),
    "POSTER2": (0.483, 0.374, 0.253, 0.441, 1.1775),
    "ResNet18+FAU": (0.443, 0.393, 0.281, 0.468, 1.167),
    "ResNet18+POSTER2": (0.462, 0.412, 0.315, 0.452, 1.204),
    "POSTER2+POSTER+EAC": (0.453, 0.398, 0.243, 0.446, 1.1145),
    "ResNet18+POSTER2+FAU": (0.503, 0.432, 0.319, 0.493, 1.2795),
}
# Validation P_MTL on s-Aff-Wild2 of the reference systems (FACTS: the ABAW7 baseline, the paper, first place)
REFERENCE_SCORES = {"ABAW7 baseline (VGG16)": 0.32, "the paper (ResNet18+POSTER2+FAU)": 1.2795,
                    "ABAW7 first place (Netease Fuxi)": 1.5286}
# The paper's spelling of the registry extractors it used; any other feature column keeps its own name.
DISPLAY_NAMES = {"resnet18": "ResNet18", "poster2": "POSTER2", "poster": "POSTER", "eac": "EAC", "fau": "FAU"}


def start_training(config_path: str, output_dir: Path, log_path: Path, threads: int = 1, **flags) -> subprocess.Popen:
    """Start ``abaw-hf train --config config_path`` with ``flags`` (e.g. features, dataset, epochs) in a subprocess
    with ``threads`` torch threads; on a shared machine single-threaded jobs waste far less time spinning."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "abaw_hf.cli", "train", "--config", str(config_path), "--output_dir", str(output_dir),
               "--overwrite", "--no_progress", "--no_plot"]
    for key, value in flags.items():
        if value is not None:
            command += [f"--{key}", ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_trainings(jobs: list[tuple[str, Path, dict]], config_path: str, parallel: int, log_dir: Path) -> dict[str, dict]:
    """Train ``(name, output_dir, flags)`` jobs ``parallel`` at a time (one thread each); name -> eval_results."""
    pending, running, results = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < max(1, parallel):
            name, output_dir, flags = pending.pop(0)
            running[name] = (start_training(config_path, output_dir, log_dir / f"{run_folder_name(name)}.log", **flags),
                             output_dir)
        finished = [name for name, (process, _) in running.items() if process.poll() is not None]
        if not finished:
            time.sleep(2)
        for name in finished:
            process, output_dir = running.pop(name)
            if process.returncode != 0:
                raise UserError(f"training {name} failed; see {log_dir / (run_folder_name(name) + '.log')}")
            results[name] = json.loads((Path(output_dir) / "eval_results.json").read_text())
    return results


def train_and_score(config: TrainConfig) -> dict:
    """Train one model and return its best validation metrics (the saved ``eval_results.json``)."""
    train(config)
    return json.loads((Path(config.output_dir) / "eval_results.json").read_text())


def known_features() -> list[str]:
    """Feature names the ablation knows without a dataset: the extractor registry's."""
    from ..extractors import list_extractors

    return list_extractors()


def parse_combo(text: str, available: list[str] | None = None) -> list[str]:
    """'ResNet18+Fau' -> ['resnet18', 'fau']: '+' or ',' between features, each matched case-insensitively
    against ``available`` (a dataset's feature columns; default: the extractor registry's names)."""
    available = list(available) if available is not None else known_features()
    by_lower = {name.lower(): name for name in available}
    names = [name.strip() for name in text.replace(",", "+").split("+") if name.strip()]
    unknown = [name for name in names if name.lower() not in by_lower]
    if not names or unknown:
        raise UserError(f"--combos {text!r}: unknown feature(s) {unknown or [text]}; known: {sorted(available)}")
    return [by_lower[name.lower()] for name in names]


def combo_label(features: list[str]) -> str:
    return "+".join(DISPLAY_NAMES.get(name, name) for name in features)


def dataset_features(config: TrainConfig) -> list[str]:
    """The feature columns of the dataset a config trains on (its training split)."""
    import datasets

    from ..data.schema import feature_dims_of
    from .data import load_training_data

    data, _ = load_training_data(dataclasses.replace(config, fold=None))
    split = data[config.train_split] if isinstance(data, datasets.DatasetDict) else data
    return list(feature_dims_of(split.features))


def run_folder_name(label: str) -> str:
    """A combination's sub-folder: its label lower-cased, '+' as '_', anything else unsafe in a path as '-'."""
    name = re.sub(r"[^a-z0-9_.-]", "-", label.lower().replace("+", "_")).strip(".")
    return name or "features"


def markdown_table(rows: list[tuple[str, dict]], paper: dict | None = None) -> str:
    """The paper's columns (Features, Valence, Arousal, FER, AU, score); with ``paper`` (label -> Table 1 row),
    the paper's score and the difference beside each row that the paper has. Rows averaged over training seeds
    (``p_mtl_sd`` present) get the score's standard deviation over the seeds."""
    spread = any("p_mtl_sd" in metrics for _, metrics in rows)
    header = "| Features | Valence | Arousal | FER | AU | score |" + (" sd |" if spread else "")
    rule = "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if spread else "")
    compare = paper is not None and any(label in paper for label, _ in rows)
    if compare:
        header += " paper | Δ |"
        rule += " ---: | ---: |"
    lines = [header, rule]
    for label, metrics in rows:
        line = (f"| {label} | {metrics['ccc_valence']:.3f} | {metrics['ccc_arousal']:.3f} | {metrics['f1_expression']:.3f} "
                f"| {metrics['f1_au']:.3f} | {metrics['p_mtl']:.4f} |")
        if spread:
            line += f" {metrics['p_mtl_sd']:.4f} |"
        if compare:
            reference = paper.get(label)
            line += (f" {reference[4]:.4f} | {metrics['p_mtl'] - reference[4]:+.4f} |" if reference else " – | – |")
        lines.append(line)
    return "\n".join(lines)


def spearman(first: list[float], second: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    import numpy as np

    def ranks(values):
        values = np.asarray(values, dtype=float)
        order = values.argsort(kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(len(values), dtype=float)
        for value in np.unique(values):  # ties share their mean rank
            same = values == value
            result[same] = result[same].mean()
        return result

    a, b = ranks(first), ranks(second)
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator else float("nan")


def paper_comparison(rows: list[tuple[str, dict]], paper: dict = PAPER_TABLE1) -> dict | None:
    """Spearman rho of the rows' P_MTL against the paper's, the largest difference and the paper's set's score,
    over the rows the paper has (None with fewer than 3 such rows)."""
    shared = [(label, metrics["p_mtl"], paper[label][4]) for label, metrics in rows if label in paper]
    if len(shared) < 3:
        return None
    worst = max(shared, key=lambda item: abs(item[1] - item[2]))
    summary = {"rows": len(shared), "spearman": spearman([s[1] for s in shared], [s[2] for s in shared]),
               "max_abs_difference": abs(worst[1] - worst[2]), "max_difference_row": worst[0]}
    for label, ours, theirs in shared:
        if label == PAPER_COMBOS[-1]:
            summary["paper_set"] = {"ours": ours, "paper": theirs}
    return summary


def comparison_text(summary: dict) -> str:
    text = (f"Spearman rho vs the paper's P_MTL over {summary['rows']} rows: {summary['spearman']:.3f}; largest "
            f"|difference| {summary['max_abs_difference']:.4f} ({summary['max_difference_row']})")
    if "paper_set" in summary:
        text += f"; the paper's set {summary['paper_set']['ours']:.4f} vs {summary['paper_set']['paper']:.4f}"
    return text


def reference_text(metrics: dict) -> str:
    """One line: a run's validation P_MTL beside the s-Aff-Wild2 reference scores."""
    references = "; ".join(f"{name} {score:.4f}".rstrip("0").rstrip(".") for name, score in REFERENCE_SCORES.items())
    return (f"validation P_MTL {metrics['p_mtl']:.4f} (CCC V {metrics['ccc_valence']:.3f}, A {metrics['ccc_arousal']:.3f}, "
            f"F1 expr {metrics['f1_expression']:.3f}, F1 AU {metrics['f1_au']:.3f}) | on s-Aff-Wild2: {references}")


def compare_with_paper(eval_json: str | Path) -> str:
    """An eval_results.json's P_MTL beside the paper's and the baseline's."""
    try:
        return reference_text(json.loads(Path(eval_json).read_text()))
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"--compare {eval_json}: not a readable eval_results.json ({error})") from error


SCORE_KEYS = ("ccc_valence", "ccc_arousal", "f1_expression", "f1_au", "p_mtl")


def mean_over_seeds(per_seed: list[dict]) -> dict:
    """One row from the same combination trained with several seeds: each score's mean, and the P_MTL's sample
    standard deviation as ``p_mtl_sd``."""
    import numpy as np

    row = {key: float(np.mean([metrics[key] for metrics in per_seed])) for key in SCORE_KEYS}
    row["p_mtl_sd"] = float(np.std([metrics["p_mtl"] for metrics in per_seed], ddof=1))
    return row


def run_ablation(combos: list[str] = PAPER_COMBOS, config_path: str | Path = DEFAULT_CONFIG, *,
                 dataset: str | None = None, epochs: int | None = None, output_dir: str | Path = "outputs/ablation",
                 output: str | Path | None = None, jobs: int = 1, seeds: list[int] | None = None) -> str:
    """Train and score one model per feature combination (``"resnet18+fau"``); write and return the Markdown table.
    With two or more training ``seeds`` every combination trains once per seed (the data stay the same: the
    synthetic data have their own seed) and its row is the mean, with the score's standard deviation;
    ``<output>.json`` keeps every seed's scores. One seed replaces the config's."""
    output = output or Path(output_dir) / "ablation.md"
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {' '.join(map(str, seeds))}: a seed is named twice; name each once")
    if not seeds or len(seeds) == 1:
        seed = seeds[0] if seeds else load_train_config(config_path, progress=False, plot=False).seed
        rows = _train_rows(combos, config_path, dataset, epochs, seed, Path(output_dir), jobs)
        return _write_table(rows, output, {label: metrics for label, metrics in rows}, note=single_seed_note(rows, seed))
    per_seed = {}
    for seed in seeds:
        print(f"== training seed {seed}", flush=True)
        per_seed[seed] = dict(_train_rows(combos, config_path, dataset, epochs, seed, Path(output_dir) / f"seed-{seed}",
                                          jobs))
    rows = [(label, mean_over_seeds([per_seed[seed][label] for seed in seeds])) for label in per_seed[seeds[0]]]
    note = (f"the mean over training seeds {', '.join(map(str, seeds))} (sd: the score's sample standard deviation "
            "over them)")
    return _write_table(rows, output, {"seeds": seeds, "mean": dict(rows), "per_seed": per_seed}, note=note)


def single_seed_note(rows: list[tuple[str, dict]], seed: int) -> str | None:
    """Beside a comparison with the paper from one training: how far one seed is to be trusted, and the fix."""
    if paper_comparison(rows) is None:
        return None
    return (f"one training each (seed {seed}); another seed moves a row by a few hundredths (on the synthetic "
            f"default up to 0.05, as much as the paper's rows differ), so compare the mean over seeds: "
            f"--seeds {seed} {seed + 1} {seed + 2}")


def _train_rows(combos: list[str], config_path: str | Path, dataset: str | None, epochs: int | None,
                seed: int | None, output_dir: Path, jobs: int) -> list[tuple[str, dict]]:
    """(label, best validation metrics) per combination, trained with the base config and the overrides."""
    base = load_train_config(config_path, progress=False, plot=False)
    overrides = {key: value for key, value in (("dataset", dataset), ("epochs", epochs), ("seed", seed))
                 if value is not None}
    available = dataset_features(TrainConfig(**{**dataclasses.asdict(base), **overrides}))
    combos = [parse_combo(text, available) for text in combos]
    if jobs > 1:
        runs = [(combo_label(features), output_dir / run_folder_name(combo_label(features)),
                 {"features": features, **overrides}) for features in combos]
        print(f"== {len(runs)} trainings, {jobs} at a time (logs in {output_dir}/logs)", flush=True)
        results = run_trainings(runs, str(config_path), jobs, output_dir / "logs")
        return [(label, results[label]) for label, _, _ in runs]
    rows = []
    for features in combos:
        label = combo_label(features)
        # a rerun retrains every combination: --overwrite replaces only the earlier training outputs
        config = TrainConfig(**{**dataclasses.asdict(base), **overrides, "features": features, "overwrite": True,
                                "output_dir": str(output_dir / run_folder_name(label))})
        print(f"== {label}: training {config.epochs} epoch(s) -> {config.output_dir}", flush=True)
        rows.append((label, train_and_score(config)))
        print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def _write_table(rows: list[tuple[str, dict]], output: str | Path, record: dict, note: str | None = None) -> str:
    """Write the Markdown table (with the comparison to the paper) and its JSON record; print and return the table."""
    table = markdown_table(rows, paper=PAPER_TABLE1)
    summary = paper_comparison(rows)
    if summary:
        table += "\n\n" + comparison_text(summary)
    if note:
        table += f"\n\nRows: {note}."
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table + "\n")
    output.with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(table)
    print(f"table written to {output}")
    return table
