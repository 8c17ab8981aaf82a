"""scripts/ablation.py (abaw_hf.training.ablation): one trained and evaluated model per feature combination, a Markdown table of them."""

from __future__ import annotations

import json

import pytest
import yaml

from abaw_hf.errors import UserError
from abaw_hf.training import ablation
from abaw_hf.cli import ablation as ablation_cli


def test_parse_combos_and_paper_defaults():
    assert ablation.parse_combo("ResNet18+Fau") == ["resnet18", "fau"]
    assert ablation.parse_combo("poster2,resnet18") == ["poster2", "resnet18"]
    assert [ablation.combo_label(ablation.parse_combo(c)) for c in ablation.PAPER_COMBOS] == list(ablation.PAPER_TABLE1)
    with pytest.raises(UserError, match="unknown feature.*vgg"):
        ablation.parse_combo("resnet18+vgg")


def test_any_dataset_column_is_a_feature_and_the_paper_comparison(tmp_path):
    columns = ["resnet18", "fau", "timm-test_vit", "audio-wavlm"]  # e.g. timm:/audio: extractor columns
    assert ablation.parse_combo("TIMM-test_vit+ResNet18", columns) == ["timm-test_vit", "resnet18"]
    assert ablation.combo_label(["timm-test_vit", "resnet18"]) == "timm-test_vit+ResNet18"
    with pytest.raises(UserError, match="unknown feature.*poster2"):
        ablation.parse_combo("poster2", columns)  # not a column of this dataset
    assert set(ablation.known_features()) >= {"resnet18", "poster2", "poster", "eac", "fau"}  # the registry
    assert ablation.run_folder_name("../x/y+Z") == "-x-y_z" and ablation.run_folder_name("..") == "features"
    assert ablation.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert ablation.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    rows = [(label, {"p_mtl": row[4] + 0.01}) for label, row in ablation.PAPER_TABLE1.items()]
    summary = ablation.paper_comparison(rows)
    assert summary["rows"] == 8 and summary["spearman"] == pytest.approx(1.0)
    assert summary["max_abs_difference"] == pytest.approx(0.01) and summary["paper_set"]["paper"] == 1.2795
    assert ablation.paper_comparison(rows[:2]) is None
    # one training per row beside the paper: the table says how far one seed goes and how to average
    note = ablation.single_seed_note(rows, 32)
    assert "seed 32" in note and note.endswith("--seeds 32 33 34")
    assert ablation.single_seed_note(rows[:2], 32) is None  # no comparison, no note
    scored = [(label, {"ccc_valence": 0.5, "ccc_arousal": 0.4, "f1_expression": 0.3, "f1_au": 0.45,
                       "p_mtl": metrics["p_mtl"]}) for label, metrics in rows]
    table = ablation._write_table(scored, tmp_path / "t.md", {}, note=note)
    assert table.endswith(f"Rows: {note}.") and "Spearman" in table


def test_two_combos_train_and_fill_the_table(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": "synthetic", "synthetic_size": "tiny", "window": 8, "train_stride": 8, "hidden_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_ratio": 2.0, "epochs": 3, "batch_size": 8,
        "eval_batch_size": 32, "learning_rate": 0.003, "progress": False, "plot": False,
    }))
    table = ablation_cli.main(["--combos", "resnet18", "poster2+fau", "--config", str(config), "--epochs", "1",
                           "--output-dir", str(tmp_path / "runs"), "-o", str(tmp_path / "table.md")])
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines == table.splitlines()
    assert lines[0] == "| Features | Valence | Arousal | FER | AU | score | paper | Δ |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["ResNet18", "POSTER2+FAU"]
    for line in lines[2:]:
        valence, arousal, fer, au, score = (float(cell) for cell in line.split("|")[2:7])
        assert score == pytest.approx((valence + arousal) / 2 + fer + au, abs=2e-3)
        assert 0 < score <= 3
    paper, difference = lines[2].split("|")[7:9]  # ResNet18 is a Table 1 row; POSTER2+FAU is not
    assert float(paper) == 1.1555 and float(difference) == pytest.approx(float(lines[2].split("|")[6]) - 1.1555, abs=2e-4)
    assert lines[3].split("|")[7:9] == [" – ", " – "]
    scores = json.loads((tmp_path / "table.json").read_text())
    assert set(scores) == {"ResNet18", "POSTER2+FAU"}
    for folder, features in (("resnet18", ["resnet18"]), ("poster2_fau", ["poster2", "fau"])):
        saved = json.loads((tmp_path / "runs" / folder / "config.json").read_text())
        assert saved["feature_names"] == features
        assert yaml.safe_load((tmp_path / "runs" / folder / "train_config.yaml").read_text())["epochs"] == 1


def test_seeds_average_each_row_and_keep_every_seed(tmp_path):
    """--seeds: each combination trains once per training seed (in subprocesses with --jobs 2, so the seed goes
    through the train command's flag); the row is the mean and its sd, the JSON keeps every seed's scores."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": "synthetic", "synthetic_size": "tiny", "window": 8, "train_stride": 8, "hidden_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_ratio": 2.0, "epochs": 1, "batch_size": 8,
        "eval_batch_size": 32, "learning_rate": 0.003, "progress": False, "plot": False,
    }))
    table = ablation_cli.main(["--combos", "resnet18", "--config", str(config), "--seeds", "1", "2", "--jobs", "2",
                               "--output-dir", str(tmp_path / "runs"), "-o", str(tmp_path / "table.md")])
    lines = table.splitlines()
    assert lines[0] == "| Features | Valence | Arousal | FER | AU | score | sd | paper | Δ |"
    record = json.loads((tmp_path / "table.json").read_text())
    assert record["seeds"] == [1, 2]
    first, second = (record["per_seed"][seed]["ResNet18"]["p_mtl"] for seed in ("1", "2"))
    assert first != second  # the seeds really differ
    for seed in (1, 2):
        saved = yaml.safe_load((tmp_path / "runs" / f"seed-{seed}" / "resnet18" / "train_config.yaml").read_text())
        assert saved["seed"] == seed
    mean, sd = (float(cell) for cell in lines[2].split("|")[6:8])
    assert mean == pytest.approx((first + second) / 2, abs=1e-4)
    assert sd == pytest.approx(abs(first - second) / 2 ** 0.5, abs=1e-4)
    assert record["mean"]["ResNet18"]["p_mtl"] == pytest.approx((first + second) / 2)
    assert "mean over training seeds 1, 2" in table
    with pytest.raises(UserError, match="named twice"):
        ablation.run_ablation(["resnet18"], config, seeds=[3, 3], output_dir=tmp_path / "twice")
