"""The run folder: what training writes there (and so what ``--overwrite`` removes), its checkpoints and their
state, the checks before a run starts, and the best model saved with its card draft."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import outputs
from ..errors import ConfigError, UserError, read_text_file
from ..hub.card import render_model_card
from ..model_files import TRAIN_CONFIG_FILE
from ..model_loading import MODELING_FILES
from .config import TrainConfig, save_train_config

RUN_STATE_FILE = "abaw_run_state.json"


def write_run_state(checkpoint_dir: Path, state: dict) -> None:
    (checkpoint_dir / RUN_STATE_FILE).write_text(json.dumps(state, indent=2))


def save_checkpoint(accelerator, output_dir: Path, state: dict) -> Path:
    """``save_state`` into ``checkpoints/step-N`` with the run state ``--resume`` reads (epoch, batch, history)."""
    checkpoint = Path(output_dir) / "checkpoints" / f"step-{state['global_step']}"
    accelerator.save_state(str(checkpoint))
    if accelerator.is_main_process:
        write_run_state(checkpoint, state)
    return checkpoint


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoints/step-N`` of the run in ``output_dir``, or None."""
    steps = [path for path in (Path(output_dir) / "checkpoints").glob("step-*") if path.name[5:].isdigit()]
    return max(steps, key=lambda path: int(path.name[5:]), default=None)


def resolve_resume(resume: str, output_dir: Path, config: TrainConfig) -> tuple[Path, dict]:
    """Find the checkpoint to resume from and check it belongs to this run's setting."""
    path = Path(resume)
    if resume == "latest":
        path = latest_checkpoint(output_dir)
        if path is None:
            raise ConfigError(f"--resume latest: no checkpoint in {Path(output_dir) / 'checkpoints'}; "
                              "drop --resume to start a new run there")
    if not path.is_dir():
        raise ConfigError(f"--resume {resume}: no such checkpoint folder")
    state_file = path / RUN_STATE_FILE
    if not state_file.is_file():
        raise ConfigError(f"--resume {path}: not an abaw_hf training checkpoint (no {RUN_STATE_FILE})")
    try:
        state = json.loads(read_text_file(state_file, "checkpoint state file"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"--resume {path}: {RUN_STATE_FILE} is damaged ({error})") from None
    saved = state.get("train_config", {})
    for key in ("features", "fusion", "hidden_size", "num_hidden_layers", "window", "batch_size", "seed", "dataset"):
        if key in saved and saved[key] != getattr(config, key):
            raise ConfigError(
                f"--resume {path}: checkpoint was trained with {key}={saved[key]!r}, this run has {getattr(config, key)!r}"
            )
    return path, state


def run_is_finished(state: dict, config: TrainConfig) -> bool:
    """The checkpoint already completed every epoch this run asks for (``epoch`` counts completed epochs)."""
    return state["epoch"] >= config.epochs


# ----- run folders -------------------------------------------------------------------------------------------

# What training writes into its output_dir (a folder carrying abaw_hf's marker), and so what --overwrite removes;
# anything else the user put there later stays.
RUN_FILES = (
    TRAIN_CONFIG_FILE, "config.json", "model.safetensors", "model.safetensors.index.json", "eval_results.json",
    "README.md", "metrics.jsonl", "history.json", "train_summary.json", "training_curves.png",
)
TENSORBOARD_FOLDER = "runs"


def training_outputs(output_dir: str | Path) -> list[Path]:
    """The files and folders an earlier training run wrote in ``output_dir`` (empty for a new folder)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [folder / name for name in RUN_FILES + MODELING_FILES if (folder / name).is_file()]
    found += sorted(folder.glob("model-*-of-*.safetensors"))  # sharded weights
    found += sorted(path for path in (folder / "checkpoints").glob("step-*") if path.is_dir())
    found += sorted((folder / TENSORBOARD_FOLDER).rglob("events.out.tfevents.*"))
    return found


def remove_training_outputs(output_dir: str | Path) -> list[Path]:
    """--overwrite: delete what ``training_outputs`` names, then the folders it leaves empty; nothing else."""
    folder = Path(output_dir)
    removed = training_outputs(folder)
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for parent in (folder / "checkpoints", *sorted((folder / TENSORBOARD_FOLDER).rglob("*"), reverse=True),
                   folder / TENSORBOARD_FOLDER):
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return removed


def check_output_dir(config: TrainConfig) -> tuple[Path, dict] | None:
    """Before any work: ``output_dir`` is a writable folder holding no other run, unless --overwrite (replace it)
    or --resume (continue from a checkpoint) says what to do with it. Returns (checkpoint, state) to resume."""
    # a folder abaw_hf did not write (no marker, `abaw_hf.outputs`) is refused, listing what it holds
    output_dir = outputs.check_claimable(config.output_dir, "--output_dir")
    resume = resolve_resume(config.resume, output_dir, config) if config.resume else None
    inside = resume is not None and output_dir.resolve() in resume[0].resolve().parents
    if inside and config.overwrite:
        raise ConfigError(f"--overwrite would delete the checkpoint --resume {config.resume} continues from; "
                          "pass one of them")
    existing = training_outputs(output_dir)
    if existing and not config.overwrite and not inside:
        names = sorted({path.relative_to(output_dir).parts[0] for path in existing})
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise UserError(
            f"--output_dir {output_dir} holds another training run ({shown}); pass --overwrite to replace it, "
            "--resume latest to continue it, or choose another --output_dir"
        )
    return resume


def run_folder_lock(config: TrainConfig, main_process: bool = True):
    """The run folder for the whole run: marked as ours, and locked so that a second `train` on the same
    --output_dir is refused naming this one (the main process of an accelerate run holds the lock)."""
    return outputs.writing(config.output_dir, "--output_dir", main_process=main_process)


def save_best_model(model, output_dir: Path, metrics: dict, config: TrainConfig) -> Path:
    """save_pretrained (safetensors + config + modeling code), the metrics JSON and a drafted model card."""
    target = output_dir  # the run folder itself loads with from_pretrained; checkpoints live below it
    from ..console import no_progress_bars

    with no_progress_bars():  # no "Writing model shards" bar (--debug shows it)
        model.save_pretrained(target)
    (target / "eval_results.json").write_text(json.dumps(metrics, indent=2))
    save_train_config(config, target / TRAIN_CONFIG_FILE)

    card = render_model_card(target, metrics, synthetic=config.dataset == "synthetic")
    (target / "README.md").write_text(card)
    return target

