"""ONNX export and the ONNX Runtime path: onnxruntime against torch (<= 1e-4) for the fusion model at several batch
sizes and window lengths with padding and missing vectors, for the torch extractors, through `abaw-hf export-onnx`,
and for the pipeline / `abaw-hf predict --runtime onnx`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data

pytest.importorskip("onnxruntime")

from abaw_hf.cli import main
from abaw_hf.errors import UserError
from abaw_hf.extractors import create_extractor
from abaw_hf.onnx.runtime import OnnxExtractor, onnx_extractor, onnx_fusion_model
from abaw_hf.pipeline import AffectPipeline

TOLERANCE = 1e-4
OUTPUTS = ("valence_arousal", "expression_logits", "au_logits")
PROVENANCE = {"resnet18": {"name": "resnet18", "variant": "msceleb", "dim": 512}, "fau": {"name": "fau", "variant": "mediapipe", "dim": 17}}


@pytest.fixture(autouse=True)
def _onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ABAW_HF_ONNX_CACHE", str(tmp_path / "onnx-cache"))


def _inputs(config, batch: int, length: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    features = {name: torch.randn(batch, length, dim, generator=generator) for name, dim in config.feature_dims.items()}
    feature_mask = {name: torch.rand(batch, length, generator=generator) > 0.3 for name in config.feature_names}
    feature_mask[config.feature_names[0]][0] = False  # one window without any vector of that extractor
    attention_mask = torch.ones(batch, length, dtype=torch.bool)
    attention_mask[-1, max(1, length // 2) :] = False  # a padded window
    frame_index = torch.cumsum(torch.randint(1, 3, (batch, length), generator=generator), dim=1) - 1
    return dict(features=features, feature_mask=feature_mask, attention_mask=attention_mask, frame_index=frame_index)


@pytest.mark.parametrize(
    "settings",
    [dict(fusion="concat"), dict(fusion="concat", position_encoding="learned"), dict(fusion="tokens", position_encoding="none")],
    ids=["concat-sinusoidal", "concat-learned", "tokens"],
)
def test_fusion_model_matches_torch_for_any_batch_and_window(tiny_model, settings):
    model = tiny_model({"resnet18": 512, "poster2": 768, "fau": 17}, seed=0, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, max_window=64, **settings)
    onnx_model = onnx_fusion_model(model)
    for seed, (batch, length) in enumerate([(1, 1), (2, 5), (3, 16), (1, 32)]):
        inputs = _inputs(model.config, batch, length, seed)
        with torch.inference_mode():
            expected = model(**inputs)
        got = onnx_model(**inputs)
        present = inputs["attention_mask"]
        for name in OUTPUTS:
            assert getattr(got, name).shape == getattr(expected, name).shape
            difference = (getattr(got, name) - getattr(expected, name))[present].abs().max().item()
            assert difference <= TOLERANCE, (name, batch, length, difference)
    with pytest.raises(ValueError, match="NaN"):
        onnx_model(**{**inputs, "features": {**inputs["features"], "fau": torch.full((batch, length, 17), float("nan"))}})


@pytest.mark.parametrize("name", ["resnet18", "poster2"])
def test_extractor_matches_torch(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        extractor = create_extractor(name, random_seed=0)
    onnx_version = onnx_extractor(extractor)
    assert isinstance(onnx_version, OnnxExtractor) and onnx_version.dim == extractor.dim
    assert onnx_version.provenance() == extractor.provenance()
    rng = np.random.default_rng(0)
    for count in (1, 3):
        faces = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(count)]
        difference = (onnx_version.extract(faces, batch_size=2) - extractor.extract(faces)).abs().max().item()
        assert difference <= TOLERANCE, (name, count, difference)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from abaw_hf import AbawFusionConfig, AbawFusionModel

    torch.manual_seed(0)
    config = AbawFusionConfig(feature_dims={"resnet18": 512, "fau": 17}, hidden_size=16, num_hidden_layers=1,
                              num_attention_heads=2, hidden_dropout_prob=0.0, max_window=64, extractors=PROVENANCE)
    folder = tmp_path_factory.mktemp("model")
    AbawFusionModel(config).eval().save_pretrained(folder)
    return folder


def test_export_onnx_command_writes_graphs_and_description(saved_model, tmp_path, capsys):
    output = tmp_path / "onnx"
    assert main(["export-onnx", str(saved_model), "-o", str(output)]) == 0
    assert "RANDOM" in capsys.readouterr().err
    manifest = json.loads((output / "onnx_export.json").read_text())
    assert (output / "fusion.onnx").is_file() and (output / "extractors" / "resnet18.onnx").is_file()
    assert [item["name"] for item in manifest["fusion"]["inputs"]] == [
        "resnet18", "fau", "attention_mask", "feature_mask.resnet18", "feature_mask.fau", "frame_index"]
    assert manifest["fusion"]["inputs"][0]["shape"] == ["batch", "time", 512]
    assert manifest["fusion"]["max_abs_difference"] <= TOLERANCE
    resnet = manifest["extractors"]["resnet18"]
    assert resnet["inputs"][0]["shape"] == ["batch", 3, 224, 224] and resnet["provenance"]["random_init"] is True
    assert resnet["max_abs_difference"] <= TOLERANCE and "fau" in manifest["not_exported"]
    assert manifest["model"] == str(saved_model) and manifest["created_with"]["torch"] == torch.__version__

    import onnxruntime

    session = onnxruntime.InferenceSession(str(output / "fusion.onnx"), providers=["CPUExecutionProvider"])
    dims = {item.name: item.shape for item in session.get_inputs()}
    assert dims["frame_index"] == ["batch", "time"] and dims["resnet18"] == ["batch", "time", 512]


def test_pipeline_and_predict_under_onnx_match_torch(saved_model, tmp_path):
    photo = tmp_path / "astronaut.png"
    from PIL import Image

    Image.fromarray(data.astronaut()).save(photo)
    exported = tmp_path / "onnx"
    assert main(["export-onnx", str(saved_model), "-o", str(exported)]) == 0
    tables = {}
    for runtime, extra in (("torch", []), ("onnx", ["--onnx-dir", str(exported)]), ("onnx", [])):
        csv = tmp_path / f"{runtime}{len(extra)}.csv"
        assert main(["predict", str(photo), "--model", str(saved_model), "-o", str(csv), "--runtime", runtime, *extra]) == 0
        tables[csv.stem] = pd.read_csv(csv)
    torch_table = tables.pop("torch0")
    assert bool(torch_table["face_found"].all())
    numbers = torch_table.select_dtypes("number").columns
    for table in tables.values():
        assert list(table.columns) == list(torch_table.columns)
        np.testing.assert_allclose(table[numbers].to_numpy(), torch_table[numbers].to_numpy(), rtol=0, atol=TOLERANCE)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = AffectPipeline.from_pretrained(saved_model, runtime="onnx")
    assert isinstance(other.extractors["resnet18"], OnnxExtractor)  # the library takes runtime= too
    other.close()
    with torch.no_grad():
        from abaw_hf.model_loading import load_fusion_model

        changed = load_fusion_model(saved_model)
        changed.va_head.bias += 1.0
    with pytest.raises(UserError, match="other weights"):  # an export of other weights is refused, never used
        onnx_fusion_model(changed, exported)
