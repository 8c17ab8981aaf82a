"""scripts/calibrate_synthetic.py (abaw_hf.training.synthetic_calibration): the fit of the synthetic default's
extractor noise to the paper's single-extractor rows, on a tiny config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from abaw_hf.data.synthetic import EXTRACTOR_NOISE
from abaw_hf.training import synthetic_calibration as calibration

ROOT = Path(__file__).resolve().parents[1]


def test_rescale_moves_noise_towards_the_target():
    assert calibration.rescale(1.0, measured=0.6, target=0.4, task="valence") > 1.0  # too good: more noise
    assert calibration.rescale(1.0, measured=0.3, target=0.45, task="au") < 1.0  # too poor: less noise
    assert calibration.rescale(1.0, measured=0.4, target=0.4, task="arousal") == pytest.approx(1.0)
    assert 0.5 <= calibration.rescale(1.0, measured=0.0, target=0.9, task="valence") < 1.0  # one step at most halves
    assert calibration.single_row_targets("eac") == {"valence": 0.414, "arousal": 0.425, "expression": 0.249, "au": 0.433}


def test_one_round_on_a_tiny_config(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": "synthetic", "synthetic_size": "tiny", "features": ["eac"], "window": 8, "train_stride": 8,
        "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_ratio": 2.0, "epochs": 1,
        "batch_size": 8, "eval_batch_size": 32,
    }))
    out = tmp_path / "fit.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "calibrate_synthetic.py"), "--config", str(config), "--rounds", "1",
         "--extractors", "eac", "--jobs", "1", "--output-dir", str(tmp_path / "runs"), "-o", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EXTRACTOR_NOISE = {" in result.stdout and "round 0 eac" in result.stdout
    fitted = json.loads(out.read_text())
    (entry,) = fitted["history"]
    assert entry["noise"] == EXTRACTOR_NOISE["eac"] and entry["targets"] == calibration.single_row_targets("eac")
    for task, measured in entry["measured"].items():  # each task's noise moved towards its target
        before, after = EXTRACTOR_NOISE["eac"][task], fitted["extractor_noise"]["eac"][task]
        if measured > entry["targets"][task] + 0.01:
            assert after > before, task
        elif measured < entry["targets"][task] - 0.01:
            assert after < before, task
    assert fitted["extractor_noise"]["resnet18"] == EXTRACTOR_NOISE["resnet18"]  # not fitted in this run
    assert (tmp_path / "runs" / "round0" / "eac" / "eval_results.json").is_file()


def test_bad_arguments_are_messages():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "calibrate_synthetic.py"), "--extractors", "fau"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no single-extractor row" in result.stderr and "Traceback" not in result.stderr
