"""The task table (`abaw_hf.modeling.tasks_abaw_fusion`): the model's heads and outputs, the predictions and the ONNX
graph's outputs come from it, and no module outside modeling/ writes an output's name."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.modeling import OUTPUT_FIELDS, PREDICTION_FIELDS, TASKS, AbawFusionOutput, Task
from abaw_hf.modeling.tasks_abaw_fusion import output_tensors, predictions, task_of

PACKAGE = Path(__file__).resolve().parent.parent / "abaw_hf"
DIMS = {"resnet18": 12, "fau": 5}
# The raw outputs and their predictions (``valence_arousal`` is its own prediction): written only in modeling/.
NAMES_OF_MODELING = set(OUTPUT_FIELDS) | set(PREDICTION_FIELDS)


def _tiny_model(**overrides) -> AbawFusionModel:
    torch.manual_seed(0)
    config = AbawFusionConfig(feature_dims=DIMS, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                              hidden_dropout_prob=0.0, max_window=16, **overrides)
    return AbawFusionModel(config).eval()


def test_every_task_has_an_output_field_and_a_head():
    fields = {field.name for field in dataclasses.fields(AbawFusionOutput)}
    assert set(OUTPUT_FIELDS) <= fields
    assert len({task.name for task in TASKS}) == len(TASKS) == len(set(OUTPUT_FIELDS)) == len(set(PREDICTION_FIELDS))
    model = _tiny_model(num_expressions=5, num_aus=3)
    for task in TASKS:
        head = getattr(model, f"{task.name}_head")
        assert head.out_features == task.head_width(model.config)
        assert task_of(task.output) is task_of(task.prediction) is task
    assert [task.head_width(model.config) for task in TASKS] == [2, 5, 3]


def test_outputs_and_predictions_follow_the_table():
    model = _tiny_model()
    with torch.inference_mode():
        output = model(features={name: torch.randn(2, 6, dim) for name, dim in DIMS.items()})
    tensors = output_tensors(output)
    assert list(tensors) == list(OUTPUT_FIELDS)
    predicted = predictions(output, as_float=True)
    assert list(predicted) == list(PREDICTION_FIELDS)
    for task in TASKS:
        value, raw = predicted[task.prediction], tensors[task.output]
        assert value.shape == raw.shape == (2, 6, task.head_width(model.config))
        if task.activation == "softmax":
            torch.testing.assert_close(value.sum(-1), torch.ones(2, 6))
        elif task.activation == "sigmoid":
            torch.testing.assert_close(value, raw.sigmoid())
        else:  # tanh inside the head
            assert value is raw and value.abs().max() <= 1


def test_the_onnx_description_lists_the_table_outputs():
    from abaw_hf.onnx.export import FUSION_OUTPUTS, fusion_io

    model = _tiny_model(num_aus=4)
    described = fusion_io(model.config)["outputs"]
    assert tuple(FUSION_OUTPUTS) == OUTPUT_FIELDS == tuple(entry["name"] for entry in described)
    assert [entry["shape"][-1] for entry in described] == [task.head_width(model.config) for task in TASKS]


def test_saved_remote_code_carries_the_table(tmp_path):
    model = _tiny_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "tasks_abaw_fusion.py").read_text() == (PACKAGE / "modeling" / "tasks_abaw_fusion.py").read_text()


def _names_written(path: Path) -> list[str]:
    """Every place in ``path`` (code, strings, docstrings and comments) that writes an output or prediction name."""
    pattern = re.compile(r"\b(" + "|".join(sorted(NAMES_OF_MODELING)) + r")\b")
    return [f"{path.relative_to(PACKAGE.parent)}:{number} {match.group(0)!r}"
            for number, line in enumerate(path.read_text().splitlines(), start=1) for match in pattern.finditer(line)]


def test_output_names_are_written_only_in_modeling():
    assert _names_written(PACKAGE / "modeling" / "tasks_abaw_fusion.py"), "the check finds the table's own names"
    sources = [path for path in sorted(PACKAGE.rglob("*")) if path.suffix in (".py", ".md", ".txt", ".yaml", ".html")
               and "modeling" not in path.relative_to(PACKAGE).parts]  # the card template and the Space's files too
    assert PACKAGE / "hub" / "model_card.md" in sources
    written = [found for path in sources for found in _names_written(path)]
    assert not written, "output names outside modeling/ (read them from abaw_hf.modeling.TASKS): " + ", ".join(written)


def test_predictions_side_by_side_split_back_by_task():
    from abaw_hf.modeling.tasks_abaw_fusion import prediction_width, split_predictions

    config = _tiny_model(num_expressions=6, num_aus=4).config
    assert prediction_width(config) == 2 + 6 + 4
    values = torch.arange(3 * 12).reshape(3, 12)
    parts = split_predictions(values, config)
    assert list(parts) == [task.name for task in TASKS]
    assert [part.shape[-1] for part in parts.values()] == [2, 6, 4]
    torch.testing.assert_close(torch.cat(list(parts.values()), dim=-1), values)


def test_labels_are_checked_by_their_row():
    model = _tiny_model(num_aus=3)
    features = {name: torch.randn(1, 2, dim) for name, dim in DIMS.items()}
    cases = [
        ({"valence_arousal_labels": torch.tensor([[[0.5, 2.0], [-5.0, 0.0]]])},
         "valence/arousal labels must lie in [-1, 1] or be -5.0 (missing); got [2.0]"),
        ({"expression_labels": torch.tensor([[8, -1]])}, "expression labels must be in 0..7 or -1 (missing); got [8]"),
        ({"au_labels": torch.tensor([[[0, 1], [1, 0]]])}, "au_labels: expected last dim 3, got [1, 2, 2]"),
        ({"au_labels": torch.tensor([[[0, 1, 2], [1, 0, -1]]])}, "AU labels must be 0, 1 or -1 (missing); got [2]"),
    ]
    for labels, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            model(features=features, **labels)
    good = {"valence_arousal_labels": torch.tensor([[[0.5, -1.0], [-5.0, 0.0]]]),
            "expression_labels": torch.tensor([[7, -1]]), "au_labels": torch.tensor([[[0, 1, -1], [1, 0, -1]]])}
    assert torch.isfinite(model(features=features, **good).loss)


# ----- a task added through the table alone --------------------------------------------------------------------

TOY_CLASSES = ("calm", "busy")


@pytest.fixture
def toy_task():
    """A fourth task, added as a row of the table plus its named metric: a 2-class head reading the ``toy`` label
    column (1 where valence is positive, 0 where not, -1 where valence is missing)."""
    from abaw_hf.metrics import TASK_SCORES, f1_expression, register_score
    from abaw_hf.modeling.tasks_abaw_fusion import register_task, unregister_task

    register_score("f1_toy", lambda decided, labels: {"f1_toy": f1_expression(decided, labels, num_classes=2)})
    task = register_task(Task(
        name="toy", output="toy_logits", width=2, activation="softmax", prediction="toy_probs", missing=-1,
        label_columns=("toy",), metric="macro F1", table_columns=("toy", "prob_{name}"), submission="(none)",
        labels="toy_labels", loss="cross_entropy", loss_weight=1.0, score="f1_toy", score_key="f1_toy",
        classes=TOY_CLASSES,
    ))
    yield task
    unregister_task("toy")
    del TASK_SCORES["f1_toy"]


def _toy_feature_set(folder: Path) -> Path:
    import datasets
    import numpy as np

    from abaw_hf.data.synthetic import make_synthetic_dataset, synthetic_preset

    data = make_synthetic_dataset(**synthetic_preset("tiny"), seed=0)
    for split in data:
        valence = np.asarray(data[split]["valence"])
        toy = np.where(valence == -5.0, -1, (valence > 0).astype(np.int64))
        data[split] = data[split].add_column("toy", toy.tolist(), feature=datasets.Value("int64"))
    data.save_to_disk(str(folder))
    return folder


def test_a_task_added_to_the_table_trains_evaluates_and_predicts(toy_task, tmp_path, capsys):
    import pandas as pd
    from PIL import Image
    from skimage import data as images

    from abaw_hf import AU_NAMES, EXPRESSION_NAMES
    from abaw_hf.cli import main as cli_main
    from abaw_hf.pipeline import prediction_columns
    from abaw_hf.modeling.tasks_abaw_fusion import unregister_task
    from abaw_hf.training import TrainConfig, train

    dataset = _toy_feature_set(tmp_path / "toy-features")
    run = tmp_path / "run"
    result = train(TrainConfig(
        dataset=str(dataset), features=["resnet18", "fau"], window=8, train_stride=8, hidden_size=16,
        num_hidden_layers=1, num_attention_heads=2, epochs=1, batch_size=8, eval_batch_size=16, learning_rate=1e-3,
        output_dir=str(run), progress=False, plot=False,
    ))
    # training: the toy head trained and was scored beside the ABAW metrics
    assert 0.0 <= result["best"]["f1_toy"] <= 1.0 and "p_mtl" in result["best"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["tasks"] == ["va", "expression", "au", "toy"]
    assert [task.name for task in _tiny_model().tasks] == ["va", "expression", "au"]  # a config without tasks: ABAW's

    # the model: rebuilt from its config with the toy head, whose output and loss come with the ABAW ones
    model = AbawFusionModel.from_pretrained(run).eval()
    assert model.toy_head.out_features == 2
    windows = {"resnet18": torch.randn(1, 5, 512), "fau": torch.randn(1, 5, 17)}
    output = model(features=windows, toy_labels=torch.tensor([[0, 1, -1, 1, 0]]))
    assert output.toy_logits.shape == (1, 5, 2) and output["toy_loss"] > 0 and output.loss >= output["toy_loss"]
    assert list(predictions(output)) == [*PREDICTION_FIELDS, "toy_probs"]

    # the ONNX graph: the toy output beside the others, and the runtime returns it in the AbawFusionOutput
    from abaw_hf.onnx.export import export_fusion, fusion_parity
    from abaw_hf.onnx.runtime import OnnxFusionModel
    from abaw_hf.onnx.sessions import create_session

    described = export_fusion(model, tmp_path / "fusion.onnx")
    assert [entry["name"] for entry in described["outputs"]] == [*OUTPUT_FIELDS, "toy_logits"]
    session = create_session(tmp_path / "fusion.onnx")
    assert fusion_parity(model, session) < 1e-4
    torch.testing.assert_close(OnnxFusionModel(session, model.config)(features=windows).toy_logits, output.toy_logits,
                               atol=1e-4, rtol=1e-4)

    # evaluate: the toy metric in the results
    assert cli_main(["evaluate", "--model", str(run), "--data", str(dataset), "--split", "validation",
                     "--output", str(tmp_path / "eval.json")]) == 0
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert 0.0 <= metrics["f1_toy"] <= 1.0 and {"ccc_valence", "ccc_arousal", "f1_au"} <= set(metrics)
    assert metrics["f1_toy"] == pytest.approx(result["best"]["f1_toy"], abs=1e-6)  # the same windows as training's
    assert f"| macro F1 (toy) | {metrics['f1_toy']:.4f} |" in capsys.readouterr().out

    # predict: the toy task's columns in the table, after the ABAW ones
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(images.astronaut()).save(photo)
    assert cli_main(["predict", str(photo), "--model", str(run), "-o", str(tmp_path / "pred.csv")]) == 0
    table = pd.read_csv(tmp_path / "pred.csv")
    toy_columns = ["toy", "prob_calm", "prob_busy"]
    assert list(table.columns[:-1]) == prediction_columns(EXPRESSION_NAMES, AU_NAMES, model.config)
    assert list(table.columns[-5:-2]) == toy_columns and list(table.columns[-2:]) == ["note", "weights"]
    assert table.loc[0, "toy"] in TOY_CLASSES and abs(table.loc[0, "prob_calm"] + table.loc[0, "prob_busy"] - 1) < 1e-5
    capsys.readouterr()

    # the saved model names its tasks: without the toy row registered, loading it says what is missing
    unregister_task("toy")
    with pytest.raises(KeyError, match="no task 'toy' is registered"):
        AbawFusionModel.from_pretrained(run)


def test_the_abaw_config_names_no_tasks(tmp_path):
    model = _tiny_model()
    assert model.config.tasks is None and [task.name for task in model.tasks] == ["va", "expression", "au"]
    model.save_pretrained(tmp_path)
    assert "tasks" not in json.loads((tmp_path / "config.json").read_text())


def test_the_abaw_output_table_keeps_its_columns():
    from abaw_hf.modeling import AU_NAMES, EXPRESSION_NAMES
    from abaw_hf.pipeline import prediction_columns

    config = _tiny_model().config
    expected = ["source", "frame", "face", "time", "face_found", "face_x0", "face_y0", "face_x1", "face_y1",
                "valence", "arousal", "expression", *[f"prob_{name}" for name in EXPRESSION_NAMES],
                *[f"prob_{name}" for name in AU_NAMES], *AU_NAMES, "note"]
    assert prediction_columns(EXPRESSION_NAMES, AU_NAMES) == prediction_columns(EXPRESSION_NAMES, AU_NAMES, config) == expected


def test_the_model_card_lists_the_outputs_from_the_table():
    from abaw_hf.hub.card import render_model_card

    text = render_model_card(_tiny_model().config, None, synthetic=True)
    assert ("it returns\n`valence_arousal [B, T, 2]`, `expression_logits [B, T, 8]` and `au_logits [B, T, 12]`.\n"
            in text)
