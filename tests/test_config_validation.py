"""AbawFusionConfig is validated once, by the dataclass: huggingface_hub's ``@strict`` checks each field's type (the
annotations are real types, not strings), ``__post_init__`` the values no type can refuse. The same refusal reaches
the user three ways: building the config in Python, loading a hand-edited config.json, and the command line (a
message and exit status 2, never a traceback)."""

from __future__ import annotations

import json

import pytest
from huggingface_hub.errors import StrictDataclassError, StrictDataclassFieldValidationError
from transformers import AutoConfig

from abaw_hf.cli import main as cli_main
from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel
from abaw_hf.modeling.configuration_abaw_fusion import config_problem

TINY = dict(feature_dims={"fau": 17}, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, max_window=64)

WRONG_TYPES = [
    ({"hidden_size": "16"}, "Field 'hidden_size' expected int, got str"),
    ({"num_hidden_layers": True}, "Field 'num_hidden_layers' expected int, got bool"),
    ({"num_attention_heads": 2.0}, "Field 'num_attention_heads' expected int, got float"),
    ({"fusion": 3}, "Field 'fusion' expected str, got int"),
    ({"au_thresholds": "0.5"}, "Field 'au_thresholds'"),
    ({"feature_dims": {"fau": "17"}}, "Field 'feature_dims'"),
]
OUT_OF_RANGE = [
    ({"num_hidden_layers": -1}, "num_hidden_layers must be >= 1, got -1"),
    ({"num_attention_heads": 0}, "num_attention_heads must be >= 1, got 0"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be between 0 and 1, got 1.5"),
    ({"max_gap": -2}, "max_gap must be >= 0, got -2"),
    ({"au_thresholds": [1.0] * 12}, "au_thresholds must be finite numbers strictly between 0 and 1"),
]


def test_the_annotations_are_types_strict_can_check():
    fields = AbawFusionConfig.__dataclass_fields__
    assert not isinstance(fields["hidden_size"].type, str)  # a string annotation is skipped by @strict
    assert AbawFusionConfig.__validators__["hidden_size"]  # @strict's validators are attached to our fields


@pytest.mark.parametrize("change, message", WRONG_TYPES, ids=[next(iter(c)) for c, _ in WRONG_TYPES])
def test_a_wrong_type_is_refused_by_the_dataclass(change, message):
    with pytest.raises(StrictDataclassFieldValidationError) as refused:
        AbawFusionConfig(**{**TINY, **change})
    assert config_problem(refused.value).startswith(message), config_problem(refused.value)


@pytest.mark.parametrize("change, message", OUT_OF_RANGE, ids=[next(iter(c)) for c, _ in OUT_OF_RANGE])
def test_an_out_of_range_value_is_refused(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        AbawFusionConfig(**{**TINY, **change})


def test_the_accepted_numbers_still_load():
    config = AbawFusionConfig(**TINY, mlp_ratio=2, hidden_dropout_prob=0, au_loss_weights=[1] * 12, layer_norm_eps=1)
    assert config.au_loss_weights == [1.0] * 12 and config.mlp_ratio == 2


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    AbawFusionModel(AbawFusionConfig(**TINY)).save_pretrained(folder)
    return folder


def _edited(model_folder, tmp_path, **change):
    import shutil

    target = tmp_path / "edited"
    shutil.copytree(model_folder, target)
    config = json.loads((target / "config.json").read_text())
    config.update(change)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("change, message", [WRONG_TYPES[0], OUT_OF_RANGE[0]], ids=["type", "range"])
def test_from_pretrained_refuses_a_bad_config_json(model_folder, tmp_path, change, message):
    assert isinstance(AutoConfig.from_pretrained(model_folder), AbawFusionConfig)
    with pytest.raises((StrictDataclassError, ValueError)) as refused:
        AutoConfig.from_pretrained(_edited(model_folder, tmp_path, **change))
    assert config_problem(refused.value).startswith(message)


@pytest.mark.parametrize("change, message", [WRONG_TYPES[0], OUT_OF_RANGE[0], OUT_OF_RANGE[2]],
                         ids=["type", "range", "dropout"])
def test_the_command_line_names_the_field_and_exits_2(model_folder, tmp_path, capsys, change, message):
    folder = _edited(model_folder, tmp_path, **change)
    try:
        code = cli_main(["evaluate", "--model", str(folder), "--data", "synthetic"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"abaw-hf evaluate: error: --model {folder}: config.json is not a valid abaw_fusion config ({message}" in err


@pytest.mark.parametrize("change, message", [WRONG_TYPES[0], OUT_OF_RANGE[0]], ids=["type", "range"])
def test_push_names_the_bad_config_json(model_folder, tmp_path, change, message):
    from abaw_hf.errors import UserError
    from abaw_hf.hub.card import load_model_config

    assert load_model_config(model_folder)[0].hidden_size == TINY["hidden_size"]
    folder = _edited(model_folder, tmp_path, **change)
    with pytest.raises(UserError) as refused:
        load_model_config(folder)
    assert str(refused.value).startswith(f"{folder / 'config.json'}: not a valid abaw_fusion config ({message}")
