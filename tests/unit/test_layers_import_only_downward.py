"""The layers import only downward (STYLE.md, "Layers"):

    entry points (modelferry/cli.py, commands/ with the process assembly in commands/runtime.py, dev/)
      -> watcher/ -> workflows/ -> activities/ -> modelferry's shared types and pure core

The pure core imports neither the Kubernetes client nor temporalio; activities never import
workflows or the watcher; workflows reach activities only through `imports_passed_through`
(checked by the sandbox) and never the watcher. A new import that breaks a rule fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {"modelferry/cli.py"}
ENTRY_PACKAGES = ("modelferry/commands/", "modelferry/dev/")
ALLOWED = {
    # Test fixtures the embedded API server ships for other test tiers: they drive it with the client.
    ("modelferry/apiserver/testing.py", "kubernetes"),
    # What the two thin client modules (watcher/kube.py, activities/kube.py) share: loading the
    # client, its timeouts and the one mapping of its errors.
    ("modelferry/kubeclient.py", "kubernetes"),
}

FORBIDDEN = {
    "modelferry": {"activities", "workflows", "watcher", "kubernetes", "temporalio"},
    "activities": {"workflows", "watcher"},
    "workflows": {"watcher", "kubernetes"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _modules(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ENTRY_POINTS or rel.startswith(ENTRY_PACKAGES):
            continue
        out.append(rel)
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_a_layer_above_it(package: str) -> None:
    wrong = [
        f"{module} imports {name}"
        for module in _modules(package)
        for name in sorted(_imports(ROOT / module) & FORBIDDEN[package])
        if (module, name) not in ALLOWED
    ]
    assert wrong == []


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from activities.download import x\nimport kubernetes.client\n")
    assert _imports(bad) & FORBIDDEN["modelferry"] == {"activities", "kubernetes"}
