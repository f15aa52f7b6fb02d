"""The seams of docs/architecture.md hold: only store/ speaks SQL, and no package imports
one above it. Read from the source with ast, so a lazy import inside a function counts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "host" / "deskpulse"

SHARED = {"errors", "files", "resources", "timezones", ""}  # "" is deskpulse/__init__.py
ALLOWED = {
    "protocol": set(),
    "store": {"protocol"},
    "device": {"protocol", "store"},
    "reports": {"protocol", "store"},
    "notify": {"protocol", "store", "reports"},
    "server": {"protocol", "store", "reports", "notify"},
    "sim": {"protocol", "store", "device", "reports", "notify", "server", "cli.format"},
    "cli": {"protocol", "store", "device", "reports", "notify", "server", "sim"},
}
"""What each package may import besides itself and SHARED (docs/architecture.md)."""

SQL = re.compile(r"\bSELECT\b.*\bFROM\b|\bINSERT (OR \w+ )?INTO\b|\bUPDATE \w+ SET\b|"
                 r"\bDELETE FROM\b|\bCREATE (TABLE|INDEX)\b|\bPRAGMA \w+", re.S)


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "shipped" not in p.relative_to(PACKAGE).parts)


def package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem.replace("__init__", "")


def deskpulse_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name below deskpulse) of every import of the package, anywhere."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    below = [(line, name.removeprefix("deskpulse.")) for line, name in found
             if name.startswith("deskpulse.")]
    # `from deskpulse import installed_version` takes a name of deskpulse/__init__.py.
    return [(line, name if _is_module(name.split(".")[0]) else "") for line, name in below]


def _is_module(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def layering_problems(path: Path, tree: ast.AST) -> list[str]:
    own = package_of(path)
    allowed = set() if own in SHARED else ALLOWED[own] | {own}
    problems = []
    for line, name in deskpulse_imports(tree):
        target = name.split(".")[0]
        if target in SHARED or target in allowed or any(
                name == a or name.startswith(a + ".") for a in allowed):
            continue
        problems.append(f"{path.relative_to(PACKAGE)}:{line} ({own}) imports {name}")
    return problems


def engine_problems(path: Path, tree: ast.AST) -> list[str]:
    if package_of(path) == "store":
        return []
    problems = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        problems += [f"{path.relative_to(PACKAGE)}:{node.lineno} imports {n}"
                     for n in names if n.split(".")[0] == "sqlite3"]
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and SQL.search(node.value)):
            problems.append(f"{path.relative_to(PACKAGE)}:{node.lineno} holds SQL: "
                            f"{node.value[:60]!r}")
    return problems


def test_only_the_store_speaks_to_an_engine() -> None:
    problems = [p for path in modules()
                for p in engine_problems(path, ast.parse(path.read_text()))]
    assert problems == []


def test_no_package_imports_one_above_it() -> None:
    problems = [p for path in modules()
                for p in layering_problems(path, ast.parse(path.read_text()))]
    assert problems == []


@pytest.mark.parametrize(("where", "source", "rule"), [
    ("reports/x.py", "import sqlite3\n", "imports sqlite3"),
    ("server/x.py", "Q = 'SELECT key FROM device_keys'\n", "holds SQL"),
    ("store/x.py", "from deskpulse.server import app\n", "imports server.app"),
    ("protocol/x.py", "def f():\n    from deskpulse.store import base\n",
     "imports store.base"),
    ("sim/x.py", "from deskpulse.cli import main\n", "imports cli.main"),
])
def test_the_checks_catch_a_crossing(where: str, source: str, rule: str) -> None:
    path = PACKAGE / where
    tree = ast.parse(source)
    found = engine_problems(path, tree) + layering_problems(path, tree)
    assert any(rule in p for p in found), found
