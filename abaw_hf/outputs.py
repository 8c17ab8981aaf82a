"""Output folders: which ones abaw_hf may replace, and one writer at a time.

Every folder a command writes (``build --output`` / ``--parquet-dir``, ``extract --output`` and its ``.work``
folder, ``train --output_dir``, ``tune --output``, ``export-onnx -o``, ``push --staging-dir``) goes through here.

* **Ownership by a marker only.** When abaw_hf creates an output folder (or takes an empty one) it writes the
  marker file :data:`MARKER` into it. A folder is ours to write into, resume or replace (``--overwrite``) only when
  it carries that marker; any other folder that holds anything is refused with a message listing what it holds.
  No guess is made from file names: a user's folder with a ``README.md`` or a ``work.json`` is still the user's.
* **One writer per output.** :func:`writing` takes an exclusive lock (``filelock``, the lock the ONNX cache takes)
  on the folder for the whole command; a second writer is refused at once with the first one's PID, start time and
  command. The lock is released when the command ends, however it ends (the kernel drops it with the process).

The bookkeeping files all start with :data:`MARKER` (``.abaw_hf_output``), so uploads leave them out with one
pattern and :func:`entries` skips them when it asks whether a folder holds anything.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

from .errors import UserError, check_output_folder, require_path

MARKER = ".abaw_hf_output"  # written by abaw_hf when it creates (or takes an empty) output folder
LOCK_FILE = MARKER + ".lock"  # the exclusive lock of the one writer
OWNER_FILE = MARKER + ".owner"  # who holds the lock: pid, start time, command (JSON)
BOOKKEEPING_PATTERN = MARKER + "*"  # every bookkeeping file: left out of uploads and of `entries`
_SHOWN = 8


class OutputFolderError(UserError, FileExistsError):
    """An output folder abaw_hf did not write (no marker), or a file/link where a folder is expected."""


class OutputBusyError(UserError, RuntimeError):
    """Another abaw_hf process is writing this output folder right now."""


def _is_bookkeeping(path: Path) -> bool:
    return path.name.startswith(MARKER)


def entries(path: str | os.PathLike) -> list[Path]:
    """What a folder holds besides our bookkeeping files (sorted; [] for a missing folder)."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(child for child in path.iterdir() if not _is_bookkeeping(child))


def is_marked(path: str | os.PathLike) -> bool:
    """The folder carries abaw_hf's marker (abaw_hf created it, or took it while it was empty)."""
    return (Path(path) / MARKER).is_file() and not (Path(path) / MARKER).is_symlink()


def describe_contents(path: str | os.PathLike) -> str:
    """``notes.txt, thesis.pdf, data/ and 3 more``: what a folder holds, for a refusal message."""
    found = entries(path)
    names = [child.name + ("/" if child.is_dir() else "") for child in found[:_SHOWN]]
    more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    return ", ".join(names) + more


def check_claimable(path: str | os.PathLike, flag: str = "--output") -> Path:
    """Before any work, writing nothing: ``path`` is a new folder, an empty one, or one abaw_hf wrote (marker).

    Anything else (a file, a link, a folder with the user's files) is an `OutputFolderError` listing what is there.
    """
    path = require_path(path, flag)
    if path.is_symlink():
        raise OutputFolderError(f"{flag} {path} is a link; give the folder itself (abaw_hf never writes through links)")
    check_output_folder(path, flag)
    if path.is_dir() and not is_marked(path) and entries(path):
        raise OutputFolderError(
            f"{flag} {path} is not a folder abaw_hf wrote (no {MARKER} marker) and it holds: "
            f"{describe_contents(path)}; move them away or choose another {flag} (nothing was changed)"
        )
    return path


def claim(path: str | os.PathLike, flag: str = "--output", command: str | None = None) -> Path:
    """`check_claimable`, then create the folder (if needed) and write the marker: from now on it is ours."""
    path = check_claimable(path, flag)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.is_file():
        record = {"written_by": "abaw_hf", "command": command or _command(), "created": _now()}
        marker.write_text(json.dumps(record) + "\n")
    return path


def clear(path: str | os.PathLike, flag: str = "--overwrite") -> None:
    """``--overwrite``: delete what an output folder holds, only when abaw_hf wrote it (marker) or it is empty.

    The marker and the lock stay (the lock may be held by this very command); a missing folder is left missing.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    check_claimable(path, flag)
    for child in entries(path):
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


# ----- one writer per output ---------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _command() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([name, *sys.argv[1:]])[:300]


def _holder(path: Path) -> str:
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
        return f"PID {owner['pid']}, started {owner['started']}: {owner['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "details not yet recorded"


@contextlib.contextmanager
def locked(path: str | os.PathLike, flag: str = "--output", command: str | None = None) -> Iterator[Path]:
    """Hold the exclusive writer lock of an existing output folder; a second writer gets `OutputBusyError` naming
    the first one's PID, start time and command."""
    from filelock import FileLock, Timeout

    path = Path(path)
    lock = FileLock(str(path / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputBusyError(
            f"{flag} {path} is being written by another abaw_hf process ({_holder(path)}); wait for it to finish "
            f"or choose another {flag}"
        ) from None
    owner = path / OWNER_FILE
    try:
        owner.write_text(json.dumps({"pid": os.getpid(), "started": _now(), "command": command or _command()}))
        yield path
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


@contextlib.contextmanager
def writing(path: str | os.PathLike, flag: str = "--output", command: str | None = None, *,
            main_process: bool = True, root: str | os.PathLike | None = None) -> Iterator[Path]:
    """The whole life of a command's output folder: claim it (marker), hold its writer lock, and on the way out
    remove it again when this command created it and left nothing in it (a refused or failed run leaves no trace).

    ``root``: a folder above ``path`` that the command writes too (a feature set's root, holding the splits):
    claimed first, and removed on the way out on the same terms. ``main_process=False`` (the other processes of an
    ``accelerate launch`` run) only checks: the main process holds the lock for the whole run.
    """
    folders = [check_claimable(root, flag)] if root is not None else []
    folders.append(check_claimable(path, flag))
    if not main_process:
        yield folders[-1]
        return
    created = [folder for folder in folders if not folder.exists()]
    for folder in folders:
        claim(folder, flag, command)
    try:
        with locked(folders[-1], flag, command):
            yield folders[-1]
    except OutputBusyError:
        created = []  # the folder is the other writer's
        raise
    finally:
        for folder in reversed(created):
            if folder.is_dir() and not entries(folder):
                with contextlib.suppress(OSError):
                    shutil.rmtree(folder)
