"""The fusion model: shapes, masking, losses, gradients, save/load and remote code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

from abaw_hf import AbawFusionConfig, AbawFusionModel
from abaw_hf.modeling.losses_abaw_fusion import concordance_correlation

DIMS = {"resnet18": 12, "poster2": 10, "fau": 5}


def tiny_config(**overrides) -> AbawFusionConfig:
    params = dict(
        feature_dims=DIMS, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, hidden_dropout_prob=0.0, max_window=64
    )
    params.update(overrides)
    return AbawFusionConfig(**params)


def random_features(batch: int, length: int, dims=DIMS) -> dict[str, torch.Tensor]:
    return {name: torch.randn(batch, length, dim) for name, dim in dims.items()}


def random_labels(batch: int, length: int):
    va = torch.empty(batch, length, 2).uniform_(-1, 1)
    va[0, 0] = -5.0
    expression = torch.randint(-1, 8, (batch, length))
    aus = torch.randint(-1, 2, (batch, length, 12))
    return {"valence_arousal_labels": va, "expression_labels": expression, "au_labels": aus}


@pytest.mark.parametrize("fusion", ["concat", "tokens"])
@pytest.mark.parametrize("length", [1, 6])
def test_output_shapes(fusion, length):
    model = AbawFusionModel(tiny_config(fusion=fusion)).eval()
    out = model(**random_features(3, length), **random_labels(3, length))
    assert out.valence_arousal.shape == (3, length, 2)
    assert out.expression_logits.shape == (3, length, 8)
    assert out.au_logits.shape == (3, length, 12)
    assert out.valence_arousal.abs().max() <= 1.0
    assert torch.isfinite(out.loss) and out.loss > 0
    for name in ("valence_loss", "arousal_loss", "expression_loss", "au_loss"):
        assert torch.isfinite(getattr(out, name))


@pytest.mark.parametrize("fusion", ["concat", "tokens"])
@pytest.mark.parametrize("position_encoding", ["sinusoidal", "learned"])
def test_padding_does_not_change_valid_positions(fusion, position_encoding):
    model = AbawFusionModel(tiny_config(fusion=fusion, position_encoding=position_encoding)).eval()
    alone = random_features(1, 4)
    frame_index = torch.tensor([[0, 1, 3, 4]])  # a gap, as in s-Aff-Wild2
    reference = model(**alone, frame_index=frame_index)
    padded = {name: torch.cat([x, torch.randn(1, 3, x.shape[-1]) * 50], dim=1) for name, x in alone.items()}
    padded = {name: torch.cat([x, torch.randn(1, 7, x.shape[-1])], dim=0) for name, x in padded.items()}
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, :4] = True
    mask[1] = True
    index = torch.zeros(2, 7, dtype=torch.long)
    index[0, :4] = frame_index
    index[1] = torch.arange(7)
    batched = model(**padded, attention_mask=mask, frame_index=index)
    for key in ("valence_arousal", "expression_logits", "au_logits"):
        torch.testing.assert_close(batched[key][0, :4], reference[key][0], atol=1e-5, rtol=0)


def test_concat_uses_frame_order():
    model = AbawFusionModel(tiny_config(fusion="concat")).eval()
    features = random_features(1, 6)
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = {name: x[:, permutation] for name, x in features.items()}
    original = model(**features).expression_logits[:, permutation]
    reordered = model(**shuffled).expression_logits
    assert not torch.allclose(original, reordered, atol=1e-4)


def test_frame_index_gaps_change_concat_output():
    model = AbawFusionModel(tiny_config(fusion="concat")).eval()
    features = random_features(1, 4)
    a = model(**features, frame_index=torch.tensor([[0, 1, 2, 3]])).au_logits
    b = model(**features, frame_index=torch.tensor([[0, 1, 9, 10]])).au_logits
    assert not torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("fusion", ["concat", "tokens"])
def test_masked_extractor_values_never_leak(fusion):
    model = AbawFusionModel(tiny_config(fusion=fusion)).eval()
    features = random_features(2, 5)
    feature_mask = {name: torch.ones(2, 5, dtype=torch.bool) for name in DIMS}
    feature_mask["poster2"][:] = False
    feature_mask["fau"][0, 2] = False
    first = model(**features, feature_mask=feature_mask)
    changed = dict(features)
    changed["poster2"] = torch.randn(2, 5, DIMS["poster2"]) * 100
    changed["fau"] = features["fau"].clone()
    changed["fau"][0, 2] = 1e4
    second = model(**changed, feature_mask=feature_mask)
    for key in ("valence_arousal", "expression_logits", "au_logits"):
        torch.testing.assert_close(first[key], second[key], atol=1e-6, rtol=0)
    # and the mask matters: without it the same values do change the output
    unmasked = model(**changed)
    assert not torch.allclose(unmasked.au_logits, second.au_logits, atol=1e-4)


@pytest.mark.parametrize("fusion", ["concat", "tokens"])
def test_all_missing_task_gives_zero_loss_and_finite_gradients(fusion):
    model = AbawFusionModel(tiny_config(fusion=fusion)).train()
    labels = {
        "valence_arousal_labels": torch.full((2, 3, 2), -5.0),
        "expression_labels": torch.full((2, 3), -1),
        "au_labels": torch.full((2, 3, 12), -1),
    }
    out = model(**random_features(2, 3), **labels)
    assert out.loss.item() == 0.0 and out.expression_loss.item() == 0.0 and out.au_loss.item() == 0.0
    out.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_padding_frames_carry_no_loss():
    model = AbawFusionModel(tiny_config()).eval()
    features = random_features(1, 4)
    labels = random_labels(1, 4)
    mask = torch.tensor([[True, True, True, False]])
    with_pad = model(**features, **labels, attention_mask=mask).loss
    changed = {k: v.clone() for k, v in labels.items()}
    changed["expression_labels"][0, 3] = (changed["expression_labels"][0, 3] + 1) % 8
    changed["au_labels"][0, 3] = 1 - changed["au_labels"][0, 3].clamp(min=0)
    changed["valence_arousal_labels"][0, 3] = 0.9
    torch.testing.assert_close(model(**features, **changed, attention_mask=mask).loss, with_pad)


@pytest.mark.parametrize("fusion", ["concat", "tokens"])
def test_gradients_reach_every_parameter(fusion):
    model = AbawFusionModel(tiny_config(fusion=fusion, position_encoding="learned")).train()
    features = random_features(2, 4)
    feature_mask = {name: torch.ones(2, 4, dtype=torch.bool) for name in DIMS}
    feature_mask["fau"][0, 1] = False  # the missing embedding must be trained too
    out = model(**features, feature_mask=feature_mask, **random_labels(2, 4))
    out.loss.backward()
    untouched = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    # concat: only the fau row of the missing table is used in this batch; tokens: missing vectors are
    # masked keys, so the table only stays connected (zero gradient, as DDP needs)
    untouched = [n for n in untouched if n != "missing_embeddings"]
    assert model.missing_embeddings.grad is not None
    if fusion == "concat":
        assert model.missing_embeddings.grad[2].abs().sum() > 0
    assert untouched == []


def test_gradient_checkpointing_gives_same_gradients():
    config = tiny_config()
    torch.manual_seed(1)
    plain = AbawFusionModel(config).train()
    checkpointed = AbawFusionModel(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.is_activation_checkpointing
    features, labels = random_features(2, 5), random_labels(2, 5)
    plain(**features, **labels).loss.backward()
    checkpointed(**features, **labels).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=0, msg=name)


def test_same_seed_same_outputs():
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = AbawFusionModel(tiny_config()).eval()
        torch.manual_seed(8)
        outputs.append(model(**random_features(2, 3)).au_logits)
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)


def test_ccc_finite_for_single_and_constant():
    one = concordance_correlation(torch.tensor([0.3]), torch.tensor([0.1]))
    constant = concordance_correlation(torch.full((5,), 0.2), torch.full((5,), 0.2))
    assert torch.isfinite(one) and torch.isfinite(constant)
    perfect = concordance_correlation(torch.linspace(-1, 1, 9), torch.linspace(-1, 1, 9))
    assert abs(perfect.item() - 1.0) < 1e-6


def test_single_labelled_frame_va_loss_is_finite():
    model = AbawFusionModel(tiny_config()).train()
    va = torch.full((1, 3, 2), -5.0)
    va[0, 1] = torch.tensor([0.2, -0.4])
    out = model(**random_features(1, 3), valence_arousal_labels=va)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----- bad input --------------------------------------------------------------------------------------------


def test_bad_feature_inputs_name_the_extractor():
    model = AbawFusionModel(tiny_config()).eval()
    features = random_features(2, 3)
    with pytest.raises(ValueError, match=r"unknown extractor.*'eac'"):
        model(**features, eac=torch.randn(2, 3, 4))
    missing = dict(features)
    del missing["poster2"]
    with pytest.raises(ValueError, match=r"missing extractor.*poster2.*\[B, T, 10\]"):
        model(**missing)
    wrong = dict(features, fau=torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"'fau'.*\[B, T, 5\].*\[2, 3, 6\]"):
        model(**wrong)
    nan = dict(features)
    nan["resnet18"] = features["resnet18"].clone()
    nan["resnet18"][1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="resnet18.*NaN"):
        model(**nan)
    inf = dict(features, fau=torch.full((2, 3, 5), float("inf")))
    with pytest.raises(ValueError, match="fau.*Inf"):
        model(**inf)


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"expression_labels": torch.full((1, 2), 9)}, "expression labels"),
        ({"au_labels": torch.full((1, 2, 12), 2)}, "AU labels"),
        ({"valence_arousal_labels": torch.full((1, 2, 2), 3.0)}, "valence/arousal"),
    ],
)
def test_labels_out_of_range(labels, message):
    model = AbawFusionModel(tiny_config())
    with pytest.raises(ValueError, match=message):
        model(**random_features(1, 2), **labels)


def test_config_rejects_unknown_keys_but_loads_transformers_keys(tmp_path):
    with pytest.raises(ValueError, match="unknown key.*not_a_field"):
        AbawFusionConfig(not_a_field=3)
    with pytest.raises(ValueError, match="fusion"):
        AbawFusionConfig(fusion="average")
    tiny_config().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert {"transformers_version", "model_type", "auto_map"} <= set(data)
    data["architectures"] = ["AbawFusionModel"]
    data["torch_dtype"] = "float32"
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AbawFusionConfig) and loaded.feature_dims == DIMS
    data["made_up_key"] = 1
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="made_up_key"):
        AutoConfig.from_pretrained(tmp_path)


def test_position_index_beyond_max_window_is_an_error():
    model = AbawFusionModel(tiny_config(max_window=8))
    with pytest.raises(ValueError, match="max_window"):
        model(**random_features(1, 2), frame_index=torch.tensor([[0, 8]]))


# ----- save / load ------------------------------------------------------------------------------------------


def saved_model(tmp_path: Path, **overrides) -> tuple[AbawFusionModel, Path]:
    provenance = {"resnet18": {"name": "resnet18", "variant": None, "checkpoint": "resnet18_msceleb.pth", "sha256": "ab" * 32}}
    model = AbawFusionModel(tiny_config(extractors=provenance, **overrides)).eval()
    target = tmp_path / "model"
    model.save_pretrained(target)
    return model, target


def test_save_pretrained_round_trip_is_exact(tmp_path):
    model, target = saved_model(tmp_path, fusion="tokens")
    files = sorted(os.listdir(target))
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    assert {"configuration_abaw_fusion.py", "modeling_abaw_fusion.py", "losses_abaw_fusion.py"} <= set(files)
    reloaded = AutoModel.from_pretrained(target).eval()
    assert type(reloaded) is AbawFusionModel
    assert reloaded.config.extractors["resnet18"]["sha256"] == "ab" * 32
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    features = random_features(2, 3)
    torch.testing.assert_close(reloaded(**features).au_logits, model(**features).au_logits, atol=0, rtol=0)


REMOTE_CODE_SCRIPT = textwrap.dedent(
    """
    import sys, builtins
    real_import = builtins.__import__
    def guarded(name, *args, **kwargs):
        if name == "abaw_hf" or name.startswith("abaw_hf."):
            raise ImportError("abaw_hf is deliberately unavailable")
        return real_import(name, *args, **kwargs)
    builtins.__import__ = guarded
    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    features = torch.load(sys.argv[2])
    torch.save(model(**features).au_logits, sys.argv[3])
    """
)


def run_isolated(code: str, *args: str, env: dict | None = None) -> None:
    full_env = dict(os.environ, **(env or {}))
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]


def test_remote_code_loads_without_abaw_hf(tmp_path):
    model, target = saved_model(tmp_path)
    features = random_features(2, 4)
    torch.save(features, tmp_path / "features.pt")
    run_isolated(
        REMOTE_CODE_SCRIPT, str(target), str(tmp_path / "features.pt"), str(tmp_path / "out.pt"),
        env={"HF_HOME": str(tmp_path / "hf_home")},
    )
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), model(**features).au_logits, atol=1e-6, rtol=0)


def write_hub_cache(hf_home: Path, repo_id: str, folder: Path) -> None:
    """Lay a saved model out as the Hub cache does, so offline `from_pretrained(repo_id)` resolves it."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)


def test_hub_id_loads_offline_with_and_without_abaw_hf(tmp_path):
    model, target = saved_model(tmp_path)
    hf_home = tmp_path / "hf_home"
    write_hub_cache(hf_home, "org/abaw-fusion", target)
    features = random_features(1, 3)
    torch.save(features, tmp_path / "features.pt")
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    run_isolated(REMOTE_CODE_SCRIPT, "org/abaw-fusion", str(tmp_path / "features.pt"), str(tmp_path / "remote.pt"), env=env)
    plain = textwrap.dedent(
        """
        import sys, torch
        import abaw_hf
        from transformers import AutoModel
        model = AutoModel.from_pretrained("org/abaw-fusion").eval()
        assert type(model) is abaw_hf.AbawFusionModel
        torch.save(model(**torch.load(sys.argv[1])).au_logits, sys.argv[2])
        """
    )
    run_isolated(plain, str(tmp_path / "features.pt"), str(tmp_path / "plain.pt"), env=env)
    expected = model(**features).au_logits
    torch.testing.assert_close(torch.load(tmp_path / "remote.pt"), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.load(tmp_path / "plain.pt"), expected, atol=1e-6, rtol=0)
