"""``train(config)``: the training run behind ``scripts/train.py``, ``abaw-hf train``, the ablation, benchmarks
and tests. One linear function in the manner of the accelerate examples; its pieces live beside it."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import is_tensorboard_available, parse_flag_from_env, set_seed
from tqdm.auto import tqdm

from .. import outputs
from ..data.windows import window_dataloader
from ..errors import ConfigError
from ..evaluation import format_metrics_table, predict_with_accelerator, score_predictions
from ..model_files import TRAIN_CONFIG_FILE
from ..modeling import AbawFusionModel
from ..modeling.tasks_abaw_fusion import registered_task_names
from .config import TrainConfig, model_config_from_train_config, save_train_config
from .data import (
    au_loss_weights_from_labels,
    check_eval_split,
    check_feature_columns,
    load_training_data,
)
from .reporting import ThroughputMeter, plot_training_curves, write_train_summary
from .runs import (
    TENSORBOARD_FOLDER,
    check_output_dir,
    latest_checkpoint,
    remove_training_outputs,
    run_folder_lock,
    run_is_finished,
    save_best_model,
    save_checkpoint,
)
from .steps import exponential_or_cosine_scheduler, perturb_features, step_seed


def process_state():
    """accelerate's PartialState (device, process rank) before the Accelerator exists, set up as Accelerator()
    will set it up: only AcceleratorState reads ACCELERATE_USE_CPU, and a PartialState made without it would
    turn a CPU multi-process launch into independent single-process runs."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def check_accelerator_settings(config: TrainConfig, device: torch.device) -> None:
    """Settings accelerate would accept and then quietly not apply: fp16 without an accelerator (it trains in
    fp32 on a CPU) and the tensorboard tracker without its package (nothing is logged)."""
    if config.mixed_precision == "fp16" and device.type == "cpu":
        raise ConfigError("--mixed_precision fp16 needs a GPU (this run would train on the CPU, in fp32); "
                          "use --mixed_precision bf16 or no")
    if config.tracker == "tensorboard" and not is_tensorboard_available():
        raise ConfigError("--tracker tensorboard needs the tensorboard package (pip install 'abaw_hf[tensorboard]'); "
                          "or use --tracker jsonl")


def train(config: TrainConfig) -> dict:
    """Train one model (or, with ``folds`` > 1 and no ``fold``, one per fold) and return what the run did:
    ``best`` validation metrics, ``history``, ``output_dir`` and the throughput summary; a run stopped by
    ``max_steps`` returns ``stopped_at_step`` and its ``checkpoint``, a finished one ``finished``."""
    if config.folds > 1 and config.fold is None:
        return train_folds(config)

    # every check that needs no data comes first, before anything is loaded or written
    resume = check_output_dir(config)
    check_accelerator_settings(config, process_state().device)
    output_dir = Path(config.output_dir)
    if resume is not None and run_is_finished(resume[1], config):
        checkpoint, state = resume
        process_state().print(
            f"{output_dir}: the run is finished (epoch {state['epoch']}/{config.epochs}, {checkpoint}); "
            "nothing to resume. Raise --epochs to train further."
        )
        return {"finished": True, "best": state["best"], "history": state["history"], "output_dir": str(output_dir),
                "checkpoint": str(checkpoint)}
    with run_folder_lock(config, main_process=process_state().is_main_process):
        return _train(config, check_output_dir(config))  # checked again under the lock: no run slipped in


def _train(config: TrainConfig, resume) -> dict:
    """The run itself, holding the run folder's writer lock (`train`)."""
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=None if config.tracker in ("none", "jsonl") else config.tracker,
        project_dir=config.output_dir,
    )
    # record the precision that runs, not the one asked for
    config = dataclasses.replace(config, mixed_precision=accelerator.mixed_precision)
    set_seed(config.seed)

    # data: features and labels as a DatasetDict; checks happen before any training
    data, provenance = load_training_data(config)
    train_split, eval_split = data[config.train_split], data[config.eval_split]
    feature_dims = check_feature_columns(train_split, config.features, config.train_split)
    check_feature_columns(eval_split, config.features, config.eval_split)
    check_eval_split(eval_split, config.eval_split)
    au_weights = (
        au_loss_weights_from_labels(train_split.with_format("numpy")["aus"])
        if config.au_loss_weighting == "inverse_rate"
        else [1.0] * 12
    )

    model_config = model_config_from_train_config(config, feature_dims, au_weights, provenance)
    model_config.tasks = registered_task_names()  # a task added to the table trains too (None: ABAW's three)

    # windows of consecutive available frames; evaluation windows tile every frame exactly once
    window_args = dict(window_size=config.window, max_gap=config.max_gap, feature_names=config.features,
                       max_span=model_config.max_window, num_workers=config.num_workers)
    train_loader = window_dataloader(train_split, stride=config.train_stride, mode="train", batch_size=config.batch_size,
                                     seed=config.seed, **window_args)
    train_sampler = train_loader.sampler  # an EpochShuffleSampler: set_epoch below, before accelerate wraps the loader
    eval_loader = window_dataloader(eval_split, mode="eval", batch_size=config.eval_batch_size, **window_args)

    model = AbawFusionModel(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    # the prepared scheduler steps once per process per optimizer step, so count the unsharded batches
    steps_per_epoch = math.ceil(len(train_loader) / config.gradient_accumulation_steps)
    scheduler = exponential_or_cosine_scheduler(optimizer, config, steps_per_epoch)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler
    )

    # the first write into output_dir, once every process has passed its checks
    accelerator.wait_for_everyone()
    if config.overwrite and accelerator.is_main_process:
        removed = remove_training_outputs(output_dir)
        if removed:
            accelerator.print(f"--overwrite: removed {len(removed)} file(s)/folder(s) of the earlier run in {output_dir}")
    accelerator.wait_for_everyone()
    if config.tracker == "tensorboard":
        accelerator.init_trackers(TENSORBOARD_FOLDER)

    start_epoch, resume_batch, global_step, history, best = 0, 0, 0, [], None
    if resume is not None:
        checkpoint, state = resume
        accelerator.load_state(str(checkpoint))
        start_epoch, resume_batch = state["epoch"], state["batch_in_epoch"]
        global_step, history, best = state["global_step"], state["history"], state["best"]
        accelerator.print(f"resumed from {checkpoint} at epoch {start_epoch}, batch {resume_batch}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_train_config(config, output_dir / TRAIN_CONFIG_FILE)
    log_path = output_dir / "metrics.jsonl"
    if accelerator.is_main_process and not config.resume and log_path.exists():
        log_path.unlink()  # a fresh run starts a fresh log

    stopped, throughput = False, ThroughputMeter()
    for epoch in range(start_epoch, config.epochs):
        model.train()
        # the order depends on (seed, epoch) only: same on every process and after a resume (the prepared
        # loader re-applies its own epoch counter to the sampler, so set both)
        train_sampler.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(train_loader, resume_batch) if resume_batch else train_loader
        progress = tqdm(
            total=len(train_loader), initial=resume_batch, desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (config.progress and accelerator.is_local_main_process),
        )
        loss_sum, loss_count = torch.zeros((), device=accelerator.device), 0
        if resume_batch:  # the part of this epoch's mean loss that was logged before the interruption
            loss_sum += state["epoch_loss_sum"] / accelerator.num_processes
            loss_count = state["epoch_loss_count"]
        for batch_in_epoch, batch in enumerate(loader, start=resume_batch):
            generator = torch.Generator().manual_seed(step_seed(config.seed, epoch, batch_in_epoch, accelerator.process_index))
            torch.manual_seed(step_seed(config.seed, epoch, batch_in_epoch, accelerator.process_index))
            batch.pop("row_index")
            perturb_features(batch, config.feature_noise_prob, config.feature_noise_scale, generator)
            with accelerator.accumulate(model):
                outputs = model(**batch)
                if not torch.isfinite(outputs.loss):
                    raise FloatingPointError(
                        f"loss is {outputs.loss.item()} at epoch {epoch}, batch {batch_in_epoch} (global step "
                        f"{global_step}); stopping — the last checkpoint in {output_dir / 'checkpoints'} is intact"
                    )
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            loss_sum += outputs.loss.detach()
            loss_count += 1
            throughput.update(int(batch["attention_mask"].sum()))
            progress.update(1)
            if accelerator.sync_gradients:
                global_step += 1
                if config.max_steps is not None and global_step >= config.max_steps:
                    stopped = True
                    batch_after = batch_in_epoch + 1
                    break
        progress.close()
        resume_batch = 0
        if stopped:
            finished_epoch = batch_after >= len(train_loader)
            epoch_loss_sum = accelerator.reduce(loss_sum, reduction="sum").item()
            checkpoint = save_checkpoint(accelerator, output_dir, {
                "epoch": epoch + 1 if finished_epoch else epoch,
                "batch_in_epoch": 0 if finished_epoch else batch_after,
                "global_step": global_step, "history": history, "best": best,
                "epoch_loss_sum": epoch_loss_sum, "epoch_loss_count": loss_count,
                "train_config": config.__dict__,
            })
            summary = write_train_summary(accelerator, model, output_dir, throughput, best=best, stopped_at_step=global_step)
            accelerator.print(f"stopped at step {global_step} (--max_steps); state saved to {checkpoint}; "
                              "continue with --resume latest")
            accelerator.end_training()
            return {"stopped_at_step": global_step, "checkpoint": str(checkpoint), **summary}

        # evaluation: every (video, frame) exactly once, gathered across processes
        predictions = predict_with_accelerator(accelerator, model, eval_loader, len(eval_split))
        metrics = score_predictions(predictions, eval_split)
        train_loss = accelerator.reduce(loss_sum, reduction="sum").item() / max(1, loss_count * accelerator.num_processes)
        row = {"epoch": epoch + 1, "step": global_step, "train_loss": train_loss,
               "lr": scheduler.get_last_lr()[0], **{f"eval_{k}": v for k, v in metrics.items()}}
        history.append(row)
        if accelerator.is_main_process:
            with log_path.open("a") as log:
                log.write(json.dumps(row) + "\n")
        accelerator.log(row, step=global_step)  # tensorboard, when it is the tracker
        accelerator.print(
            f"epoch {epoch + 1}: train loss {train_loss:.4f} | P_MTL {metrics['p_mtl']:.4f} "
            f"(VA {metrics['va']:.3f}, EXPR {metrics['f1_expression']:.3f}, AU {metrics['f1_au']:.3f})"
        )
        if best is None or metrics["p_mtl"] > best["p_mtl"]:
            best = {**metrics, "epoch": epoch + 1}
            if accelerator.is_main_process:
                save_best_model(accelerator.unwrap_model(model), output_dir, best, config)
        save_checkpoint(accelerator, output_dir, {"epoch": epoch + 1, "batch_in_epoch": 0, "global_step": global_step,
                                                  "history": history, "best": best, "train_config": config.__dict__})
        accelerator.wait_for_everyone()

    summary = write_train_summary(accelerator, model, output_dir, throughput, best=best,
                                  eval_rows=len(predictions), eval_split_rows=len(eval_split))
    if accelerator.is_main_process:
        if config.plot and history:
            plot_training_curves(history, output_dir / "training_curves.png")
        (output_dir / "history.json").write_text(json.dumps(history, indent=2))
        accelerator.print(format_metrics_table(best, f"best epoch {best['epoch']} (validation)"))
    accelerator.end_training()
    return {"best": best, "history": history, "output_dir": str(output_dir), **summary}


def train_folds(config: TrainConfig) -> dict:
    """K video-disjoint models, one after the other, each in its own output_dir/fold-k."""
    fold_configs = []
    # the folds' parent folder is an output too: refused when abaw_hf did not write it, marked when it is new
    (outputs.claim if process_state().is_main_process else outputs.check_claimable)(config.output_dir, "--output_dir")
    for fold in range(config.folds):
        fold_config = dataclasses.replace(config, fold=fold, output_dir=f"{config.output_dir}/fold-{fold}")
        if config.resume == "latest" and latest_checkpoint(Path(fold_config.output_dir)) is None:
            # a fold that had not reached its first checkpoint starts (again) from scratch
            fold_config = dataclasses.replace(fold_config, resume=None, overwrite=True)
        check_output_dir(fold_config)  # every fold folder is checked before the first fold trains
        fold_configs.append(fold_config)
    return {f"fold-{fold_config.fold}": train(fold_config) for fold_config in fold_configs}


