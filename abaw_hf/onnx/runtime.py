"""ONNX Runtime objects with the torch call signatures, and the one switch between the runtimes.

`OnnxFusionModel(...)` is called like `AbawFusionModel` (features dict or keyword tensors, attention_mask,
feature_mask, frame_index) and returns the same three output tensors; `OnnxExtractor` keeps the torch extractor's
preprocessing, metadata and provenance and runs its network in onnxruntime (`extract`, `inference_module`).
`onnx_extractor` / `onnx_fusion_model` build them from torch objects, through an export verified against torch
and cached by weights fingerprint, or from an `abaw-hf export-onnx` folder. `runtime_extractors` and `runtime_networks`
are the one switch: ``auto`` (the default) runs the extractors that declare ``onnx_on_cpu`` (the registry) under onnxruntime on CPU and falls back to torch,
with one warning, wherever onnxruntime is missing, the cache cannot be written or an export fails its check. Where
a call must not wait (the pipeline: `predict`, the Space), ``auto`` takes only graphs already in the cache and runs
torch for the others, with a note saying so; `prepare_graphs` exports them at an explicit step (`abaw-hf export-onnx
MODEL`, the Space's start-up in the background, the first step of `extract`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from . import RUNTIMES
from .sessions import create_session, execution_providers, require_onnxruntime  # noqa: F401  (public here too)

CACHE_ENV = "ABAW_HF_ONNX_CACHE"
logger = logging.getLogger("abaw_hf.onnx")


class OnnxFusionModel:
    """An exported fusion model, called like `AbawFusionModel.forward` (inference only, no labels/loss)."""

    def __init__(self, session, config):
        self.session = session
        self.config = config

    def eval(self) -> OnnxFusionModel:
        return self

    def to(self, *args, **kwargs) -> OnnxFusionModel:
        return self

    def __call__(self, features=None, attention_mask=None, feature_mask=None, frame_index=None, return_dict=None,
                 **feature_kwargs):
        """An `AbawFusionOutput` with the prediction outputs (each task's `Task.output`) filled."""
        from ..modeling.modeling_abaw_fusion import check_features, check_frame_index, fusion_output
        from .export import feature_mask_input, fusion_output_names

        as_tensors = {name: torch.as_tensor(value) for name, value in (features or {}).items()}
        features = check_features(self.config, as_tensors, {name: torch.as_tensor(value) for name, value in feature_kwargs.items()})
        batch, length = next(iter(features.values())).shape[:2]
        feed = {name: _array(value, np.float32) for name, value in features.items()}
        feed["attention_mask"] = _array(attention_mask, bool) if attention_mask is not None else np.ones((batch, length), bool)
        for name in self.config.feature_names:
            given = (feature_mask or {}).get(name)
            feed[feature_mask_input(name)] = _array(given, bool) if given is not None else np.ones((batch, length), bool)
        if frame_index is None:
            frame_index = np.broadcast_to(np.arange(length), (batch, length))
        index = np.where(feed["attention_mask"], _array(frame_index, np.int64), 0)
        check_frame_index(self.config, torch.from_numpy(index))
        feed["frame_index"] = np.ascontiguousarray(index)
        names = fusion_output_names(self.config)
        outputs = self.session.run(names, feed)
        return fusion_output(**{name: torch.from_numpy(output) for name, output in zip(names, outputs)})


class OnnxExtractor:
    """A torch extractor whose network runs in onnxruntime; name, dim, preprocessing and provenance are its own."""

    def __init__(self, extractor, session):
        self.torch_extractor = extractor
        self.session = session

    def __getattr__(self, name):  # everything but the network: the torch extractor's
        return getattr(self.__dict__["torch_extractor"], name)

    def to(self, *args, **kwargs) -> OnnxExtractor:
        return self

    def eval(self) -> OnnxExtractor:
        return self

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed [N, 3, S, S] -> features [N, dim] (float32)."""
        pixels = np.ascontiguousarray(pixel_values.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(["features"], {"pixel_values": pixels})[0])

    def inference_module(self):
        return self.features

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.features(pixel_values)

    def extract(self, images, batch_size: int = 32) -> torch.Tensor:
        pixel_values = self.torch_extractor.preprocess(images)
        return torch.cat([self.features(pixel_values[start : start + batch_size])
                          for start in range(0, len(pixel_values), batch_size)])

    def extract_with_mask(self, images, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row present: only networks get a graph, and those find no faces of their own (fau stays torch).
        Defined here, not reached through ``__getattr__``, which would run the torch network."""
        features = self.extract(images, batch_size)
        return features, torch.ones(len(features), dtype=torch.bool)

    def close(self) -> None:
        self.torch_extractor.close()


def _array(value, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(value, dtype=dtype))


# ----- building the ONNX objects ------------------------------------------------------------------------------


class OnnxUnavailable(UserError):
    """No verified graph for a network: onnxruntime missing, the cache not writable, or the export failed its check."""


class OnnxNotPrepared(OnnxUnavailable):
    """No verified graph in the cache yet, and the caller must not wait for an export (``prepare=False``)."""


NOT_PREPARED_NOTE = "no ONNX graph prepared yet"


def cache_folder() -> Path:
    """Where verified exports are kept, by weights fingerprint (``$ABAW_HF_ONNX_CACHE``, else ~/.cache/abaw_hf/onnx)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "abaw_hf" / "onnx"


def _refusal_path(path: Path) -> Path:
    return path.with_name(path.stem + ".refused.json")


def _summary(error: Exception) -> str:
    """``Type: first line`` of a third-party error (the exporter's and onnxruntime's run to many lines)."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "onnxruntime": require_onnxruntime().__version__}


def _recorded_refusal(path: Path) -> str | None:
    """Why an earlier export of this graph failed its check, if it did with these torch and onnxruntime versions
    (an upgrade, or a record that cannot be read, means trying again)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(record.get(name) != version for name, version in _versions().items()):
        return None
    return str(record.get("reason") or "an earlier export failed its check")


def _cached_graph(kind: str, fingerprint: str, export, parity, retry_refused: bool, prepare: bool = True) -> Path:
    """The cache's verified graph of `kind`, exported and checked against torch on first use. The lock makes
    concurrent processes (``accelerate launch``) export once; a graph enters the cache only after its check, and a
    failed check is recorded so that ``auto`` does not export again on every run. ``prepare=False``: never export
    (`OnnxNotPrepared` when the cache has no graph)."""
    from filelock import FileLock

    from .export import OnnxExportError, check_parity

    folder = cache_folder()
    path = folder / f"{kind}-{fingerprint[:24]}.onnx"
    if path.is_file():
        return path
    refused = _refusal_path(path)
    if not prepare:
        recorded = None if retry_refused else _recorded_refusal(refused)
        if recorded:
            raise OnnxUnavailable(f"{kind}: {recorded} (recorded in {refused})")
        raise OnnxNotPrepared(f"{kind}: {NOT_PREPARED_NOTE}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.is_file():  # exported by another process while this one waited
                return path
            recorded = _recorded_refusal(refused) if not retry_refused else None
            if recorded:
                raise OnnxUnavailable(f"{kind}: {recorded} (recorded in {refused})")
            logger.warning("exporting %s to ONNX once and checking it against torch (cache: %s; --runtime torch "
                           "skips this)", kind, folder)
            unverified = path.with_name(f"{path.stem}.{os.getpid()}.unverified.onnx")
            try:
                export(unverified)
                check_parity(kind, parity(create_session(unverified)))
                unverified.replace(path)  # verified: it enters the cache under its final name
            except OSError:  # the cache's problem, said below
                unverified.unlink(missing_ok=True)
                raise
            except Exception as error:  # the exporter's and onnxruntime's errors have no common base
                unverified.unlink(missing_ok=True)
                if isinstance(error, OnnxExportError):
                    reason = f"the ONNX export does not reproduce torch: {error}"
                else:
                    reason = f"the ONNX export failed: {_summary(error)}"
                refused.write_text(json.dumps({"reason": reason, **_versions()}) + "\n")
                raise OnnxUnavailable(f"{kind}: {reason}") from error
            refused.unlink(missing_ok=True)
    except OSError as error:
        raise OnnxUnavailable(f"{folder}: cannot write the ONNX cache ({error.strerror or error}); set {CACHE_ENV} "
                              "to a writable folder, pass --onnx-dir, or use --runtime torch") from error
    return path


def _open_graph(path: Path):
    """A session on a graph; a damaged file (a disk error, a copy cut short) is named, never a traceback."""
    try:
        return create_session(path)
    except Exception as error:  # onnxruntime's errors have no common base
        raise OnnxUnavailable(f"{path}: onnxruntime cannot open this graph ({_summary(error)}); "
                              "delete it (the cache exports it again) or export the model again") from error


def _exported_graph(folder: Path, entry: dict | None, kind: str, fingerprint: str) -> Path:
    if entry is None:
        raise UserError(f"{folder}: the export has no {kind}; export this model again with `abaw-hf export-onnx`")
    if entry.get("fingerprint") != fingerprint:
        raise UserError(f"{folder}: its {kind} was exported from other weights; export this model again")
    return folder / entry["file"]


def onnx_extractor(extractor, onnx_dir: str | Path | None = None, feature: str | None = None, *,
                   retry_refused: bool = True, prepare: bool = True):
    """The ONNX Runtime version of one torch extractor (itself when it has no torch network, e.g. fau); with
    ``prepare=False`` only from a graph already in the cache (`OnnxNotPrepared` otherwise)."""
    from .export import exportable, export_extractor, extractor_fingerprint, extractor_parity, read_manifest

    if isinstance(extractor, OnnxExtractor) or not exportable(extractor):
        return extractor
    require_onnxruntime()
    fingerprint = extractor_fingerprint(extractor)
    if onnx_dir is not None:
        entry = read_manifest(onnx_dir)["extractors"].get(feature or extractor.name)
        path = _exported_graph(Path(onnx_dir), entry, f"extractor {feature or extractor.name!r}", fingerprint)
    else:
        path = _cached_graph(f"extractor-{extractor.name}", fingerprint, lambda p: export_extractor(extractor, p),
                             lambda session: extractor_parity(extractor, session), retry_refused, prepare)
    return OnnxExtractor(extractor, _open_graph(path))


def onnx_fusion_model(model, onnx_dir: str | Path | None = None) -> OnnxFusionModel:
    from .export import export_fusion, fusion_fingerprint, fusion_parity, read_manifest

    if isinstance(model, OnnxFusionModel):
        return model
    require_onnxruntime()
    fingerprint = fusion_fingerprint(model)
    if onnx_dir is not None:
        path = _exported_graph(Path(onnx_dir), read_manifest(onnx_dir).get("fusion"), "fusion model", fingerprint)
    else:
        path = _cached_graph("fusion", fingerprint, lambda p: export_fusion(model, p), lambda s: fusion_parity(model, s),
                             retry_refused=True)
    return OnnxFusionModel(_open_graph(path), model.config)


def check_runtime(runtime: str, onnx_dir: str | Path | None = None) -> str:
    """`runtime` checked; ``--onnx-dir`` means every network from those graphs, so it makes ``auto`` ``onnx``."""
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if onnx_dir is not None:
        if runtime == "torch":
            raise UserError("--onnx-dir runs the networks under onnxruntime; drop --runtime torch or --onnx-dir")
        runtime = "onnx"
    if runtime == "onnx":
        require_onnxruntime()
    return runtime


def uses_onnx(network: str, runtime: str, device: str | torch.device | None = None) -> bool:
    """Whether `runtime` ('auto', 'torch', 'onnx') runs `network` (an extractor name or 'fusion') under
    onnxruntime on `device`: ``auto`` takes onnxruntime only on CPU, for the networks measured faster there."""
    if runtime in ("onnx", "torch"):
        return runtime == "onnx"
    from ..extractors.registry import cpu_onnx_networks

    return torch.device(device if device is not None else "cpu").type == "cpu" and network in cpu_onnx_networks()


def runtime_name(network) -> str:
    """What runs this extractor or fusion model, for reports: 'onnxruntime', 'torch', or 'own' (no torch network,
    e.g. fau's MediaPipe / OpenFace)."""
    from .export import exportable

    if isinstance(network, (OnnxExtractor, OnnxFusionModel)):
        return "onnxruntime"
    return "torch" if exportable(network) or getattr(network, "modality", "") == "audio" else "own"


def _auto_onnx_extractor(extractor, feature: str, prepare: bool, notes: dict | None):
    """``auto``'s choice for one extractor: onnxruntime when it can be had, else torch with one warning (or, for a
    graph not prepared yet where the caller must not wait, with a note in ``notes`` and no warning)."""
    try:
        return onnx_extractor(extractor, feature=feature, retry_refused=False, prepare=prepare)
    except OnnxNotPrepared:
        if notes is not None:
            notes[feature] = NOT_PREPARED_NOTE
    except OnnxUnavailable as problem:
        logger.warning("running %s under torch: %s", feature, problem)
    except UserError:  # onnxruntime missing
        logger.warning("running %s under torch: onnxruntime is not installed (pip install onnxruntime)", feature)
    return extractor


def runtime_extractors(extractors, runtime: str, device=None, onnx_dir: str | Path | None = None, *,
                       prepare: bool = True, notes: dict | None = None):
    """`extractors` (a feature -> extractor mapping, or a sequence) with each network under `runtime` on `device`.
    ``prepare=False``: ``auto`` exports nothing and runs torch where the cache has no graph yet, noting it in
    ``notes`` (feature -> why)."""
    runtime = check_runtime(runtime, onnx_dir)
    named = extractors.items() if isinstance(extractors, Mapping) else ((e.name, e) for e in extractors)
    converted = {}
    for feature, extractor in named:
        if not uses_onnx(extractor.name, runtime, device):
            converted[feature] = extractor
        elif runtime == "auto":
            converted[feature] = _auto_onnx_extractor(extractor, feature, prepare, notes)
        else:
            converted[feature] = onnx_extractor(extractor, onnx_dir, feature)
    return converted if isinstance(extractors, Mapping) else list(converted.values())


@dataclass
class RuntimeNetworks:
    """The networks a pipeline runs under one runtime: its fusion model and extractors (torch or onnxruntime
    objects with the torch call signatures) and ``notes``, feature -> why it stays on torch for now."""

    model: object
    extractors: dict
    notes: dict[str, str]


def runtime_networks(model, extractors: dict, runtime: str, device=None,
                     onnx_dir: str | Path | None = None) -> RuntimeNetworks:
    """`model` and `extractors` under `runtime` on `device`, for a pipeline to hold. A call of the pipeline must not
    wait for an export: ``auto`` takes the cache's graphs only (``notes`` names the networks left on torch for now;
    `prepare_graphs` exports them)."""
    runtime = check_runtime(runtime, onnx_dir)
    notes: dict[str, str] = {}
    extractors = runtime_extractors(extractors, runtime, device, onnx_dir, prepare=False, notes=notes)
    if uses_onnx("fusion", runtime, device):
        model = onnx_fusion_model(model, onnx_dir)
    return RuntimeNetworks(model, extractors, notes)


def prepare_graphs(extractors, device=None, *, retry_refused: bool = True) -> dict[str, str]:
    """Export and check, into the cache, the graph of every network ``auto`` runs under onnxruntime on `device`
    (the explicit step: `abaw-hf export-onnx MODEL`, the Space's start-up). Works on copies, so a pipeline may go on
    using the extractors meanwhile. ``retry_refused=False`` leaves a graph whose export failed its check with these
    versions alone (a server restarting). Returns feature -> what happened (``prepared in 2.5 s``, ``already
    prepared``, or why not)."""
    import copy
    import time

    require_onnxruntime()
    named = extractors.items() if isinstance(extractors, Mapping) else ((e.name, e) for e in extractors)
    done = {}
    for feature, extractor in named:
        if isinstance(extractor, OnnxExtractor):
            done[feature] = "already prepared"
            continue
        if not uses_onnx(extractor.name, "auto", device):
            continue
        try:
            onnx_extractor(extractor, feature=feature, prepare=False, retry_refused=retry_refused)
            done[feature] = "already prepared"
            continue
        except OnnxNotPrepared:
            pass
        except OnnxUnavailable as problem:  # a recorded refusal, a damaged cached graph
            done[feature] = f"not prepared: {problem}"
            continue
        started = time.perf_counter()
        try:
            exported = copy.deepcopy(extractor)  # the caller may go on running the original meanwhile
        except Exception:  # an extractor holding something that does not copy: export the original
            exported = extractor
        try:
            onnx_extractor(exported, feature=feature, retry_refused=True, prepare=True)
        except OnnxUnavailable as problem:
            done[feature] = f"not prepared: {problem}"
            continue
        done[feature] = f"prepared in {time.perf_counter() - started:.1f} s"
    return done
