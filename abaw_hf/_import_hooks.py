"""Run a function when a module is first imported (a post-import hook), without importing it ourselves.

Used to register the fusion model with the transformers Auto classes only once transformers is in use, so that
``import abaw_hf`` stays light. Standard library only.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
import warnings
from typing import Callable

_pending: dict[str, list[Callable[[], None]]] = {}
_executing: set[str] = set()  # watched modules whose body is running now
_lock = threading.Lock()


def when_imported(module_name: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` right after ``module_name`` is imported; at once if it already is."""
    if module_name in sys.modules:
        callback()
        return
    with _lock:
        _pending.setdefault(module_name, []).append(callback)
        if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _PostImportFinder())


def is_executing(module_name: str) -> bool:
    """True while the body of a watched module runs (its definitions are not all there yet)."""
    return module_name in _executing


def _run_callbacks(module_name: str) -> None:
    with _lock:
        callbacks = _pending.pop(module_name, [])
    for callback in callbacks:
        try:
            callback()
        except Exception as error:  # a failing hook must not break the user's own import
            warnings.warn(f"abaw_hf: hook after importing {module_name} failed: {error!r}", stacklevel=3)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it asks the other finders and wraps the loader's exec_module of watched modules."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original_exec = loader.exec_module

        def exec_then_run_callbacks(module):
            _executing.add(fullname)
            try:
                original_exec(module)
            finally:
                _executing.discard(fullname)
                del loader.exec_module  # back to the class's method
            _run_callbacks(fullname)

        loader.exec_module = exec_then_run_callbacks  # this spec's loader instance only
        return spec
