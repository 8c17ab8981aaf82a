"""`abaw-hf build`: annotations + features -> a feature dataset (save_to_disk folder, Parquet folder, Hub).

Examples::

    abaw-hf build --synthetic --output data/synthetic
    abaw-hf build --annotations train=training_set_annotations.txt \\
        --annotations validation=validation_set_annotations.txt \\
        --features resnet18=resnet18.npy --features poster2=poster2.npy --openface-dir openface/ \\
        --output data/abaw --parquet-dir data/abaw_hub
    abaw-hf build --annotations train=train.txt --images cropped_aligned/ \\
        --extractor resnet18=resnet18_msceleb.pth --output data/abaw
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import outputs
from ..errors import UserError
from ..specs import create_extractors, parse_assignments
from .arguments import add_extractor_arguments, positive_int
from ..data.storage import check_feature_name, check_split_name, register_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("rows")
    source.add_argument("--synthetic", action="store_true", help="the embedded synthetic dataset (no inputs needed)")
    source.add_argument("--scale", type=float, default=1.0, help="synthetic size knob: x 50 videos of ~550 rows (6 is about s-Aff-Wild2: 307 videos, ~170k rows)")
    source.add_argument("--seed", type=int, default=0, help="synthetic seed")
    source.add_argument("--annotations", action="append", metavar="SPLIT=FILE", help="an MTL annotation file")
    source.add_argument("--test-list", metavar="FILE", help="the MTL.txt test list (split 'test', no labels)")
    source.add_argument(
        "--task-dir", action="append", metavar="TASK=DIR", help="single-task folder (va, expr or au), merged into --split"
    )
    source.add_argument("--split", default="train", type=check_split_name, help="split name for --task-dir rows")
    source.add_argument("--skip-bad-rows", action="store_true", help="drop malformed annotation rows (count them)")
    features = parser.add_argument_group("features")
    features.add_argument("--features", action="append", metavar="NAME=FILE.npy", help="authors' {video:{frame:vec}} file")
    features.add_argument("--openface-dir", metavar="DIR", help="OpenFace CSVs (<video>.csv) as the 'fau' column")
    add_extractor_arguments(features, required=False)
    features.add_argument("--images", metavar="DIR", help="cropped_aligned/ root for --extractor")
    features.add_argument("--allow-pickle", action="store_true",
                          help="fully unpickle trusted feature files and checkpoints that need more than numpy arrays")
    features.add_argument("--batch-size", type=positive_int, default=64)
    features.add_argument(
        "--allow-missing-features", action="store_true", help="store annotated frames without a vector as missing"
    )
    output = parser.add_argument_group("outputs")
    output.add_argument("--output", required=True, help="save_to_disk folder (one subfolder per split)")
    output.add_argument("--shard-size", type=positive_int, default=50_000, help="rows per Arrow shard")
    output.add_argument("--overwrite", action="store_true", help="replace an output built from other inputs")
    output.add_argument("--parquet-dir", help="also stage a Parquet folder with a dataset card (Hub layout)")
    output.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the Parquet folder as a dataset repo")
    output.add_argument("--private", action="store_true")


def _read_rows(args: argparse.Namespace) -> dict[str, Annotations]:
    from ..data.annotations import (SINGLE_TASKS, merge_annotations, read_mtl_annotations, read_mtl_test_list,
                              read_single_task_folder)

    rows: dict[str, Annotations] = {}
    named: dict[str, str] = {}

    def name_split(split: str, source: str) -> None:  # a split given twice would keep only one file's rows
        if split in named:
            raise UserError(f"split {split!r} is given twice ({named[split]} and {source}); give each split once "
                            "(merge the files, or name the second split differently)")
        named[split] = source

    for split, path in parse_assignments(args.annotations, "--annotations", "SPLIT=FILE"):
        check_split_name(split, "--annotations")
        name_split(split, f"--annotations {split}={path}")
    if args.test_list:
        name_split("test", f"--test-list {args.test_list}")
    if args.task_dir:
        name_split(args.split, f"--task-dir (--split {args.split})")
    for split, path in parse_assignments(args.annotations, "--annotations", "SPLIT=FILE"):
        rows[split] = read_mtl_annotations(path, skip_bad_rows=args.skip_bad_rows)
    if args.test_list:
        rows["test"] = read_mtl_test_list(args.test_list)
    tasks = parse_assignments(args.task_dir, "--task-dir", "TASK=DIR")
    for task, folder in tasks:
        if task not in SINGLE_TASKS:
            raise UserError(f"--task-dir {task}={folder}: unknown task {task!r}; use one of {', '.join(SINGLE_TASKS)}")
    if len({task for task, _ in tasks}) != len(tasks):
        raise UserError(f"--task-dir names a task twice ({', '.join(task for task, _ in tasks)}); give each task once")
    task_tables = [read_single_task_folder(folder, task, skip_bad_rows=args.skip_bad_rows) for task, folder in tasks]
    if task_tables:
        rows[args.split] = merge_annotations(task_tables)
    for split, table in rows.items():
        counts = table.label_counts()
        skipped = f", {table.num_skipped} malformed rows skipped" if table.num_skipped else ""
        print(f"{split}: {counts['rows']:,} rows (VA {counts['va']:,}, expr {counts['expression']:,}, AU {counts['au']:,}){skipped}")
        for message in table.skipped:
            print(f"  skipped {message}")
    return rows


def run(args: argparse.Namespace) -> int:
    """Check every output folder first (a folder abaw_hf did not write is refused before any work), then build
    holding the output's writer lock (a second `build` into it is refused, naming this one)."""
    output = outputs.check_claimable(args.output, "--output")
    if args.parquet_dir or args.push_to_hub:
        outputs.check_claimable(_parquet_folder(args, output), "--parquet-dir")
    with outputs.writing(output, "--output"):
        return _build(args, output)


def _parquet_folder(args: argparse.Namespace, output: Path) -> Path:
    return Path(args.parquet_dir) if args.parquet_dir else output.with_name(output.name + "_hub")


def _build(args: argparse.Namespace, output: Path) -> int:
    import datasets  # here, not at the top: `abaw-hf build --help` stays light

    from ..data.builder import build_from_arrays, image_paths
    from ..data.converters import join_features, read_feature_dict_npy, read_openface_folder
    from ..extraction.runner import extract_features

    if args.synthetic:
        from ..data.synthetic import make_synthetic_dataset

        others = [flag for flag, value in (("--annotations", args.annotations), ("--test-list", args.test_list),
                  ("--task-dir", args.task_dir), ("--features", args.features), ("--openface-dir", args.openface_dir),
                  ("--extractor", args.extractor)) if value]
        if others:
            raise UserError(f"--synthetic makes its own rows and features; drop {', '.join(others)}")

        if outputs.entries(output) and not args.overwrite:
            raise UserError(f"--output {output} is not empty (an earlier build); pass --overwrite to replace it")
        try:
            built = make_synthetic_dataset(scale=args.scale, seed=args.seed)
        except ValueError as error:
            raise UserError(f"--scale {args.scale}: {error}") from None
        if args.overwrite:
            outputs.clear(output)
        built.save_to_disk(str(output))
    else:
        rows = _read_rows(args)
        if not rows:
            raise UserError("nothing to build: give --synthetic, --annotations, --test-list or --task-dir")
        feature_args = bool(args.features or args.openface_dir)
        if feature_args == bool(args.extractor):
            raise UserError("give either feature files (--features/--openface-dir) or --extractor with --images")
        built = {}
        if args.extractor:
            if not args.images:
                raise UserError("--extractor needs --images (the cropped_aligned/ root)")
            for table in rows.values():  # every missing image of every split, before any work starts
                image_paths(table, args.images)
            extractors = create_extractors(args.extractor, random_init=args.random_init, allow_pickle=args.allow_pickle)
            for split, table in rows.items():  # the images -> extractors -> dataset path of `abaw-hf extract`
                result = extract_features(
                    table, args.images, extractors, output / split, batch_size=args.batch_size,
                    shard_size=args.shard_size, overwrite=args.overwrite, split=split, runtime="torch",
                )  # fmt: skip
                built[split] = result.dataset
                unusable = result.report["failed_files"]
                if unusable:  # one bad file never kills the build: a missing vector, named in the report
                    print(f"{split}: {len(unusable)} unusable images stored as missing vectors "
                          f"(first: {unusable[0]['image']}: {unusable[0]['reason']}); report: {result.report_path}")
        else:
            assignments = parse_assignments(args.features, "--features", "NAME=FILE.npy")
            for name, _ in assignments:
                check_feature_name(name, "--features")
            tables = [read_feature_dict_npy(path, name, allow_pickle=args.allow_pickle) for name, path in assignments]
            if args.openface_dir:
                tables.append(read_openface_folder(args.openface_dir))
            joined = {}
            problems = []
            for split, table in rows.items():  # join every split first: all missing frames are listed together
                try:
                    joined[split] = join_features(table, tables, allow_missing=args.allow_missing_features)
                except ValueError as error:
                    problems.append(f"[{split}] {error}")
            if problems:
                raise UserError("\n".join(problems))
            for split, (vectors, present, report) in joined.items():
                print(f"{split}: {report.summary()}")
                built[split] = build_from_arrays(
                    rows[split], vectors, output / split, present=present, shard_size=args.shard_size,
                    overwrite=args.overwrite, split=split, source=json.dumps([t.source for t in tables]),
                )  # fmt: skip
        for split in built:
            register_split(output, split)
        built = datasets.DatasetDict(built)
    print(f"saved {', '.join(f'{k}: {len(v):,} rows' for k, v in built.items())} to {output}")
    if args.parquet_dir or args.push_to_hub:
        from ..data.publish import push_dataset_to_hub, stage_parquet_folder

        folder = _parquet_folder(args, output)
        with outputs.writing(folder, "--parquet-dir"):
            stage_parquet_folder(built, folder, repo_id=args.push_to_hub or "<org>/<dataset>")
        print(f"staged Parquet + dataset card in {folder}")
        if args.push_to_hub:
            print(push_dataset_to_hub(folder, args.push_to_hub, private=args.private))
    return 0
