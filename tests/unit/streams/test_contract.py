"""The contract is the one place that names a topic, and it imports no Faust."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from streams.contract import CHANGELOGS, CONTRACT, PARTITIONS, dead_letter_of

ROOT = Path(__file__).resolve().parents[3]
#: Where a topic name must never be typed again: every package, the benchmarks and the tests.
SCANNED = ("core", "agents", "streams", "tables", "web", "infra", "bench", "tests")
CONTRACT_FILE = ROOT / "streams" / "contract.py"


def topic_names() -> set[str]:
    names = {spec.name for spec in CONTRACT} | {spec.name for spec in CHANGELOGS}
    return names | {dead_letter_of(spec.name) for spec in CONTRACT}


def literals_naming_a_topic(path: Path, names: set[str]) -> list[str]:
    """Each string constant in ``path`` that is a topic's name, as ``line: 'name'``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    ]


def test_no_topic_name_is_typed_outside_the_contract() -> None:
    names = topic_names()
    found = [
        hit
        for package in SCANNED
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != CONTRACT_FILE
        for hit in (
            f"{path.relative_to(ROOT)}:{line}" for line in literals_naming_a_topic(path, names)
        )
    ]
    assert found == []


def test_the_scan_finds_a_typed_topic_name(tmp_path: Path) -> None:
    typed = tmp_path / "typed.py"
    typed.write_text('TOPIC = "messages.inbound"\nDLQ = "messages.inbound.dlq"\n')
    hits = literals_naming_a_topic(typed, topic_names())
    assert hits == ["1: 'messages.inbound'", "2: 'messages.inbound.dlq'"]


def test_the_contract_imports_no_faust() -> None:
    probe = "import sys, streams.contract; print('faust' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_every_spec_has_the_contract_partition_count_and_a_dead_letter_twin() -> None:
    for spec in CONTRACT:
        assert spec.partitions == PARTITIONS
        assert spec.dead_letter == f"{spec.name}.dlq"
