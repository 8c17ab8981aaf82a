"""No answers from no labels: evaluate and tune on a split without labels refuse (issue 12, item 4).

The rule (`abaw_hf.evaluation.LABELS_RULE`): a split with no labels at all (VA -5, expression -1, AU -1 on every
row, like the test split extracted from MTL.txt) is refused by both; evaluate on a partly labelled split scores
the labelled tasks and leaves the others and P_MTL out; tune needs all three tasks and otherwise writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from PIL import Image
from skimage.data import astronaut

from abaw_hf.cli import main as cli_main
from abaw_hf.data.synthetic import make_synthetic_dataset
from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel

NO_VA = {"valence": -5.0, "arousal": -5.0}
NO_EXPRESSION = {"expression": -1}
NO_AU = {"aus": [-1] * 12}


def _model(folder: Path, feature_dims: dict[str, int]) -> Path:
    config = AbawFusionConfig(feature_dims=feature_dims, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              mlp_ratio=2.0, max_window=64)
    AbawFusionModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """A feature set whose splits hold the same rows with all, some or none of the labels, and a model for it."""
    root = tmp_path_factory.mktemp("no_labels")
    # the easy generator: its validation split has every task labelled (the calibrated one misses 42.5 % of expressions)
    validation = make_synthetic_dataset(num_videos=5, frames_per_video=40, kind="easy")["validation"]
    splits = {
        "validation": validation,
        "test": validation.map(lambda row: {**NO_VA, **NO_EXPRESSION, **NO_AU}),
        "expression_only": validation.map(lambda row: {**NO_VA, **NO_AU}),
        "no_au": validation.map(lambda row: NO_AU),
    }
    datasets.DatasetDict(splits).save_to_disk(str(root / "features"))
    return {"root": root, "features": root / "features", "model": _model(root / "model", {"fau": 17})}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_evaluate_refuses_a_split_without_labels(ws, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = cli_main(["evaluate", "--model", str(ws["model"]), "--data", str(ws["features"]), "--split", "test",
                     "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{ws['features']}:test has no labels" in err and "needs a labelled split" in err
    assert not out.exists()


def test_tune_refuses_and_leaves_the_model_folder_unchanged(ws, capsys):
    before = _snapshot(ws["model"])
    tune = ["tune", "--model", str(ws["model"]), "--data", str(ws["features"]), "--split"]
    assert cli_main([*tune, "test"]) == 2
    assert f"{ws['features']}:test has no labels" in capsys.readouterr().err
    # partly labelled: tune chooses by P_MTL, which needs all three tasks
    assert cli_main([*tune, "expression_only"]) == 2
    err = capsys.readouterr().err
    assert f"{ws['features']}:expression_only has no valence/arousal / AU labels" in err and "nothing was written" in err
    assert cli_main([*tune, "no_au"]) == 2
    assert "no_au has no AU labels" in capsys.readouterr().err
    assert _snapshot(ws["model"]) == before  # no thresholds, no postprocessing.json chosen from nothing


def test_evaluate_scores_only_the_labelled_tasks(ws, tmp_path, capsys):
    evaluate = ["evaluate", "--model", str(ws["model"]), "--data", str(ws["features"]), "--split"]
    assert cli_main([*evaluate, "validation", "-o", str(tmp_path / "all.json")]) == 0
    full = json.loads((tmp_path / "all.json").read_text())
    assert "p_mtl" in full and "unlabelled_tasks" not in full
    capsys.readouterr()

    assert cli_main([*evaluate, "expression_only", "-o", str(tmp_path / "expr.json")]) == 0
    out = capsys.readouterr().out
    table_rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert table_rows[1:] == ["---", "F1 expression"]  # no CCC, F1 AU or P_MTL row
    assert "no valence/arousal / AU labels" in out and "P_MTL are not reported" in out
    partial = json.loads((tmp_path / "expr.json").read_text())
    assert partial["unlabelled_tasks"] == ["va", "au"]
    assert set(partial) == {"f1_expression", "num_frames", "unlabelled_tasks"}
    assert partial["f1_expression"] == pytest.approx(full["f1_expression"])  # the same rows, the same labels


def test_help_states_the_rule(capsys):
    for command in ("evaluate", "tune"):
        with pytest.raises(SystemExit):
            cli_main([command, "--help"])
        assert "P_MTL needs all three" in " ".join(capsys.readouterr().out.split())


def test_test_split_extracted_from_mtl_txt_is_refused(ws, tmp_path, capsys):
    # `abaw-hf extract --test-list MTL.txt` writes VA -5, expression -1, AU -1 on every row
    frames = tmp_path / "cropped_aligned" / "vid1"
    frames.mkdir(parents=True)
    face = Image.fromarray(astronaut()[20:300, 110:390]).resize((48, 48))
    for frame in (1, 2, 3):
        face.save(frames / f"{frame:05d}.jpg")
    test_list = tmp_path / "MTL.txt"
    test_list.write_text("image,valence,arousal,expression,aus\n" + "".join(f"vid1/{f:05d}.jpg,\n" for f in (1, 2, 3)))
    features = tmp_path / "features"
    with pytest.warns(UserWarning, match="RANDOM"):
        assert cli_main(["extract", "--frames", str(tmp_path / "cropped_aligned"), "--test-list", str(test_list),
                         "--extractor", "resnet18", "--random-init", "--input-size", "resnet18=32", "--num-workers", "0",
                         "--output", str(features), "--split", "test", "--no-progress"]) == 0
    capsys.readouterr()
    model = _model(tmp_path / "model", {"resnet18": 512})
    before = _snapshot(model)
    for command in ("evaluate", "tune"):
        assert cli_main([command, "--model", str(model), "--data", str(features), "--split", "test"]) == 2
        assert f"{features}:test has no labels" in capsys.readouterr().err
    assert _snapshot(model) == before
