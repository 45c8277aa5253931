"""The import direction of the layout: core/ is shared by everything, so it imports none of it.

core/ may import only the Faust-free contract of streams/; agents/ never imports web/. Every
import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Per package, the top-level packages (or exact modules) it must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("web", "infra", "agents", "tables", "streams", "faust", "mode"),
    "agents": ("web", "infra"),
}
#: What a forbidden package may still offer.
ALLOWED = ("streams.contract",)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with its line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(root: Path, package: str) -> list[str]:
    forbidden = FORBIDDEN[package]
    hits = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            allowed = any(module == a or module.startswith(f"{a}.") for a in ALLOWED)
            if top in forbidden and not allowed and module != "streams":
                hits.append(f"{path.relative_to(root)}:{line} imports {module}")
    return hits


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_keeps_the_import_direction(package: str) -> None:
    assert violations(ROOT, package) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from streams.contract import PARTITIONS\n"
        "def f():\n    from streams.topics import TOPICS\n    import web.users\n"
    )
    assert imported_modules(module) == [
        (1, "streams.contract"),
        (1, "streams.contract.PARTITIONS"),
        (3, "streams.topics"),
        (3, "streams.topics.TOPICS"),
        (4, "web.users"),
    ]


def test_the_check_refuses_core_importing_faust_streams(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "m.py").write_text(
        "import faust\nfrom streams import contract, records\nfrom streams.contract import X\n"
    )
    assert violations(tmp_path, "core") == [
        "core/m.py:1 imports faust",
        "core/m.py:2 imports streams.records",
    ]
