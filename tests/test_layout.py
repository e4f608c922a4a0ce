"""The package's imports point one way, as docs/architecture.md draws them: a module never
imports one listed above it, so a low module cannot come to depend on a high one."""

import ast
from pathlib import Path

import torchwork

PACKAGE = Path(torchwork.__file__).parent
# From the top (the command line) down; each imports only what is below it.
LAYERS = [
    "cli",
    "workflow",
    "serve",
    "export",
    "eject",
    "report",
    "runfolder",
    "importance",
    "intervals",
    "calibration",
    "decision",
    "predict",
    "checkpoint",
    "engine",
    "optim",
    "models",
    "data",
    "kinds",
    "tables",
    "notebook",
    "plots",
    "metrics",
    "solve",
    "distributed",
    "settings",
    "config",
    "registry",
    "fileio",
    "machine",
    "errors",
]


def _imported(tree: ast.AST) -> set[str]:
    """The torchwork modules (first part of their name) that a file imports."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "torchwork":
                found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "torchwork" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_module_is_in_a_layer():
    tops = {p.stem for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to LAYERS and the docs"


def test_imports_point_down():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top not in LAYERS:
            continue
        for name in _imported(ast.parse(path.read_text())) & set(LAYERS):
            if LAYERS.index(name) < LAYERS.index(top):
                upward.append(f"{path.relative_to(PACKAGE)} imports torchwork.{name}")
    assert not upward, upward


def test_the_map_in_the_docs_lists_the_layers_in_order():
    """docs/architecture.md draws the layers top to bottom, as LAYERS has them."""
    text = (PACKAGE.parent.parent / "docs" / "architecture.md").read_text()
    block = text.split("```", 2)[1]
    drawn = [
        line.split()[0].removesuffix("/").removesuffix(".py")
        for line in block.splitlines()
        if line and not line.startswith(" ")
    ]
    assert drawn == LAYERS
