"""Fit the synthetic default's per-extractor noise to the paper's single-extractor rows of Table 1.

    python scripts/calibrate_synthetic.py                      # 3 rounds x 4 trainings, prints the fitted table
    python scripts/calibrate_synthetic.py --rounds 1 --extractors eac

Only the four single-extractor rows (EAC, POSTER, ResNet18, POSTER2) are targets; the combination rows are never
used, so the ablation's combination rows are predictions. Each round generates the default dataset with the
current noise levels (``SyntheticConfig.extractor_noise``), trains ``configs/default.yaml`` on each extractor
alone and rescales each task's noise towards its target metric (valence CCC, arousal CCC, expression F1, AU F1):
a metric ``m`` behaves like ``1 / (1 + k * noise**2)`` of its usable range, so the update is
``noise *= ((1/u* - 1) / (1/u - 1)) ** (damping / 2)`` with ``u = (m - floor) / (ceiling - floor)``. The result
is printed as the ``EXTRACTOR_NOISE`` table to freeze in ``abaw_hf/data/synthetic.py``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..errors import UserError
from .ablation import DEFAULT_CONFIG, PAPER_TABLE1, run_trainings
from .config import load_train_config

# Table 1 single-extractor rows as per-task targets: registry name -> {task: metric}
SINGLE_ROWS = {"eac": "EAC", "poster": "POSTER", "resnet18": "ResNet18", "poster2": "POSTER2"}
METRIC_OF_TASK = {"valence": "ccc_valence", "arousal": "ccc_arousal", "expression": "f1_expression", "au": "f1_au"}
# usable range of each metric (floor: what a model without the task's signal still scores on this data)
RANGE_OF_TASK = {"valence": (0.0, 0.98), "arousal": (0.0, 0.97), "expression": (0.12, 0.82), "au": (0.25, 0.85)}


def single_row_targets(extractor: str) -> dict[str, float]:
    valence, arousal, expression, au, _ = PAPER_TABLE1[SINGLE_ROWS[extractor]]
    return {"valence": valence, "arousal": arousal, "expression": expression, "au": au}


def rescale(noise: float, measured: float, target: float, task: str, damping: float = 0.8) -> float:
    """One multiplicative update of a task's noise level from its measured and target metric."""
    floor, ceiling = RANGE_OF_TASK[task]

    def odds(metric: float) -> float:
        usable = min(max((metric - floor) / (ceiling - floor), 0.02), 0.98)
        return 1.0 / usable - 1.0

    factor = (odds(target) / odds(measured)) ** (damping / 2)
    return float(noise * min(max(factor, 0.5), 2.0))


P_MTL_RANGE = (0.6, 2.5)  # usable range of P_MTL for the common-scale stage


def rescale_all(noise: dict[str, float], measured: float, target: float, damping: float = 0.8) -> dict[str, float]:
    """The common-scale stage: every task's noise times one factor, from the row's measured and target P_MTL."""
    floor, ceiling = P_MTL_RANGE

    def odds(score: float) -> float:
        usable = min(max((score - floor) / (ceiling - floor), 0.02), 0.98)
        return 1.0 / usable - 1.0

    factor = min(max((odds(target) / odds(measured)) ** (damping / 2), 0.5), 2.0)
    return {task: float(level * factor) for task, level in noise.items()}


def calibrate(
    config_path: str,
    extractors: list[str],
    rounds: int,
    start: dict[str, dict[str, float]],
    workdir: Path,
    jobs: int = 2,
    stage: str = "tasks",
    log=print,
) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Rounds of (generate, train each extractor alone, rescale); returns the fitted noise and the log.

    ``stage="tasks"`` rescales each task's noise towards that task's metric; ``stage="scale"`` rescales all of
    an extractor's noise by one factor towards the row's P_MTL (the tasks are coupled — valence follows the
    expression and AU signals — so the per-task stage cannot match every column; the scale stage then matches
    the row's score).

    The trainings of a round run ``jobs`` at a time, one torch thread each (on a shared 2-core machine one
    thread per process wastes far less time than two threads spinning against other work)."""
    from ..data.synthetic import make_synthetic_dataset, synthetic_preset

    base = load_train_config(config_path)
    noise = {name: dict(levels) for name, levels in start.items()}
    history = []
    for round_number in range(rounds):
        folder = workdir / f"round{round_number}"
        preset = synthetic_preset(base.synthetic_size)
        make_synthetic_dataset(**preset, seed=base.synthetic_seed, extractor_noise=noise).save_to_disk(str(folder / "data"))
        jobs_list = [(name, folder / name, {"dataset": folder / "data", "features": [name]}) for name in extractors]
        results = run_trainings(jobs_list, config_path, jobs, folder)
        for name in extractors:
            metrics = results[name]
            targets = single_row_targets(name)
            entry = {"round": round_number, "extractor": name, "noise": dict(noise[name]),
                     "measured": {task: metrics[METRIC_OF_TASK[task]] for task in targets}, "targets": targets,
                     "p_mtl": metrics["p_mtl"], "target_p_mtl": PAPER_TABLE1[SINGLE_ROWS[name]][4]}
            history.append(entry)
            log(f"round {round_number} {name}: noise {_fmt(noise[name])} -> measured {_fmt(entry['measured'])} "
                f"(P_MTL {metrics['p_mtl']:.4f}, target {entry['target_p_mtl']})")
            if stage == "scale":
                scaled = rescale_all(noise[name], metrics["p_mtl"], entry["target_p_mtl"])
                noise[name] = {task: round(value, 3) for task, value in scaled.items()}
            else:
                noise[name] = {task: round(rescale(noise[name][task], entry["measured"][task], targets[task], task), 3)
                               for task in targets}
    return noise, history


def _fmt(values: dict[str, float]) -> str:
    return " ".join(f"{task[:4]} {value:.3f}" for task, value in values.items())


def run_calibration(config_path: str | Path = DEFAULT_CONFIG, extractors: list[str] | None = None, rounds: int = 3, *,
                    jobs: int = 2, stage: str = "tasks", start_file: str | Path | None = None,
                    output_dir: str | Path | None = None, output: str | Path | None = None) -> dict:
    """Fit the noise table (``calibrate``), print it as ``EXTRACTOR_NOISE``, write it as JSON to ``output``."""
    from ..data.synthetic import EXTRACTOR_NOISE

    extractors = list(SINGLE_ROWS) if extractors is None else extractors
    unknown = [name for name in extractors if name not in SINGLE_ROWS]
    if unknown:
        raise UserError(f"--extractors: {unknown} have no single-extractor row in Table 1; choose from {list(SINGLE_ROWS)}")
    if rounds < 1:
        raise UserError("--rounds must be at least 1")
    if start_file is None:
        start = EXTRACTOR_NOISE
    else:
        try:
            loaded = json.loads(Path(start_file).read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"--start {start_file}: not a readable JSON file ({error})") from error
        start = {**EXTRACTOR_NOISE, **loaded.get("extractor_noise", loaded)}
    with tempfile.TemporaryDirectory(prefix="calibrate-") as scratch:
        workdir = Path(output_dir) if output_dir else Path(scratch)
        noise, history = calibrate(str(config_path), extractors, rounds, start, workdir, jobs=jobs,
                                   stage=stage)
    print("EXTRACTOR_NOISE = {")
    for name, levels in noise.items():
        print(f"    {name!r}: {json.dumps(levels)},")
    print("}")
    result = {"extractor_noise": noise, "history": history}
    if output:
        Path(output).write_text(json.dumps(result, indent=2))
    return result
