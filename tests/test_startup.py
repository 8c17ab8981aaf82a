"""Start-up: `abaw-hf --help` and every `abaw-hf <cmd> --help` load no heavy library, and `import abaw_hf` is light
while the Auto classes still know `abaw_fusion` whichever way transformers and the model get imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from abaw_hf.cli import SUBCOMMANDS

HEAVY_MODULES = ("torch", "transformers", "datasets", "gradio")


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def _help_imports(command: str | None) -> tuple[int, str, list[str]]:
    argv = ([command] if command else []) + ["--help"]
    result = _run_python(f"""
        import contextlib, io, json, sys
        from abaw_hf.cli import main
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown):
            try:
                main({argv!r})
                status = 0
            except SystemExit as exit:
                status = exit.code or 0
        heavy = [name for name in {HEAVY_MODULES!r} if name in sys.modules]
        print(json.dumps({{"status": status, "help": shown.getvalue(), "heavy": heavy}}))
    """)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    return report["status"], report["help"], report["heavy"]


@pytest.mark.parametrize("command", [None, *SUBCOMMANDS])
def test_help_imports_no_heavy_library(command):
    status, shown, heavy = _help_imports(command)
    assert status == 0
    assert f"usage: abaw-hf {command or ''}".strip() in shown
    assert heavy == [], f"`abaw-hf {command or ''} --help` imported {heavy}"


def test_import_abaw_hf_is_light_and_registers_when_transformers_is_used(tmp_path):
    from abaw_hf import AbawFusionConfig, AbawFusionModel

    config = AbawFusionConfig(feature_dims={"a": 4}, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    AbawFusionModel(config).save_pretrained(tmp_path / "model")
    result = _run_python(f"""
        import sys
        import abaw_hf
        assert not [name for name in {HEAVY_MODULES!r} if name in sys.modules], "import abaw_hf loaded a heavy module"
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "model")!r})  # no trust_remote_code
        print(type(model).__module__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "abaw_hf.modeling.modeling_abaw_fusion"


@pytest.mark.parametrize(
    "imports",
    [
        "import transformers; import abaw_hf",  # transformers first
        "from abaw_hf.modeling.configuration_abaw_fusion import AbawFusionConfig",  # a modeling module directly
        "from abaw_hf.modeling.modeling_abaw_fusion import AbawFusionModel",
    ],
)
def test_auto_classes_registered_in_every_import_order(imports):
    result = _run_python(f"""
        {imports}
        from transformers import AutoConfig
        from abaw_hf.modeling import AbawFusionConfig, AbawFusionModel
        assert type(AutoConfig.for_model("abaw_fusion")) is AbawFusionConfig
        assert AbawFusionModel._auto_class == "AutoModel"  # save_pretrained writes auto_map
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
