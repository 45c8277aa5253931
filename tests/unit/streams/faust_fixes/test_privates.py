"""Every touch of a Faust private lives in streams/faust_fixes/, where the start-up check
covers it: no other module of agents/, streams/ or tables/ imports one or reads one."""

from __future__ import annotations

import ast
from pathlib import Path

import faust
import mode
from faust.agents import Agent
from faust.events import Event
from faust.streams import Stream
from faust.tables.table import Table
from faust.topics import Topic
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import Consumer as KafkaConsumer
from faust.transport.drivers.aiokafka import Producer
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import Message

ROOT = Path(__file__).resolve().parents[4]
PACKAGES = ("agents", "streams", "tables")
FIXES = ROOT / "streams" / "faust_fixes"

#: The Faust and mode classes the pipeline's code handles.
FAUST_CLASSES = (
    faust.App,
    faust.Worker,
    faust.Record,
    mode.Service,
    Agent,
    Consumer,
    KafkaConsumer,
    Producer,
    ProducerBuffer,
    Stream,
    Topic,
    Table,
    Event,
    Message,
)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def faust_privates() -> set[str]:
    """The private names of those classes, their instance attributes' annotations included."""
    names = {name for cls in FAUST_CLASSES for name in dir(cls)}
    names |= {
        name
        for cls in FAUST_CLASSES
        for base in cls.__mro__
        for name in vars(base).get("__annotations__", {})
    }
    return {name for name in names if _private(name)}


FAUST_PACKAGES = {"faust", "mode"}


def _faust_module(name: str | None) -> bool:
    return (name or "").split(".")[0] in FAUST_PACKAGES


def _from_faust(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in FAUST_PACKAGES


def _own_class_attributes(tree: ast.AST) -> set[int]:
    """The nodes inside classes of Switchboard's own (not subclasses of Faust's): their
    ``self._x`` is theirs, whatever Faust calls its own attributes."""
    return {
        id(node)
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef) and not any(_from_faust(b) for b in cls.bases)
        for node in ast.walk(cls)
    }


def touches(source: str, privates: set[str]) -> list[str]:
    """Each Faust private ``source`` imports or reads, with its line."""
    found: list[str] = []
    tree = ast.parse(source)
    own = _own_class_attributes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _faust_module(node.module):
            names = [*(node.module or "").split("."), *(a.name for a in node.names)]
            found += [f"{node.lineno}: from {node.module} import {n}" for n in names if _private(n)]
        elif isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {alias.name}"
                for alias in node.names
                if _faust_module(alias.name) and any(map(_private, alias.name.split(".")))
            ]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            on_self = isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
            if _from_faust(node.value) or (
                node.attr in privates and not (on_self and id(node) in own)
            ):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_faust_private_is_touched_outside_faust_fixes() -> None:
    privates = faust_privates()
    hits = [
        f"{path.relative_to(ROOT)}:{hit}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if FIXES not in path.parents
        for hit in touches(path.read_text(), privates)
    ]
    assert hits == []


def test_the_scan_sees_each_kind_of_touch() -> None:
    source = (
        "import faust._cython.streams\n"
        "from faust.streams import _current_event\n"
        "x = faust.streams._current_event\n"
        "consumer._acked.clear()\n"
        "class Runner:\n    def f(self):\n        return self._tasks\n"
        "class Worker(faust.Worker):\n    def f(self):\n        return self._tasks\n"
    )
    assert touches(source, faust_privates()) == [
        "1: import faust._cython.streams",
        "2: from faust.streams import _current_event",
        "3: faust.streams._current_event",
        "4: consumer._acked",
        "10: self._tasks",
    ]
