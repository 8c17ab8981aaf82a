"""The task table (`abaw_hf.modeling.tasks_abaw_fusion`): the model's heads and outputs, the predictions and the ONNX
graph's outputs come from it, and no module outside modeling/ writes an output's name."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import torch

from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.modeling import OUTPUT_FIELDS, PREDICTION_FIELDS, TASKS, AbawFusionOutput
from abaw_hf.modeling.tasks_abaw_fusion import output_tensors, predictions, task_of

PACKAGE = Path(__file__).resolve().parent.parent / "abaw_hf"
DIMS = {"resnet18": 12, "fau": 5}
# The raw outputs and their predictions; ``valence_arousal`` is also the label key and its own prediction.
NAMES_OF_MODELING = (set(OUTPUT_FIELDS) | set(PREDICTION_FIELDS)) - {"valence_arousal"}


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
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings and node.value in NAMES_OF_MODELING:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} '{node.value}'")
        elif isinstance(node, ast.Attribute) and node.attr in set(OUTPUT_FIELDS) - {"valence_arousal"}:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr}")
    return found


def test_output_names_are_written_only_in_modeling():
    assert _names_written(PACKAGE / "modeling" / "tasks_abaw_fusion.py"), "the check finds the table's own names"
    written = [found for path in sorted(PACKAGE.rglob("*.py")) if "modeling" not in path.relative_to(PACKAGE).parts
               for found in _names_written(path)]
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
