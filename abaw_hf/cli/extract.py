"""`abaw-hf extract`: frames folder (+ annotation file) or videos -> feature dataset.

    abaw-hf extract --frames cropped_aligned --annotations validation_set_annotations.txt \\
        --extractor resnet18=resnet18_msceleb.pth --extractor poster2:8cls=poster2_affectnet8.pth \\
        --extractor fau --output features --split validation
    abaw-hf extract --video clip.mp4 --extractor resnet18=resnet18_msceleb.pth --output features/clip
    accelerate launch --num_processes 4 -m abaw_hf.cli extract ...     # shards split between processes

An image that cannot be used (empty, corrupt, truncated, larger than --max-image-pixels, a folder,
unreadable) becomes a missing vector listed with its reason under `failed_files` in extraction_report.json,
and the run goes on (exit 0); so does a video that cannot be used (`failed_videos`). A rerun with the same arguments resumes: finished shards are skipped. With `--split NAME` the dataset goes to
`<output>/<NAME>` and `<output>/dataset_dict.json` lists the splits, so `<output>` is what training,
`evaluate`, `tune` and `submit` read (`datasets.load_from_disk(<output>)` works too).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..data import read_mtl_annotations, read_mtl_test_list
from ..data.storage import check_new_split, check_split_name, register_split
from .. import outputs
from ..errors import UserError
from ..faces.settings import BACKENDS, DEFAULT_BACKEND, DEFAULT_MAX_IMAGE_PIXELS, FACE_SIZE
from ..specs import create_extractors, parse_input_sizes
from ..extraction.settings import DEFAULT_MIN_IMAGE_SIZE, DEFAULT_SHARD_SIZE, PRECISIONS
from .arguments import add_extractor_arguments, add_runtime_arguments, face_selection, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("input (a frames folder, or videos)")
    source.add_argument("--frames", type=Path, help="folder of <video>/<5-digit frame>.jpg face crops (cropped_aligned)")
    source.add_argument("--annotations", type=Path, help="ABAW MTL annotation file (rows to extract, with labels)")
    source.add_argument("--test-list", type=Path, help="ABAW MTL test list (MTL.txt) instead of --annotations")
    source.add_argument("--video", type=Path, nargs="+", help="raw videos: faces are detected, tracked and aligned")
    source.add_argument("--image-pattern", default="{video}/{frame:05d}.jpg", help="image path under --frames")
    source.add_argument("--allow-missing-images", action="store_true",
                        help="annotated frames without an image become missing vectors instead of an error")
    source.add_argument("--detector", choices=BACKENDS, default=DEFAULT_BACKEND,
                        help="face detector for --video (default %(default)s: every face, in the wild)")
    source.add_argument("--faces", type=face_selection, default="all",
                        help="--video: all, largest or N faces; a video with several face tracks gives one dataset "
                             "video per track, <video>_face<k>")
    source.add_argument("--face-size", type=positive_int, default=FACE_SIZE, help="aligned crop size for --video")
    source.add_argument("--videos", type=Path, metavar="DIR",
                        help="--frames: the raw videos whose sound audio: extractors read (Aff-Wild2 naming: "
                             "video5_left and video5_right take DIR/video5.*; frame k is at (k-1)/fps)")
    models = parser.add_argument_group("extractors")
    add_extractor_arguments(models, required=True)
    models.add_argument("--allow-pickle", action="store_true", help="allow checkpoints that need full unpickling")
    models.add_argument("--input-size", action="append", metavar="NAME=PIXELS",
                        help="override an extractor's input size (recorded in the provenance)")
    models.add_argument("--audio-window", type=float, metavar="SECONDS",
                        help="audio: extractors: each frame's vector is the mean of the encoder outputs within this "
                             "window centred on the frame (default 1.0 s; recorded in the provenance)")
    run = parser.add_argument_group("run")
    run.add_argument("--output", type=Path, required=True,
                     help="dataset folder; with --split, the feature set's root (the split goes to OUTPUT/SPLIT)")
    run.add_argument("--split", help="split name (train, validation, test): OUTPUT becomes a DatasetDict root")
    run.add_argument("--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE, help="rows per shard (the unit of resuming)")
    run.add_argument("--batch-size", type=positive_int, default=64)
    run.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes for decoding/preprocessing")
    run.add_argument("--precision", choices=PRECISIONS, default="auto", help="autocast on GPU; CPU runs fp32")
    run.add_argument("--device", help="torch device (default: this process's accelerate device)")
    add_runtime_arguments(run)
    run.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                     help="channels-last memory format (default: on GPU only)")
    run.add_argument("--min-image-size", type=positive_int, default=DEFAULT_MIN_IMAGE_SIZE, help="smaller images are failures")
    run.add_argument("--max-image-pixels", type=positive_int, default=DEFAULT_MAX_IMAGE_PIXELS, metavar="N",
                     help="larger images (width x height, read from the header) are failures, not decoded: "
                          "decompression-bomb guard (default: PIL's %(default)s)")
    run.add_argument("--max-shards", type=positive_int, help="stop each process after this many new shards (resume later)")
    run.add_argument("--overwrite", action="store_true", help="discard an existing output and unfinished work")
    run.add_argument("--keep-work", action="store_true", help="keep <output>.work (shards, face crops) after the merge")
    run.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..onnx.runtime import check_runtime
    from ..extraction.runner import extract_features, process_state, rows_from_frames_folder
    from ..extraction.video import extract_video_features

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if bool(args.frames) == bool(args.video):
        raise UserError("give either --frames (a frames folder) or --video")
    if args.annotations and args.test_list:
        raise UserError("give --annotations or --test-list, not both")
    outputs.check_claimable(args.output, "--output")  # a folder abaw_hf did not write is refused before any work
    output = args.output / check_split_name(args.split) if args.split else args.output
    outputs.check_claimable(output, "--output")
    extractors = create_extractors(args.extractor, random_init=args.random_init, allow_pickle=args.allow_pickle,
                                   input_sizes=parse_input_sizes(args.input_size), audio_window=args.audio_window)
    reads_sound = any(e.modality == "audio" for e in extractors)
    if args.videos and (args.video or not reads_sound):
        raise UserError("--videos gives the sound of a --frames folder to audio: extractors; "
                        + ("with --video the sound is the video's own" if args.video else "no audio: extractor is given"))
    check_runtime(args.runtime, args.onnx_dir)
    if args.split:  # a split that disagrees with the others of this feature set is refused before any work
        check_new_split(args.output, args.split, {e.name: e.dim for e in extractors},
                        {e.name: e.provenance() for e in extractors})
    options = dict(
        shard_size=args.shard_size, batch_size=args.batch_size, num_workers=args.num_workers,
        precision=args.precision, device=args.device, channels_last=args.channels_last,
        max_shards=args.max_shards, overwrite=args.overwrite, keep_work=args.keep_work,
        min_image_size=args.min_image_size, max_image_pixels=args.max_image_pixels, progress=not args.no_progress,
        runtime=args.runtime, onnx_dir=args.onnx_dir,
    )
    # one writer per output: a second `extract` into it is refused, naming this one (the main process holds it);
    # with --split the feature set's root (its splits, dataset_dict.json) is claimed too
    with outputs.writing(output, "--output", main_process=process_state().is_main_process,
                         root=args.output if args.split else None):
        if args.video:
            result = extract_video_features(args.video, extractors, output, detector=args.detector,
                                            face_size=args.face_size, faces=args.faces, **options)
        else:
            if args.annotations:
                rows = read_mtl_annotations(args.annotations)
            elif args.test_list:
                rows = read_mtl_test_list(args.test_list)
            else:
                rows = rows_from_frames_folder(args.frames, Path(args.image_pattern).suffix or ".jpg")
            audio_sources = None
            if reads_sound and args.videos:  # without --videos, extract_features says to give it
                from ..extraction.audio import sources_from_folder

                audio_sources = sources_from_folder(rows.video.tolist(), args.videos)
            result = extract_features(rows, args.frames, extractors, output, image_pattern=args.image_pattern,
                                      allow_missing_images=args.allow_missing_images, audio_sources=audio_sources,
                                      **options)
    report = result.report
    if not report:  # not the main process
        return 0
    registered = ""
    if args.split and result.complete:
        registered = f"; {args.output} now has splits {register_split(args.output, args.split)}"
    print(
        f"{'done' if result.complete else 'partial'}: {report['shards']['done']}/{report['shards']['total']} shards, "
        f"{report['rows']} rows, {len(report['failed_files'])} unusable files, {len(report['missing_images'])} missing "
        f"images, {len(report['frames_without_face'])} frames without a face, "
        f"{len(report['converted_files'])} converted"
        + (f", {len(report['failed_videos'])} failed videos" if report.get("failed_videos") else "")
        + (f", {len(report['missing_audio'])} videos/extractors without sound" if report.get("missing_audio") else "")
        + f"; report: {result.report_path}{registered}"
    )
    return 0 if result.complete else 3
