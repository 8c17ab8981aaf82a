"""Frames -> extractors -> feature dataset: batched, in worker processes, over one or several processes, by shard.

The rows (sorted by video, frame) are cut into shards of `shard_size`. Each process takes its share of the
unfinished shards (`PartialState.split_between_processes`), decodes and preprocesses images in DataLoader
workers, runs every extractor under `torch.inference_mode` (channels-last and fp16/bf16 autocast on GPU) and writes each
finished shard as one `.npz` file in the work folder (`<output>.work/features/`), written under a temporary
name and renamed when complete. A rerun skips shards whose file exists; a half-written file is never taken
as finished. When every shard is there, the main process hands them to the dataset builder
(`abaw_hf.data.write_sharded_dataset`), writes `extraction_report.json` beside the dataset and removes the
work folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

import datasets
import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from tqdm.auto import tqdm

from .. import outputs
from ..errors import UserError
from ..data import Annotations, write_sharded_dataset
from ..data.builder import FeatureError
from ..extractors import Extractor
from .frames import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MIN_IMAGE_SIZE, FaceFrames, preprocess_groups
from .settings import DEFAULT_SHARD_SIZE, PRECISIONS

logger = logging.getLogger(__name__)

REPORT_NAME = "extraction_report.json"
_SHOWN_MISSING = 20
NO_IMAGE_REASON = "no image file"
NO_FACE_REASON = "no face detected"
BARRIER_TIMEOUT = timedelta(hours=12)


class MissingImagesError(UserError, FileNotFoundError):
    """Annotated frames whose image file does not exist (raised before any work starts)."""


@dataclass
class ExtractionResult:
    """What a run produced. `dataset` is None until every shard is done (and on processes other than the main)."""

    dataset: datasets.Dataset | None
    report: dict[str, Any]
    report_path: Path
    complete: bool
    shards_done_now: int = 0
    missing_images: list[str] = field(default_factory=list)


def process_state() -> PartialState:
    """This process's place in an `accelerate launch` run (one process when not launched).

    PartialState only joins a CPU process group when told to run on CPU, as `Accelerator` does for
    `ACCELERATE_USE_CPU=true`. The long timeout: a process that finished its share waits at a barrier while
    the others finish theirs (tracking a long video, the final merge), which can outlast the 30-minute default.
    """
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=BARRIER_TIMEOUT)


def work_root_for(output_dir: str | os.PathLike) -> Path:
    """The folder beside the output that holds unfinished work (feature shards, face crops of videos)."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".work")


def autocast_context(device: torch.device, precision: str):
    """fp16/bf16 autocast on GPU; plain fp32 elsewhere ("auto" picks bf16 where the GPU supports it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise ValueError(f"precision {precision!r} (autocast) is for GPUs; on {device.type} use 'fp32' or 'auto'")
    if precision == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


def _memory_format(extractor: Extractor, device: torch.device, channels_last: bool | None) -> torch.memory_format:
    """Channels-last where the extractor declares it faster (`Extractor.channels_last`) and on GPU, unless forced."""
    use = (extractor.channels_last or device.type == "cuda") if channels_last is None else channels_last
    return torch.channels_last if use else torch.contiguous_format


class _Runner:
    """One extractor placed on the device, ready to turn preprocessed batches into (vectors, present)."""

    def __init__(self, extractor: Extractor, device: torch.device, precision: str, channels_last: bool | None):
        self.extractor, self.device, self.precision = extractor, device, precision
        self.memory_format = _memory_format(extractor, device, channels_last)
        extractor.eval()
        self.has_weights = any(True for _ in extractor.parameters())
        if self.has_weights:
            extractor.to(device=device, memory_format=self.memory_format)
        # e.g. a BatchNorm-folded copy; the extractor's own `extract` runs the same module
        self.module = extractor.inference_module()

    def __call__(self, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Features [n, D] float32 and present [n] for preprocessed pixels [n, 3, S, S]."""
        if self.extractor.may_miss_faces:  # its forward alone does not say which crops had no face (fau)
            vectors, present = self.extractor.extract_with_mask(pixels, batch_size=len(pixels))
            return vectors.float().cpu().numpy(), present.cpu().numpy().astype(bool)
        pixels = pixels.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), autocast_context(self.device, self.precision):
            vectors = self.module(pixels)
        return vectors.float().cpu().numpy(), np.ones(len(pixels), dtype=bool)


def _fingerprint(ordered: Annotations, paths: Sequence[str], skip: Sequence[str | None], provenance, shard_size, min_size,
                 max_pixels) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(ordered.frame).tobytes())
    for array in (ordered.valence, ordered.arousal, ordered.expression, ordered.aus):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update("\n".join(ordered.video.tolist()).encode())
    digest.update("\n".join(paths).encode())
    digest.update(json.dumps([list(skip), provenance, shard_size, min_size, max_pixels], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def _part_path(features_dir: Path, index: int) -> Path:
    return features_dir / f"part-{index:05d}.npz"


def _save_part(path: Path, vectors: list[np.ndarray], present: list[np.ndarray], entries: dict) -> None:
    arrays = {f"vectors_{j}": v for j, v in enumerate(vectors)}
    arrays.update({f"present_{j}": p for j, p in enumerate(present)})
    arrays["report"] = np.array(json.dumps(entries))
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)  # only a complete file ever carries the final name


def _load_part(path: Path, count: int) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    with np.load(path) as part:
        vectors = [part[f"vectors_{j}"] for j in range(count)]
        present = [part[f"present_{j}"] for j in range(count)]
        entries = json.loads(str(part["report"]))
    return vectors, present, entries


def _check_finite(name: str, vectors: np.ndarray, present: np.ndarray, rows: Annotations, paths: Sequence[str]) -> None:
    bad = present & ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise FeatureError(
            f"extractor {name!r} produced NaN or Inf for video {rows.video[row]!r} frame {int(rows.frame[row])} "
            f"({paths[row]}); {int(bad.sum())} such rows in this shard"
        )


def _list_missing_images(ordered: Annotations, paths: list[str], known: Mapping[tuple[str, int], str]):
    skip: list[str | None] = [None] * len(paths)
    missing: list[str] = []
    for position, (video, frame, path) in enumerate(zip(ordered.video.tolist(), ordered.frame.tolist(), paths)):
        reason = known.get((video, int(frame)))
        if reason is not None:
            skip[position] = reason
        elif not os.path.exists(path):  # a folder or unreadable file is there: decoding reports why it is unusable
            skip[position] = NO_IMAGE_REASON
            missing.append(path)
    return skip, missing


def _finished_report(output_dir: Path, fingerprint: str) -> dict | None:
    """The report of a finished extraction of the same inputs in `output_dir`, if there is one."""
    report = _read_report(output_dir / REPORT_NAME)
    return report if report.get("fingerprint") == fingerprint and report.get("complete") else None


def _read_report(path: Path) -> dict:
    """An earlier report or work manifest ({} when there is none, or it is damaged: then it is no match)."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _prepare_folders(output_dir: Path, features_dir: Path, fingerprint: str, overwrite: bool, meta: dict) -> None:
    """Main process: check or reset the output and work folders (nothing to do when the output is finished)."""
    # only folders abaw_hf wrote (their marker, `abaw_hf.outputs`) are resumed or replaced; any other is refused
    outputs.check_claimable(output_dir, "--output")
    outputs.check_claimable(features_dir.parent, "--output's work folder")
    if outputs.entries(output_dir) and not overwrite:
        if _finished_report(output_dir, fingerprint) is not None:
            return
        if _read_report(output_dir / REPORT_NAME).get("fingerprint") != fingerprint:
            raise outputs.OutputFolderError(
                f"{output_dir} is not empty and was not extracted from these inputs; pass overwrite=True "
                "(--overwrite) to replace it"
            )
    if overwrite:
        outputs.clear(output_dir)
        shutil.rmtree(features_dir, ignore_errors=True)  # the work folder's shards; its face crops stay (video.py)
    manifest_path = features_dir / "work.json"
    if manifest_path.is_file():
        previous = _read_report(manifest_path)
        if previous.get("fingerprint") != fingerprint:
            raise FileExistsError(
                f"{features_dir} holds unfinished work from other inputs (other frames, extractors or settings); "
                "pass overwrite=True (--overwrite) to discard it"
            )
    outputs.claim(features_dir.parent, "--output's work folder")
    features_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps({"fingerprint": fingerprint, **meta}, indent=2))
    return None


def extract_features(
    rows: Annotations,
    image_root: str | os.PathLike,
    extractors: Sequence[Extractor],
    output_dir: str | os.PathLike,
    *,
    image_pattern: str = "{video}/{frame:05d}.jpg",
    known_missing: Mapping[tuple[str, int], str] | None = None,
    allow_missing_images: bool = False,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 64,
    num_workers: int = 2,
    precision: str = "auto",
    device: str | torch.device | None = None,
    channels_last: bool | None = None,
    max_shards: int | None = None,
    overwrite: bool = False,
    keep_work: bool = False,
    min_image_size: int = DEFAULT_MIN_IMAGE_SIZE,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    provenance_extra: Mapping[str, Any] | None = None,
    report_extra: Mapping[str, Any] | None = None,
    progress: bool = True,
    runtime: str = "auto",
    onnx_dir: str | os.PathLike | None = None,
    audio_sources: Mapping[str, Any] | None = None,
    split: str | None = None,
) -> ExtractionResult:
    """Extract every row's image (`image_root / image_pattern`) with `extractors` into a feature dataset.

    `known_missing` maps (video, frame) to a reason for rows that have no image on purpose (no face found);
    other rows without an image file are listed before any work starts and raise `MissingImagesError`,
    unless `allow_missing_images` (then they become missing vectors). Unusable files (0 bytes, corrupt,
    truncated, tiny, above `max_image_pixels`, a folder, unreadable) become missing vectors with their reason
    in the report's `failed_files`; the run goes on. `max_shards` stops each
    process after that many new shards (a resumable partial run). Under `accelerate launch` the shards are
    split between the processes. `runtime` says what runs the networks (`abaw_hf.onnx`: ``"auto"`` takes
    onnxruntime on CPU where it is faster); the report records what each extractor got. `audio_sources` (video ->
    `abaw_hf.extraction.audio.AudioSource`) gives ``audio:`` extractors each video's sound; a video without one
    gets missing vectors, its reason under `missing_audio` in the report. `split` names the dataset's split
    (`abaw-hf build` writes one folder per split). Returns the dataset when every shard is done.
    """
    state = process_state()
    if len(rows) == 0:
        raise ValueError(f"{rows.source or 'annotations'}: no rows to extract")
    names = [str(e.name) for e in extractors]
    if not extractors or len(set(names)) != len(names):
        raise ValueError(f"give one or more extractors with distinct names, got {names}")
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be >= 1")
    device = torch.device(device) if device is not None else state.device
    autocast_context(device, precision)  # validates the precision for this device before any work
    from ..onnx.runtime import runtime_extractors, runtime_name

    extractors = runtime_extractors(list(extractors), runtime, device, onnx_dir)
    report_extra = {**dict(report_extra or {}), "runtime": {name: runtime_name(e) for name, e in zip(names, extractors)}}
    output_dir, image_root = Path(output_dir), Path(image_root)
    work_root = work_root_for(output_dir)
    features_dir = work_root / "features"

    ordered = rows.take(rows.sort_order())
    paths = [str(image_root / image_pattern.format(video=v, frame=int(f))) for v, f in zip(ordered.video.tolist(), ordered.frame.tolist())]
    skip, missing_images = _list_missing_images(ordered, paths, known_missing or {})
    if missing_images:
        shown = "\n  ".join(missing_images[:_SHOWN_MISSING])
        message = f"{len(missing_images)} annotated frames have no image under {image_root}"
        listing = f":\n  {shown}" + (
            f"\n  ... and {len(missing_images) - _SHOWN_MISSING} more" if len(missing_images) > _SHOWN_MISSING else ""
        )
        if not allow_missing_images:
            raise MissingImagesError(
                f"{message} (pass --allow-missing-images to store them as missing vectors){listing}"
            )
        message += listing
        if state.is_main_process:
            logger.warning("%s\nthey are stored as missing vectors", message)

    provenance = {name: {**e.provenance(), **dict(provenance_extra or {})} for name, e in zip(names, extractors)}
    from .audio import check_audio_sources

    audio_sources = check_audio_sources(extractors, audio_sources)
    num_shards = max(1, -(-len(ordered) // shard_size))
    fingerprint = _fingerprint(ordered, paths, skip, [provenance, audio_sources] if audio_sources else provenance,
                               shard_size, min_image_size, max_image_pixels)
    report_path = output_dir / REPORT_NAME
    if state.is_main_process:
        meta = {"num_shards": num_shards, "shard_size": shard_size, "rows": len(ordered), "extractors": names}
        _prepare_folders(output_dir, features_dir, fingerprint, overwrite, meta)
    state.wait_for_everyone()
    finished = _finished_report(output_dir, fingerprint)
    if finished is not None:  # a rerun of a finished extraction: nothing to do
        dataset = datasets.load_from_disk(str(output_dir)) if state.is_main_process else None
        return ExtractionResult(dataset, finished, report_path, True, 0, missing_images)

    pending = [i for i in range(num_shards) if not _part_path(features_dir, i).is_file()]
    state.wait_for_everyone()  # every process has listed the same pending shards before anyone writes
    with state.split_between_processes(pending) as assigned:
        mine = list(assigned)
    if max_shards is not None:
        mine = mine[:max_shards]

    started = time.perf_counter()
    frames_done = _extract_shards(
        mine, ordered, paths, skip, extractors, features_dir, shard_size, batch_size, num_workers,
        device, precision, channels_last, min_image_size, max_image_pixels,
        progress and state.is_main_process, state.process_index, audio_sources,
    )
    seconds = time.perf_counter() - started
    state.wait_for_everyone()

    complete = all(_part_path(features_dir, i).is_file() for i in range(num_shards))
    state.wait_for_everyone()  # every process has seen the shards before the main process merges and cleans up
    report_path = report_path if complete else features_dir / REPORT_NAME  # an unfinished run reports beside its shards
    report: dict[str, Any] = {}
    dataset = None
    if state.is_main_process:
        report = _merge_report(
            features_dir, num_shards, len(names), fingerprint, complete, ordered, names, provenance,
            missing_images, state.num_processes, frames_done, seconds, report_extra,
        )
        if complete:
            # The output folder holds nothing but an earlier merge of these inputs (checked above), which the
            # builder replaces; the unfinished report marks the folder as this extraction's while merging.
            outputs.claim(output_dir)
            report_path.write_text(json.dumps({**report, "complete": False}, indent=2))
            dataset = _write_dataset(ordered, names, extractors, features_dir, output_dir, shard_size, provenance,
                                     fingerprint, progress, split)
        report_path.write_text(json.dumps(report, indent=2))
        if complete and not keep_work:
            shutil.rmtree(work_root)
    state.wait_for_everyone()
    return ExtractionResult(dataset, report, report_path, complete, len(mine), missing_images)


def _extract_shards(
    shards, ordered, paths, skip, extractors, features_dir, shard_size, batch_size, num_workers,
    device, precision, channels_last, min_image_size, max_image_pixels, show_progress, process_index,
    audio_sources=None,
) -> int:
    """Compute and save the given shards; returns the number of frames processed."""
    if not shards:
        return 0
    configs = preprocess_groups(extractors)
    images = [e.modality == "image" for e in extractors]  # audio: extractors read the sound, per shard below
    group_of = [configs.index(e.preprocess_cfg) if image else None for e, image in zip(extractors, images)]
    runners = [_Runner(e, device, precision, channels_last) if image else None for e, image in zip(extractors, images)]
    batches = []
    for shard in shards:
        start, stop = shard * shard_size, min(len(paths), (shard + 1) * shard_size)
        batches.extend(list(range(s, min(stop, s + batch_size))) for s in range(start, stop, batch_size))
    loader = torch.utils.data.DataLoader(
        FaceFrames(paths, configs, skip, min_image_size, max_image_pixels),
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    total = sum(len(b) for b in batches)
    bar = tqdm(total=total, unit="frame", unit_scale=True, desc=f"extract[{process_index}]", disable=not show_progress)
    shard_iter = iter(shards)
    current = None
    for batch in loader:
        index = batch["index"].numpy()
        if current is None:
            current = _ShardBuffer(next(shard_iter), shard_size, len(paths), extractors)
        offset = index - current.start
        ok = batch["ok"].numpy().astype(bool)
        if ok.any():
            ok_tensor = torch.from_numpy(ok)
            for j, extractor in enumerate(extractors):
                if runners[j] is None:
                    continue
                vectors, present = runners[j](batch["inputs"][group_of[j]][ok_tensor])
                if vectors.shape != (int(ok.sum()), int(extractor.dim)):
                    raise FeatureError(f"extractor {extractor.name!r} returned shape {vectors.shape}, expected ({int(ok.sum())}, {extractor.dim})")
                current.vectors[j][offset[ok]] = vectors
                current.present[j][offset[ok]] = present
        for k, position in enumerate(index.tolist()):
            where = {"image": paths[position], "video": str(ordered.video[position]), "frame": int(ordered.frame[position])}
            if not ok[k]:
                current.failed.append({**where, "reason": batch["problem"][k]})
            elif batch["converted_from"][k]:
                current.converted.append({**where, "from_mode": batch["converted_from"][k]})
        current.filled += len(index)
        bar.update(len(index))
        if current.filled == current.stop - current.start:
            if not all(images):
                from .audio import fill_audio_vectors

                fill_audio_vectors(current, extractors, ordered, audio_sources)
            current.save(features_dir, ordered, paths, process_index)
            current = None
    bar.close()
    return total


class _ShardBuffer:
    """The vectors of one shard while its batches come in."""

    def __init__(self, index: int, shard_size: int, num_rows: int, extractors: Sequence[Extractor]):
        self.index = index
        self.start, self.stop = index * shard_size, min(num_rows, (index + 1) * shard_size)
        count = self.stop - self.start
        self.names = [str(e.name) for e in extractors]
        self.vectors = [np.zeros((count, int(e.dim)), np.float32) for e in extractors]
        self.present = [np.zeros(count, bool) for _ in extractors]
        self.failed: list[dict] = []
        self.converted: list[dict] = []
        self.missing_audio: list[dict] = []
        self.filled = 0

    def save(self, features_dir: Path, ordered: Annotations, paths: Sequence[str], process_index: int) -> None:
        rows = ordered.take(np.arange(self.start, self.stop))
        for name, vectors, present in zip(self.names, self.vectors, self.present):
            _check_finite(name, vectors, present, rows, paths[self.start : self.stop])
        entries = {"failed": self.failed, "converted": self.converted, "process": process_index,
                   "missing_audio": self.missing_audio}
        _save_part(_part_path(features_dir, self.index), self.vectors, self.present, entries)


def _write_dataset(ordered, names, extractors, features_dir, output_dir, shard_size, provenance, fingerprint, progress,
                   split=None):
    def compute_shard(shard_rows: Annotations, row_index: np.ndarray):
        part = int(row_index[0]) // shard_size
        vectors, present, _ = _load_part(_part_path(features_dir, part), len(names))
        if len(vectors[0]) != len(shard_rows):
            raise RuntimeError(f"{_part_path(features_dir, part)} holds {len(vectors[0])} rows, expected {len(shard_rows)}")
        return {name: (v, p) for name, v, p in zip(names, vectors, present)}

    return write_sharded_dataset(
        ordered,
        {name: int(e.dim) for name, e in zip(names, extractors)},
        compute_shard,
        output_dir,
        shard_size=shard_size,
        provenance=provenance,
        source=f"abaw_hf.extraction:{fingerprint}",
        split=split,
        overwrite=True,
        progress=progress,
    )


def _merge_report(features_dir, num_shards, count, fingerprint, complete, ordered, names, provenance,
                  missing_images, num_processes, frames_done, seconds, report_extra) -> dict:
    failed, converted, missing_audio = [], [], []
    missing_vectors = {name: 0 for name in names}
    done, shards_by_process = 0, {}
    for index in range(num_shards):
        path = _part_path(features_dir, index)
        if not path.is_file():
            continue
        done += 1
        _, present, entries = _load_part(path, count)
        failed.extend(entries["failed"])
        shards_by_process[str(entries["process"])] = shards_by_process.get(str(entries["process"]), 0) + 1
        converted.extend(entries["converted"])
        missing_audio.extend(entries.get("missing_audio", []))
        for name, mask in zip(names, present):
            missing_vectors[name] += int((~mask).sum())
    unusable = [f for f in failed if f["reason"] not in (NO_IMAGE_REASON, NO_FACE_REASON)]
    report = {
        "fingerprint": fingerprint,
        "complete": complete,
        "rows": len(ordered),
        "videos": int(len(np.unique(ordered.video))) if len(ordered) else 0,
        "shards": {"total": num_shards, "done": done},
        "processes": num_processes,
        "shards_by_process": dict(sorted(shards_by_process.items())),
        "extractors": provenance,
        "missing_images": missing_images,
        "failed_files": unusable,
        "frames_without_face": [
            {"video": f["video"], "frame": f["frame"]} for f in failed if f["reason"] == NO_FACE_REASON
        ],
        "converted_files": converted,
        "missing_vectors": missing_vectors,
        "missing_audio": missing_audio,
        "main_process_frames_per_second": round(frames_done / seconds, 2) if frames_done and seconds > 0 else None,
    }
    report.update(dict(report_extra or {}))
    return report


def rows_from_frames_folder(image_root: str | os.PathLike, suffix: str = ".jpg") -> Annotations:
    """Unlabelled rows for every `<video>/<number><suffix>` image under `image_root` (no annotation file)."""
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such frames folder")
    videos, frames = [], []
    for path in sorted(root.glob(f"*/*{suffix}")):
        if path.stem.isdigit():
            videos.append(path.parent.name)
            frames.append(int(path.stem))
    if not frames:
        raise FileNotFoundError(f"{root}: no '<video>/<frame number>{suffix}' images found")
    return Annotations.unlabelled(videos, frames, source=str(root))
