"""One command-line layer (`abaw_hf.cli`) and one configuration engine (`abaw_hf.training.config`): argparse is
imported only by the command line, the scripts are leaves calling it, a flag and a YAML key read a value the same
way, and the training settings that configure the model take AbawFusionConfig's defaults through one mapping."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "abaw_hf"
CLI = PACKAGE / "cli"
# the staged Space's own entry point (`python app.py` on the Space), documented in abaw_hf/space_template/
SPACE_TEMPLATE = PACKAGE / "space_template" / "app.py"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _package_files() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def test_argparse_only_in_the_command_line_layer():
    users = [path.relative_to(ROOT).as_posix() for path in _package_files()
             if {"argparse"} & {name.split(".")[0] for name in _imported_modules(path)}]
    assert users, "the scan found no argparse at all: it would pass whatever the layout"
    outside = [name for name in users if not name.startswith("abaw_hf/cli/")]
    assert outside == [], f"argparse imported outside abaw_hf/cli/: {outside}"


def test_no_main_entry_points_beside_abaw_hf():
    def runs_as_main(path: Path) -> bool:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                return True
        return False

    entries = [path.relative_to(ROOT).as_posix() for path in _package_files() if runs_as_main(path)]
    assert SPACE_TEMPLATE.relative_to(ROOT).as_posix() in entries  # the scan sees a real one
    assert sorted(entries) == sorted([SPACE_TEMPLATE.relative_to(ROOT).as_posix()])
    assert (CLI / "__main__.py").is_file()  # `python -m abaw_hf.cli` is abaw-hf itself


def test_scripts_are_leaves_calling_the_command_line():
    scripts = sorted((ROOT / "scripts").glob("*.py")) + [ROOT / "space" / "app.py", SPACE_TEMPLATE]
    assert len(scripts) >= 6
    for script in scripts:
        imported = {name for name in _imported_modules(script) if name.startswith("abaw_hf")}
        assert imported and all(name == "abaw_hf.cli" or name.startswith("abaw_hf.cli.") for name in imported), \
            f"{script.relative_to(ROOT)} imports {sorted(imported)}"


def test_every_subcommand_module_has_arguments_and_run():
    import importlib

    from abaw_hf.cli import SUBCOMMANDS

    for name, (module_name, _) in SUBCOMMANDS.items():
        assert module_name.startswith("abaw_hf.cli."), name
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run), module_name


@pytest.mark.parametrize("word", ["true", "yes", "y", "t", "1", "on", "false", "no", "n", "f", "0", "off",
                                  "True", "OFF"])
def test_a_flag_and_a_yaml_key_read_a_boolean_the_same_way(tmp_path, word):
    from abaw_hf.cli.train import parse_train_config
    from abaw_hf.training import load_train_config

    config = tmp_path / "c.yaml"
    config.write_text(f"plot: '{word}'\n")
    from_flag = parse_train_config(["--plot", word]).plot
    assert from_flag is load_train_config(config).plot
    assert from_flag is (word.lower() in ("true", "yes", "y", "t", "1", "on"))


def test_one_set_of_yes_no_words(monkeypatch):
    from abaw_hf.errors import FALSE_WORDS, TRUE_WORDS, debug_requested

    assert set(TRUE_WORDS) == {"true", "yes", "y", "t", "1", "on"} and not set(TRUE_WORDS) & set(FALSE_WORDS)
    for word in TRUE_WORDS + FALSE_WORDS:  # $ABAW_HF_DEBUG reads the words the training settings read
        monkeypatch.setenv("ABAW_HF_DEBUG", word.upper())
        assert debug_requested([]) is (word in TRUE_WORDS), word


def test_a_bad_value_is_refused_by_flag_and_yaml_alike(tmp_path):
    from abaw_hf.cli.train import parse_train_config
    from abaw_hf.errors import ConfigError
    from abaw_hf.training import load_train_config

    for key, value in (("plot", "maybe"), ("epochs", "1.0"), ("learning_rate", "fast")):
        config = tmp_path / f"{key}.yaml"
        config.write_text(yaml.safe_dump({key: value}))
        with pytest.raises(ConfigError, match=f"--{key}"):
            parse_train_config([f"--{key}", value])
        with pytest.raises(ConfigError, match=f"{config}: {key} must be"):
            load_train_config(config)


def test_model_settings_map_onto_the_model_config_with_its_defaults():
    from abaw_hf.modeling import AbawFusionConfig
    from abaw_hf.training import MODEL_SETTINGS, TrainConfig, model_config_from_train_config

    from abaw_hf.modeling.labels_abaw_fusion import MODEL_DEFAULTS

    model_defaults = AbawFusionConfig()
    train_defaults = TrainConfig()
    fields = {item.name for item in dataclasses.fields(TrainConfig)}
    assert set(MODEL_SETTINGS) <= fields
    # one default, defined once: both dataclasses' fields read MODEL_DEFAULTS (a literal in either would be a second)
    model_fields = {item.name: item for item in dataclasses.fields(AbawFusionConfig)}
    assert set(MODEL_DEFAULTS) == {MODEL_SETTINGS[key] for key in MODEL_SETTINGS if key not in ("window", "max_gap")}
    for model_key, default in MODEL_DEFAULTS.items():
        assert model_fields[model_key].default is default, model_key
    for key in set(MODEL_SETTINGS) - {"window", "max_gap"}:
        assert TrainConfig.__dataclass_fields__[key].default is MODEL_DEFAULTS[MODEL_SETTINGS[key]], key
    for key, model_key in MODEL_SETTINGS.items():
        assert hasattr(model_defaults, model_key), model_key
        if key not in ("window", "max_gap"):  # training records these; a bare model config leaves them unset
            assert getattr(train_defaults, key) == getattr(model_defaults, model_key), (key, model_key)
    settings = {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 3, "dropout": 0.3,
                "attention_dropout": 0.2, "mlp_ratio": 3.0, "fusion": "tokens", "window": 4, "max_gap": 2,
                "au_loss_weight": 0.5}
    model = model_config_from_train_config(TrainConfig(**settings), {"resnet18": 8, "fau": 4}, [1.0] * 12)
    for key, value in settings.items():
        assert getattr(model, MODEL_SETTINGS[key]) == value, key
