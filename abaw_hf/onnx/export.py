"""Export the fusion model and torch extractors to ONNX (dynamic batch and time axes), verified against torch.

The graphs come from the TorchScript-based exporter: the fusion model's input checks are data-dependent Python
(finite features, frame_index range) that torch.export refuses, while tracing records only the arithmetic. The
checks stay on the runtime side (`runtime.OnnxFusionModel`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..modeling.tasks_abaw_fusion import OUTPUT_FIELDS, tasks_of

OPSET = 17
FUSION_FILE = "fusion.onnx"
EXTRACTOR_FOLDER = "extractors"
MANIFEST_FILE = "onnx_export.json"
FUSION_OUTPUTS = OUTPUT_FIELDS  # the graph's outputs for ABAW's tasks: the model's prediction outputs, in head order


def fusion_output_names(config) -> list[str]:
    """The graph's outputs for ``config``: each task's output (`tasks_of`), in head order."""
    return [task.output for task in tasks_of(config)]
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - torch| accepted at export


class OnnxExportError(RuntimeError):
    """An exported graph that does not reproduce torch within PARITY_TOLERANCE."""


def feature_mask_input(feature: str) -> str:
    return f"feature_mask.{feature}"


def fusion_input_names(config) -> list[str]:
    """The graph inputs, in order: one tensor per feature, attention_mask, one feature mask per feature, frame_index."""
    names = list(config.feature_names)
    return [*names, "attention_mask", *(feature_mask_input(name) for name in names), "frame_index"]


class _FusionWithPositionalInputs(nn.Module):
    """`AbawFusionModel.forward` with the dicts flattened to positional tensors (what an ONNX graph takes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.feature_names = list(model.config.feature_names)

    def forward(self, *inputs: torch.Tensor):
        count = len(self.feature_names)
        output = self.model(
            features=dict(zip(self.feature_names, inputs[:count])),
            attention_mask=inputs[count],
            feature_mask=dict(zip(self.feature_names, inputs[count + 1 : 2 * count + 1])),
            frame_index=inputs[-1],
            return_dict=True,
        )
        return tuple(output[name] for name in fusion_output_names(self.model.config))


def example_fusion_inputs(config, batch: int, length: int, *, seed: int = 0, missing: float = 0.3) -> dict[str, np.ndarray]:
    """Random inputs with padded frames, missing vectors and gapped frame numbers (for export and parity checks)."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for name, dim in config.feature_dims.items():
        inputs[name] = rng.standard_normal((batch, length, dim)).astype(np.float32)
    attention = np.ones((batch, length), dtype=bool)
    for b in range(1, batch):  # every other window padded at the end
        attention[b, max(1, length - b) :] = False
    inputs["attention_mask"] = attention
    for name in config.feature_names:
        inputs[feature_mask_input(name)] = rng.random((batch, length)) >= missing
    steps = rng.integers(1, 3, size=(batch, length))
    frame_index = np.cumsum(steps, axis=1) - steps[:, :1]
    inputs["frame_index"] = np.minimum(frame_index, config.max_window - 1).astype(np.int64)
    return inputs


def _tensor_description(name: str, array_type: str, shape: list) -> dict:
    return {"name": name, "dtype": array_type, "shape": shape}


def fusion_io(config) -> dict:
    inputs = [_tensor_description(name, "float32", ["batch", "time", dim]) for name, dim in config.feature_dims.items()]
    inputs.append(_tensor_description("attention_mask", "bool", ["batch", "time"]))
    inputs += [_tensor_description(feature_mask_input(name), "bool", ["batch", "time"]) for name in config.feature_names]
    inputs.append(_tensor_description("frame_index", "int64", ["batch", "time"]))
    outputs = [_tensor_description(task.output, "float32", ["batch", "time", task.head_width(config)]) for task in tasks_of(config)]
    return {"inputs": inputs, "outputs": outputs}


def extractor_io(extractor) -> dict:
    shape = list(extractor.preprocess_cfg.input_shape)
    return {
        "inputs": [_tensor_description("pixel_values", "float32", ["batch", *shape])],
        "outputs": [_tensor_description("features", "float32", ["batch", int(extractor.dim)])],
        "preprocessing": extractor.preprocess_cfg.to_dict(),
    }


def weights_fingerprint(module: nn.Module, *extra: object) -> str:
    """sha256 of every tensor of the state dict (names, shapes, bytes) and `extra`: which weights a graph holds."""
    digest = hashlib.sha256(json.dumps([str(item) for item in extra]).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fusion_fingerprint(model) -> str:
    return weights_fingerprint(model, model.config.to_json_string(use_diff=False), OPSET)


def extractor_fingerprint(extractor) -> str:
    return weights_fingerprint(extractor, type(extractor).__name__, extractor.variant, extractor.preprocess_cfg, OPSET)


def _export(module: nn.Module, example: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    module.eval()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the Python-side input checks; deprecation notice
        buffer = io.BytesIO()
        torch.onnx.export(
            module, example, buffer, input_names=list(input_names), output_names=list(output_names),
            dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    partial.write_bytes(buffer.getvalue())
    partial.replace(path)  # a crash never leaves a half-written graph under the final name


def _keep_all_inputs(path: Path, description: dict) -> None:
    """Inputs a configuration does not use (e.g. frame_index without position encoding) are dropped by the
    exporter; put them back as graph inputs so every export takes the same inputs as `forward`."""
    import onnx

    graph_model = onnx.load(str(path))
    present = {value.name for value in graph_model.graph.input}
    element = {"float32": onnx.TensorProto.FLOAT, "bool": onnx.TensorProto.BOOL, "int64": onnx.TensorProto.INT64}
    missing = [item for item in description["inputs"] if item["name"] not in present]
    if not missing:
        return
    for item in missing:
        graph_model.graph.input.append(onnx.helper.make_tensor_value_info(item["name"], element[item["dtype"]], item["shape"]))
    order = [item["name"] for item in description["inputs"]]
    inputs = sorted(graph_model.graph.input, key=lambda value: order.index(value.name) if value.name in order else len(order))
    del graph_model.graph.input[:]
    graph_model.graph.input.extend(inputs)
    onnx.save(graph_model, str(path))


def export_fusion(model, path: str | Path) -> dict:
    """`model` (an AbawFusionModel) -> ONNX at `path`; returns the inputs/outputs description."""
    path = Path(path)
    config = model.config
    description = fusion_io(config)
    names = fusion_input_names(config)
    example = example_fusion_inputs(config, batch=2, length=min(4, config.max_window))
    outputs = fusion_output_names(config)
    dynamic_axes = {name: {0: "batch", 1: "time"} for name in [*names, *outputs]}
    wrapper = _FusionWithPositionalInputs(model).eval()
    _export(wrapper, tuple(torch.from_numpy(example[name]) for name in names), path, names, outputs, dynamic_axes)
    _keep_all_inputs(path, description)
    return description


def export_extractor(extractor, path: str | Path) -> dict:
    """A torch extractor's network (preprocessed pixels [N, 3, S, S] -> features [N, D]) -> ONNX at `path`."""
    example = torch.randn(2, *extractor.preprocess_cfg.input_shape, generator=torch.Generator().manual_seed(0))
    dynamic_axes = {"pixel_values": {0: "batch"}, "features": {0: "batch"}}
    module = extractor.eval()
    if extractor.channels_last:  # the graph takes plain NCHW arrays
        module = _contiguous_copy(extractor)
    _export(module, (example,), Path(path), ["pixel_values"], ["features"], dynamic_axes)
    return extractor_io(extractor)


def _contiguous_copy(extractor):
    import copy

    duplicate = copy.deepcopy(extractor)
    duplicate._folded = {}
    return duplicate.to(memory_format=torch.contiguous_format).eval()


def exportable(extractor) -> bool:
    """Torch networks export; extractors without learned weights (fau: MediaPipe / OpenFace) stay as they are."""
    if getattr(extractor, "modality", "image") != "image":  # audio: encoders read sound in chunks, not pixels
        return False
    return isinstance(extractor, nn.Module) and any(True for _ in extractor.parameters())


# ----- parity ------------------------------------------------------------------------------------------------


def fusion_parity(model, session, shapes=((1, 1), (2, 7), (3, 16))) -> float:
    """Largest |onnxruntime - torch| over the outputs, for random inputs with padding and missing vectors."""
    worst = 0.0
    wrapper = _FusionWithPositionalInputs(model).eval()
    names = fusion_input_names(model.config)
    for batch, length in shapes:
        length = min(length, model.config.max_window)
        inputs = example_fusion_inputs(model.config, batch, length, seed=batch * 1000 + length)
        with torch.inference_mode():
            expected = wrapper(*(torch.from_numpy(inputs[name]) for name in names))
        got = session.run(fusion_output_names(model.config), inputs)
        present = inputs["attention_mask"]
        worst = max(worst, *(float(np.abs(e.numpy()[present] - g[present]).max()) for e, g in zip(expected, got)))
    return worst


def extractor_parity(extractor, session, batches=(1, 3)) -> float:
    worst = 0.0
    for batch in batches:
        pixels = torch.randn(batch, *extractor.preprocess_cfg.input_shape, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            expected = extractor.inference_module()(pixels.contiguous(memory_format=_memory_format(extractor)))
        got = session.run(["features"], {"pixel_values": pixels.numpy()})[0]
        worst = max(worst, float(np.abs(expected.float().numpy() - got).max()))
    return worst


def _memory_format(extractor):
    return torch.channels_last if extractor.channels_last else torch.contiguous_format


def check_parity(what: str, difference: float) -> None:
    if not difference <= PARITY_TOLERANCE:
        raise OnnxExportError(f"{what}: onnxruntime differs from torch by {difference:.3g} (> {PARITY_TOLERANCE})")


# ----- a model and its extractors -----------------------------------------------------------------------------


@dataclass
class ExportedModel:
    folder: Path
    manifest: dict


def export_model(model, extractors: dict, folder: str | Path, *, model_id: str | None = None, verify: bool = True) -> ExportedModel:
    """The fusion model and each torch extractor it names -> `folder` (fusion.onnx, extractors/<feature>.onnx and
    onnx_export.json describing inputs, outputs, weights fingerprints, provenance and measured parity)."""
    from .. import __version__
    from .sessions import create_session

    folder = Path(folder)
    started = time.perf_counter()
    manifest: dict = {
        "format": "abaw_hf-onnx/1",
        "model": str(model_id) if model_id is not None else None,
        "created_with": {"abaw_hf": __version__, "torch": torch.__version__, "opset": OPSET},
        "fusion": {"file": FUSION_FILE, "fingerprint": fusion_fingerprint(model), **export_fusion(model, folder / FUSION_FILE)},
        "extractors": {},
        "not_exported": {},
    }
    if verify:
        difference = fusion_parity(model, create_session(folder / FUSION_FILE))
        check_parity("fusion model", difference)
        manifest["fusion"]["max_abs_difference"] = difference
    for feature, extractor in extractors.items():
        if not exportable(extractor):
            manifest["not_exported"][feature] = (
                f"{extractor.name}: audio encoder, not exported: it reads the video's sound in chunks and runs under "
                "torch in every runtime" if getattr(extractor, "modality", "image") == "audio"
                else f"{extractor.name}: no torch network (runs as it is under either runtime)")
            continue
        file = f"{EXTRACTOR_FOLDER}/{feature}.onnx"
        entry = {"file": file, "fingerprint": extractor_fingerprint(extractor), **export_extractor(extractor, folder / file)}
        entry["provenance"] = extractor.provenance()
        if verify:
            difference = extractor_parity(extractor, create_session(folder / file))
            check_parity(f"extractor {feature!r}", difference)
            entry["max_abs_difference"] = difference
        manifest["extractors"][feature] = entry
    manifest["export_seconds"] = round(time.perf_counter() - started, 1)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return ExportedModel(folder, manifest)


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST_FILE
    with contextlib.suppress(FileNotFoundError):
        return json.loads(path.read_text())
    from ..errors import UserError

    raise UserError(f"{folder}: no {MANIFEST_FILE}; write one with `abaw-hf export-onnx MODEL -o {folder}`")
