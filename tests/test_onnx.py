"""ONNX export and the ONNX Runtime path: onnxruntime against torch (<= 1e-4) for the fusion model at several batch
sizes and window lengths with padding and missing vectors, for the torch extractors, through `abaw-hf export-onnx`,
and for the pipeline / `abaw-hf predict --runtime onnx`; the default ``auto`` runtime (onnxruntime on CPU for the
measured networks only) and its fallbacks to torch (no onnxruntime, unwritable cache, a failed check), and one
export across concurrent processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data

from abaw_hf.cli import main
from abaw_hf.errors import UserError
from abaw_hf.extractors import create_extractor
from abaw_hf.onnx import CPU_ONNX_NETWORKS
from abaw_hf.onnx import export as onnx_export
from abaw_hf.onnx.runtime import OnnxExtractor, OnnxFusionModel, onnx_extractor, onnx_fusion_model, uses_onnx
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
        assert type(got) is type(expected)  # AbawFusionOutput, the same as torch's
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
    for runtime, extra in (("torch", []), ("onnx", ["--onnx-dir", str(exported)]), ("onnx", []), ("auto", [])):
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


# ----- the default runtime: auto ------------------------------------------------------------------------------

PAPER_PROVENANCE = {**PROVENANCE, "poster2": {"name": "poster2", "variant": "7cls", "dim": 768}}


@pytest.fixture(scope="module")
def paper_model(tmp_path_factory):
    """The paper's extractor set (resnet18 + poster2 + fau) with a tiny fusion model."""
    from abaw_hf import AbawFusionConfig, AbawFusionModel

    torch.manual_seed(1)
    config = AbawFusionConfig(feature_dims={"resnet18": 512, "poster2": 768, "fau": 17}, hidden_size=16,
                              num_hidden_layers=1, num_attention_heads=2, max_window=64, extractors=PAPER_PROVENANCE)
    folder = tmp_path_factory.mktemp("paper_model")
    AbawFusionModel(config).eval().save_pretrained(folder)
    return folder


def _pipeline(folder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random extractor weights
        return AffectPipeline.from_pretrained(folder, **kwargs)


def test_auto_choice_is_onnxruntime_on_cpu_for_the_measured_networks_only():
    assert CPU_ONNX_NETWORKS == {"resnet18", "eac", "poster"}  # bench_runtime.py: faster at batch 1, 8 and 32
    for network in ("resnet18", "eac", "poster", "poster2", "fau", "fusion"):
        assert uses_onnx(network, "auto", "cpu") is (network in CPU_ONNX_NETWORKS)
        assert uses_onnx(network, "auto", torch.device("cuda")) is False  # GPUs keep torch
        assert uses_onnx(network, "torch", "cpu") is False and uses_onnx(network, "onnx", "cuda") is True


def test_a_first_photo_never_waits_for_an_export(paper_model, tmp_path, monkeypatch, capsys):
    """The first `predict` with nothing prepared runs torch and exports nothing; it says so and names the explicit
    step, `abaw-hf export-onnx MODEL`, after which auto runs resnet18 under onnxruntime."""
    cache = tmp_path / "empty-cache"
    monkeypatch.setenv("ABAW_HF_ONNX_CACHE", str(cache))
    calls = []
    monkeypatch.setattr(onnx_export, "export_extractor", lambda *args, **kwargs: calls.append(args) or 1 / 0)
    photo = tmp_path / "astronaut.png"
    from PIL import Image

    Image.fromarray(data.astronaut()).save(photo)
    assert main(["predict", str(photo), "--model", str(paper_model), "-o", str(tmp_path / "first.csv")]) == 0
    said = capsys.readouterr().err
    assert calls == [] and not cache.exists()  # no export on the call, not even a cache folder
    assert "runtime: fusion torch, resnet18 torch (no ONNX graph prepared yet), poster2 torch, fau own" in said
    assert f"`abaw-hf export-onnx {paper_model}` prepares the ONNX graphs once" in said
    monkeypatch.undo()
    monkeypatch.setenv("ABAW_HF_ONNX_CACHE", str(cache))
    assert main(["export-onnx", str(paper_model)]) == 0  # the explicit step
    said = capsys.readouterr().out
    assert "resnet18: prepared in" in said and "runs resnet18 under onnxruntime" in said
    assert main(["export-onnx", str(paper_model)]) == 0 and "resnet18: already prepared" in capsys.readouterr().out
    assert len(list(cache.glob("extractor-resnet18-*.onnx"))) == 1 and not list(cache.glob("*poster2*"))
    pipeline = _pipeline(paper_model)
    assert pipeline.runtimes == {"fusion": "torch", "resnet18": "onnxruntime", "poster2": "torch", "fau": "own"}
    assert pipeline.runtime_notes == {}
    pipeline.close()


def test_auto_is_the_default_and_matches_torch(paper_model, tmp_path, capsys):
    pipeline = _pipeline(paper_model)
    assert pipeline.runtimes["resnet18"] == "torch" and pipeline.runtime_notes == {"resnet18": "no ONNX graph prepared yet"}
    assert pipeline.prepare_runtime()["resnet18"].startswith("prepared in")  # the explicit step, then onnxruntime
    assert pipeline.runtimes == {"fusion": "torch", "resnet18": "onnxruntime", "poster2": "torch", "fau": "own"}
    assert isinstance(pipeline.extractors["resnet18"], OnnxExtractor) and not isinstance(pipeline.model, OnnxFusionModel)
    pipeline.close()
    photo = tmp_path / "astronaut.png"
    from PIL import Image

    Image.fromarray(data.astronaut()).save(photo)
    tables = {}
    for runtime in ("auto", "torch"):
        args = ["--runtime", runtime] if runtime == "torch" else []  # auto: no flag
        assert main(["predict", str(photo), "--model", str(paper_model), "-o", str(tmp_path / f"{runtime}.csv"), *args]) == 0
        tables[runtime] = pd.read_csv(tmp_path / f"{runtime}.csv")
        said = capsys.readouterr().err
        expected = "resnet18 onnxruntime" if runtime == "auto" else "resnet18 torch"
        assert f"runtime: fusion torch, {expected}, poster2 torch, fau own" in said
    numbers = tables["torch"].select_dtypes("number").columns
    assert bool(tables["torch"]["face_found"].all())
    np.testing.assert_allclose(tables["auto"][numbers].to_numpy(), tables["torch"][numbers].to_numpy(), rtol=0, atol=TOLERANCE)


def test_auto_without_onnxruntime_runs_torch_with_one_warning(paper_model, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets where it is not installed
    with caplog.at_level(logging.WARNING, logger="abaw_hf.onnx"):
        pipeline = _pipeline(paper_model)
    assert pipeline.runtimes["resnet18"] == "torch"
    assert [r.getMessage() for r in caplog.records] == [
        "running resnet18 under torch: onnxruntime is not installed (pip install onnxruntime)"]
    pipeline.close()
    with pytest.raises(UserError, match="needs onnxruntime"):  # asked for by name, it is an error
        _pipeline(paper_model, runtime="onnx")


def test_auto_with_an_unwritable_cache_runs_torch_and_onnx_says_where(paper_model, tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "a_file"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("ABAW_HF_ONNX_CACHE", str(blocked / "onnx"))
    pipeline = _pipeline(paper_model)
    assert pipeline.runtimes["resnet18"] == "torch"
    done = pipeline.prepare_runtime()  # the explicit step meets the cache's problem and says it
    assert "cannot write the ONNX cache" in done["resnet18"] and "ABAW_HF_ONNX_CACHE" in done["resnet18"]
    assert pipeline.runtimes["resnet18"] == "torch"
    pipeline.close()
    with pytest.raises(UserError, match="cannot write the ONNX cache"):
        _pipeline(paper_model, runtime="onnx")
    assert blocked.read_text().startswith("a file")  # untouched


def test_auto_records_a_failed_check_and_does_not_export_again(paper_model, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABAW_HF_ONNX_CACHE", str(cache))
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # no export can pass: the check must refuse it
    pipeline = _pipeline(paper_model)
    with caplog.at_level(logging.WARNING, logger="abaw_hf.onnx"):
        done = pipeline.prepare_runtime(retry_refused=False)  # a server's start-up
    assert pipeline.runtimes["resnet18"] == "torch" and "does not reproduce torch" in done["resnet18"]
    assert "exporting extractor-resnet18" in caplog.text
    assert not list(cache.glob("*.onnx")) and len(list(cache.glob("*.refused.json"))) == 1  # no unchecked graph kept
    pipeline.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="abaw_hf.onnx"):
        again = _pipeline(paper_model)
        done = again.prepare_runtime(retry_refused=False)  # the next start-up
    assert again.runtimes["resnet18"] == "torch" and "exporting" not in caplog.text  # the record is read instead
    assert "recorded in" in caplog.text and "recorded in" in done["resnet18"]
    again.close()
    (record,) = cache.glob("*.refused.json")
    older = json.dumps({**json.loads(record.read_text()), "onnxruntime": "0.0.1"})  # made before an upgrade
    for content in (older, "{not json"):  # an upgrade, or a record that cannot be read: tried again
        record.write_text(content)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="abaw_hf.onnx"):
            pipeline = _pipeline(paper_model)
            pipeline.prepare_runtime(retry_refused=False)
            pipeline.close()
        assert "exporting extractor-resnet18" in caplog.text
        assert json.loads(record.read_text())["onnxruntime"] != "0.0.1"  # recorded anew, with these versions
    with pytest.raises(UserError, match="does not reproduce torch"):  # asked for by name: tried again, and refused
        _pipeline(paper_model, runtime="onnx")
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", TOLERANCE)
    assert _pipeline(paper_model, runtime="onnx").runtimes["resnet18"] == "onnxruntime"  # a passing export clears it
    assert not list(cache.glob("*.refused.json"))


_EXPORT_ONCE = """
import warnings
warnings.simplefilter("ignore")
from abaw_hf.extractors import create_extractor
from abaw_hf.onnx.runtime import onnx_extractor
print(type(onnx_extractor(create_extractor("resnet18", random_seed=0), retry_refused=False)).__name__)
"""


def test_concurrent_processes_export_once(tmp_path):
    """Two processes (as under `accelerate launch`) asking for the same graph: one exports, both use it."""
    env = {**os.environ, "ABAW_HF_ONNX_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.Popen([sys.executable, "-c", _EXPORT_ONCE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), results
    assert [out.strip() for out, _ in results] == ["OnnxExtractor", "OnnxExtractor"]
    assert sum(err.count("exporting extractor-resnet18") for _, err in results) == 1
    files = sorted(path.name for path in (tmp_path / "cache").iterdir() if not path.name.endswith(".lock"))
    assert len(files) == 1 and files[0].startswith("extractor-resnet18-") and files[0].endswith(".onnx")


def test_a_damaged_cached_graph_is_named_and_auto_goes_on(paper_model, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ABAW_HF_ONNX_CACHE", str(cache))
    prepared = _pipeline(paper_model)
    prepared.prepare_runtime()  # exports resnet18 into the cache
    prepared.close()
    (graph,) = cache.glob("extractor-resnet18-*.onnx")
    graph.write_bytes(graph.read_bytes()[:1000])  # cut short, as by a full disk
    with caplog.at_level(logging.WARNING, logger="abaw_hf.onnx"):
        pipeline = _pipeline(paper_model)
    assert pipeline.runtimes["resnet18"] == "torch" and graph.name in caplog.text and "delete it" in caplog.text
    pipeline.close()
    with pytest.raises(UserError, match="cannot open this graph"):
        _pipeline(paper_model, runtime="onnx")
