"""User errors, how every command line reports them, and the checks on the paths a user gives.

A problem with what the user gave (a file, a row, a flag, a config value) is a `UserError`: the command prints
one or two lines naming the thing and what to do, and exits with status 2. Anything else is a bug and keeps
its traceback. `--debug` (or ``ABAW_HF_DEBUG=1``) shows the traceback of a user error too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Sequence

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"
DEBUG_ENV = "ABAW_HF_DEBUG"
# the one set of words a yes/no value accepts: training's boolean settings (flag and YAML) and $ABAW_HF_DEBUG
TRUE_WORDS = ("true", "yes", "y", "t", "1", "on")
FALSE_WORDS = ("false", "no", "n", "f", "0", "off")
_MAX_LINES = 2
_MAX_LINE_CHARS = 400


class UserError(Exception):
    """A problem with the user's input, shown as a message (exit status 2) rather than a traceback."""


class ConfigError(UserError, ValueError):
    """A configuration value (YAML key or flag) that is missing, unknown or of the wrong type."""


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    flag = DEBUG_FLAG in (sys.argv[1:] if argv is None else argv)
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() in TRUE_WORDS


def strip_debug_flag(argv: Sequence[str]) -> list[str]:
    return [item for item in argv if item != DEBUG_FLAG]


def _shorten(text: str) -> str:
    lines = [line.rstrip() for line in str(text).strip().splitlines() if line.strip()]
    if len(lines) > _MAX_LINES:  # e.g. a list of missing frames: the first lines say what and where
        lines = lines[:_MAX_LINES] + [f"  ... ({len(lines) - _MAX_LINES} more lines; --debug shows all)"]
    return "\n".join(line if len(line) <= _MAX_LINE_CHARS else line[: _MAX_LINE_CHARS - 3] + "..." for line in lines)


def user_message(error: BaseException) -> str | None:
    """The message for an error that is the user's to fix, or None for a bug (which keeps its traceback)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, UnicodeDecodeError):
        return f"a text file is not UTF-8 ({error.reason} at byte {error.start}); save it as UTF-8 and retry"
    if isinstance(error, OSError):
        # files the user named (missing, unreadable, a folder where a file is expected, disk full) and the
        # OSError that transformers / huggingface_hub raise for a model id that is neither a folder nor cached
        if error.filename is not None:
            return f"{error.filename}: {error.strerror or error}"
        return str(error) or type(error).__name__
    if isinstance(error, MemoryError):
        return "out of memory; use a smaller --batch-size or fewer frames"
    return None


def report_user_error(prog: str, error: BaseException) -> int:
    message = user_message(error)
    print(f"{prog}: error: {_shorten(message or str(error))}", file=sys.stderr)
    return EXIT_USER_ERROR


def run_command(prog: str, function: Callable[[], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's work; a user error becomes a message and exit status 2 (unless --debug)."""
    debug = debug_requested(argv)
    try:
        return int(function() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as error:  # noqa: BLE001 - sorted into user errors and bugs below
        if debug or user_message(error) is None:
            raise
        return report_user_error(prog, error)


# ----- output paths: checked before the work starts, so finished work is never lost to an unwritable output ----


def require_path(path, what: str = "path") -> Path:
    """A path the user gave, never empty: ``Path("")`` means the current folder, which nobody means by ''."""
    if path is None or not str(os.fspath(path) if isinstance(path, os.PathLike) else path).strip():
        raise UserError(f"{what}: an empty path; give a file or folder name ('.' for the current folder)")
    return Path(path)


def check_output_file(path: str | os.PathLike, flag: str = "--output") -> Path:
    """A file the command will write: not a folder, and its folder can be created and written."""
    path = require_path(path, flag)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name (e.g. {path / 'out'}{path.suffix or ''})")
    parent = path.parent
    existing = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is not writable")
    return path


def check_output_folder(path: str | os.PathLike, flag: str = "--output") -> Path:
    """A folder the command will write into: not a file, and creatable/writable."""
    path = require_path(path, flag)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder")
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")
    return path


def read_text_file(path: str | os.PathLike, what: str = "file") -> str:
    """A user-given UTF-8 text file, with errors that name it (missing, a folder, not UTF-8)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a {what}")
    if not path.is_file():
        raise UserError(f"{path}: no such {what}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({error.reason}); save the {what} as UTF-8") from None
