"""Evaluation over eval-mode windows under a real 2-process `accelerate launch`: every (video, frame) is
predicted exactly once and the metrics equal a 1-process run. Run as a script, this file is the worker; it loads
the model the test saved (the tiny_model fixture lives in conftest, which a worker script does not get)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from abaw_hf import AbawFusionModel
from abaw_hf.data import rows_from_windows, window_dataloader
from abaw_hf.metrics import compute_abaw_metrics

WINDOW, BATCH, SPAN = 8, 3, 16


def predict(dataset, model: AbawFusionModel, accelerator=None) -> dict[str, np.ndarray]:
    """Per-window predictions, gathered over processes when an accelerator is given."""
    loader = window_dataloader(dataset, window_size=WINDOW, batch_size=BATCH, mode="eval", max_span=SPAN)
    if accelerator is not None:
        loader, model = accelerator.prepare(loader, model)
    parts: dict[str, list] = {"row_index": [], "va": [], "expression": [], "aus": [], "local_batches": []}
    for batch in loader:
        parts["local_batches"].append(np.ones(1))
        row_index = batch.pop("row_index")
        batch["features"] = {name: batch["features"][name] for name in ("resnet18", "fau")}
        batch["feature_mask"] = {name: batch["feature_mask"][name] for name in ("resnet18", "fau")}
        with torch.no_grad():
            output = model(**batch)
        outputs = {
            "row_index": row_index,
            "va": output.valence_arousal,
            "expression": output.expression_logits.argmax(-1),
            "aus": (output.au_logits > 0).long(),
        }
        if accelerator is not None:
            outputs = accelerator.gather_for_metrics(outputs)
        for key, value in outputs.items():
            parts[key].append(value.cpu().numpy())
    return {key: np.concatenate(value) for key, value in parts.items()}


def score(dataset, windows: dict[str, np.ndarray]) -> dict[str, float]:
    n = len(dataset)
    labels = dataset.with_format("numpy", columns=["valence", "arousal", "expression"])[:]
    aus = np.asarray(dataset["aus"])
    return compute_abaw_metrics(
        rows_from_windows(windows["row_index"], windows["va"], n),
        np.stack([labels["valence"], labels["arousal"]], 1),
        rows_from_windows(windows["row_index"], windows["expression"], n),
        labels["expression"],
        rows_from_windows(windows["row_index"], windows["aus"], n),
        aus,
    )


def test_two_process_evaluation_covers_each_frame_once(free_port, tiny_model, tmp_path):
    import datasets

    from abaw_hf.data import make_synthetic_dataset

    split = make_synthetic_dataset(num_videos=5, frames_per_video=45)["train"]
    split.save_to_disk(str(tmp_path / "split"))
    split = datasets.load_from_disk(str(tmp_path / "split"))
    model = tiny_model({name: split.features[name].length for name in ("resnet18", "fau")}, seed=0, max_window=SPAN)
    model.save_pretrained(tmp_path / "model")
    single = score(split, predict(split, model))
    num_windows = len(window_dataloader(split, window_size=WINDOW, batch_size=BATCH, mode="eval", max_span=SPAN).dataset)
    assert num_windows % (2 * BATCH) != 0  # the last global batch is uneven: accelerate pads, gather drops

    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    command = [
        str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
        "--main_process_port", str(free_port()), __file__, str(tmp_path / "split"), str(tmp_path / "model"),
        str(tmp_path / "result.json"),
    ]  # fmt: skip
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["num_processes"] == 2
    assert min(result["batches_per_process"]) > 0  # both processes did part of the work
    assert result["rows_predicted"] == len(split) and result["each_row_once"]
    for key, value in single.items():
        assert abs(result["metrics"][key] - value) < 1e-6, key


def _worker(dataset_path: str, model_path: str, result_path: str) -> None:
    import datasets
    from accelerate import Accelerator

    accelerator = Accelerator()
    dataset = datasets.load_from_disk(dataset_path)
    windows = predict(dataset, AbawFusionModel.from_pretrained(model_path).eval(), accelerator)
    counts = accelerator.gather(torch.tensor([len(windows["local_batches"])])).tolist()
    if accelerator.is_main_process:
        covered = np.bincount(windows["row_index"][windows["row_index"] >= 0], minlength=len(dataset))
        result = {
            "num_processes": accelerator.num_processes,
            "batches_per_process": counts,
            "rows_predicted": int((covered > 0).sum()),
            "each_row_once": bool((covered == 1).all()),
            "metrics": score(dataset, windows),
        }
        Path(result_path).write_text(json.dumps(result))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], sys.argv[3])
