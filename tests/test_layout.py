"""The layout keeps its promises: no import cycle, layers import downwards only, the CLI starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import resnet_probe

ROOTS = {  # package name -> source folder (cli/ and reports/ install as resnet_probe.cli / .reports)
    "resnet_probe": Path(resnet_probe.__file__).parent,
    "resnet_probe.cli": Path(resnet_probe.__file__).parent.parent / "cli",
    "resnet_probe.reports": Path(resnet_probe.__file__).parent.parent / "reports",
}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every resnet_probe module ``path`` imports, at any depth (function bodies and TYPE_CHECKING blocks too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n in modules}


def _graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(path, modules):
            if target != name and not name.startswith(target + "."):  # a package's own __init__ is no edge
                graph.add_edge(name, target)
    return graph


def test_no_import_cycles() -> None:
    cycles = list(nx.simple_cycles(_graph()))
    assert cycles == []


def test_layers_import_downwards_only() -> None:
    """cli -> reports -> resnet_probe: the library never imports the layers above it."""
    graph = _graph()
    upward = [
        (a, b)
        for a, b in graph.edges
        if not a.startswith(("resnet_probe.cli", "resnet_probe.reports"))
        and b.startswith(("resnet_probe.cli", "resnet_probe.reports"))
    ]
    reports_to_cli = [(a, b) for a, b in graph.edges if a.startswith("resnet_probe.reports") and b.startswith(
        "resnet_probe.cli")]
    assert upward == [] and reports_to_cli == []


def test_registry_does_not_import_the_zoo() -> None:
    graph = _graph()
    assert not any(b.startswith("resnet_probe.models.zoo") for b in graph.successors("resnet_probe.models.registry"))


@pytest.mark.parametrize(
    "code",
    [
        "import resnet_probe.cli.app",
        "import resnet_probe",
        "from resnet_probe.cli.app import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from resnet_probe.cli.app import main\ntry:\n    main(['models', '--json'])\nexcept SystemExit:\n    pass",
        "from resnet_probe.cli.app import main\ntry:\n    main(['lesion', '--help'])\nexcept SystemExit:\n    pass",
    ],
    ids=["import-cli", "import-package", "help", "models", "lesion-help"],
)
def test_cli_starts_without_torch_or_seaborn(code: str) -> None:
    heavy = "sorted(m for m in ('torch', 'seaborn', 'timm', 'scipy') if m in sys.modules)"
    probe = code + f"\nimport sys\nprint('HEAVY', {heavy})"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_the_image_analyses_do_not_import_networkx() -> None:
    # Only the path graph needs it (0.13 s of every run's start otherwise): gradients reaches
    # paths for shortest_window, and the plugin table imports every analysis.
    code = (
        "import sys\nimport resnet_probe.runner\nfrom resnet_probe.plugins import get_analysis\n"
        "[get_analysis(n) for n in ('evaluate', 'lesion', 'reorder', 'gradients', 'response-std')]\n"
        "print('NX', 'networkx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "NX False" in out
