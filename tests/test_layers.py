"""The package's layers, read from the source with ast (nothing is imported): no import cycle among abaw_hf's
modules, counting the imports inside functions too; the lower packages never import the ones above them; modeling/
imports only its own files (``save_pretrained`` copies it as the model's remote code)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "abaw_hf"
# package data, not a module: the Space repo's own app.py, a script there (a leaf calling the command line, like
# scripts/*.py: test_cli_layer.test_scripts_are_leaves_calling_the_command_line)
SCRIPTS_IN_PACKAGE = (PACKAGE / "space_template",)


def _modules() -> dict[str, tuple[Path, bool]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if any(folder in path.parents for folder in SCRIPTS_IN_PACKAGE):
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _targets(module: str, is_package: bool, node: ast.AST, modules) -> list[str]:
    """The abaw_hf modules one import statement names (``from pkg import submodule`` names the submodule)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        names = [f"{name}.{alias.name}" if f"{name}.{alias.name}" in modules else name for alias in node.names]
    targets = []
    for name in names:
        if name != "abaw_hf" and not name.startswith("abaw_hf."):
            continue
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name != module:
            targets.append(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    """module -> the abaw_hf modules it imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name].update(_targets(name, is_package, node, modules))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_relative_and_function_level_imports():
    graph = import_graph()
    assert "abaw_hf.faces.backends" in graph["abaw_hf.faces.detection"]  # from .backends import ...
    assert "abaw_hf.faces.wild" in graph["abaw_hf.faces.detection"]  # inside _mtcnn_backend
    assert "abaw_hf.onnx.sessions" in graph["abaw_hf.onnx.export"]  # inside export_model


def test_no_import_cycle():
    loops = cycles(import_graph())
    assert not loops, "import cycles among abaw_hf modules: " + "; ".join(" <-> ".join(loop) for loop in loops)


# A package on the left never imports one on the right: the foundations know nothing of what runs them.
ABOVE = {
    "abaw_hf.package_data": ("abaw_hf",),  # where the data files lie: imports nothing of abaw_hf
    "abaw_hf.audio": ("abaw_hf",),  # the one sound reader, below the audio encoders, the extraction and the pipeline
    # the one OpenFace CSV reader, below the fau extractor and build --openface-dir (data.converters)
    "abaw_hf.openface": ("abaw_hf.extractors", "abaw_hf.data", "abaw_hf.extraction", "abaw_hf.pipeline",
                         "abaw_hf.cli"),
    "abaw_hf.faces": ("abaw_hf.pipeline", "abaw_hf.space", "abaw_hf.training", "abaw_hf.hub", "abaw_hf.cli",
                      "abaw_hf.onnx", "abaw_hf.extraction", "abaw_hf.data", "abaw_hf.evaluation"),
    "abaw_hf.metrics": ("abaw_hf.pipeline", "abaw_hf.space", "abaw_hf.training", "abaw_hf.hub", "abaw_hf.cli",
                        "abaw_hf.onnx", "abaw_hf.extraction", "abaw_hf.data", "abaw_hf.evaluation"),
    "abaw_hf.extractors": ("abaw_hf.pipeline", "abaw_hf.space", "abaw_hf.training", "abaw_hf.hub", "abaw_hf.cli",
                           "abaw_hf.evaluation", "abaw_hf.extraction", "abaw_hf.data"),  # sound: abaw_hf.audio
    "abaw_hf.onnx": ("abaw_hf.pipeline", "abaw_hf.space", "abaw_hf.training", "abaw_hf.hub", "abaw_hf.cli"),
    "abaw_hf.data": ("abaw_hf.pipeline", "abaw_hf.space", "abaw_hf.training", "abaw_hf.cli",
                     "abaw_hf.extraction"),  # hub: Hub access; build --extractor runs extraction/ from cli/build
    "abaw_hf.hub": ("abaw_hf.space", "abaw_hf.cli", "abaw_hf.pipeline", "abaw_hf.training"),  # the template: package_data
    "abaw_hf.pipeline": ("abaw_hf.space", "abaw_hf.training", "abaw_hf.hub", "abaw_hf.cli"),
}


def _is_in(module: str, package: str) -> bool:
    return package == "abaw_hf" or module == package or module.startswith(package + ".")


def test_no_loop_between_packages():
    """The packages (and top-level modules) of abaw_hf, each drawn as one node, form no loop either: a floor plan."""
    def node(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(node(module), set()).update(node(t) for t in targets if node(t) != node(module))
    for targets in list(packages.values()):
        for target in targets:
            packages.setdefault(target, set())
    loops = cycles(packages)
    assert not loops, "packages importing each other: " + "; ".join(" <-> ".join(loop) for loop in loops)


@pytest.mark.parametrize("lower", sorted(ABOVE))
def test_lower_packages_do_not_import_upward(lower):
    upward = []
    for module, targets in import_graph().items():
        if module != lower and not module.startswith(lower + "."):
            continue
        for target in sorted(targets):
            inside = target == lower or target.startswith(lower + ".")
            if not inside and any(_is_in(target, above) for above in ABOVE[lower]):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports upward: " + ", ".join(upward)


def test_modeling_imports_only_its_own_files():
    """``save_pretrained`` copies modeling/'s files beside the weights as remote code: only single-dot relative
    imports. (``__init__.py``, not copied, registers the Auto classes through abaw_hf's import hook.)"""
    for path in sorted((PACKAGE / "modeling").glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1, f"{path.name}:{node.lineno} imports from outside modeling/"
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(name.split(".")[0] == "abaw_hf" for name in names), f"{path.name}:{node.lineno}"
