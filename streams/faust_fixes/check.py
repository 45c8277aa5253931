"""The start-up check: the installed Faust has every internal that these fixes patch or use.

The fixes reach into private parts of faust-streaming that any release may rename or reshape,
and a patch that no longer fits would quietly stop guarding delivery. So the worker refuses to
start unless the pinned release is installed and each internal has the shape expected here.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import importlib
import inspect
import textwrap
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any

#: The faust-streaming release the fixes were written and tested against; setup.cfg pins it too.
FAUST_VERSION = "0.15.3"
DISTRIBUTION = "faust-streaming"

Check = Callable[[], Iterator[str]]


class FaustMismatch(RuntimeError):
    """The installed Faust lacks, or has reshaped, an internal that streams.faust_fixes needs."""

    def __init__(self, mismatches: Sequence[str]) -> None:
        self.mismatches = tuple(mismatches)
        listed = "\n".join(f"  - {mismatch}" for mismatch in self.mismatches)
        super().__init__(
            "the installed Faust does not match what streams/faust_fixes patches "
            f"(docs/faust.md); the worker will not start:\n{listed}"
        )


def verify() -> None:
    """Raise ``FaustMismatch`` naming every mismatch, if there is any."""
    found = mismatches()
    if found:
        raise FaustMismatch(found)


def mismatches() -> list[str]:
    """Every way the installed Faust differs from what the fixes expect; empty when none."""
    checks: tuple[Check, ...] = (
        _version,
        _consumer,
        _driver_consumer,
        _producer_buffer,
        _streams,
        _mode,
    )
    return [mismatch for one in checks for mismatch in one()]


def _version() -> Iterator[str]:
    try:
        installed = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        yield f"{DISTRIBUTION} is not installed ({FAUST_VERSION} is pinned)"
        return
    if installed != FAUST_VERSION:
        yield f"{DISTRIBUTION} {installed} is installed, {FAUST_VERSION} is pinned"


def _consumer() -> Iterator[str]:
    """faust.transport.consumer.Consumer: intake, read_offsets, skips and the offset guard."""
    consumer = _load("faust.transport.consumer", "Consumer")
    if consumer is None:
        yield "faust.transport.consumer.Consumer is missing"
        return
    yield from _parameters(consumer, "wait_first", ["self", "*coros", "timeout"])
    yield from _parameters(consumer, "ack", ["self", "message"])
    yield from _parameters(consumer, "_drain_messages", ["self", "fetcher"])
    yield from _parameters(consumer, "_new_offset", ["self", "tp"])
    yield from _assigns(
        consumer, "__init__", ["_gap", "_acked", "_acked_index", "_read_offset", "suspend_flow"]
    )
    yield from _uses(
        consumer,
        "_drain_messages",
        [
            "self._read_offset.__getitem__",
            "self._read_offset.__setitem__",
            "self.wait_first",
            "self.suspend_flow.wait",
        ],
    )
    yield from _uses(consumer, "_new_offset", ["self._acked", "self._acked_index", "self._gap"])
    yield from _uses(consumer, "on_partitions_revoked", ["self._read_offset.pop"])
    if not hasattr(consumer, "should_stop"):
        yield f"{_where(consumer, 'should_stop')} is missing"


def _driver_consumer() -> Iterator[str]:
    """The aiokafka driver's consumer, which the worker runs: the patches on Faust's base class
    reach it only if it inherits what they patch."""
    base = _load("faust.transport.consumer", "Consumer")
    driver = _load("faust.transport.drivers.aiokafka", "Consumer")
    if driver is None:
        yield "faust.transport.drivers.aiokafka.Consumer is missing"
        return
    yield from _parameters(driver, "seek_wait", ["self", "partitions"])
    if base is None or base not in driver.__mro__:
        yield f"{_where(driver)} does not inherit faust.transport.consumer.Consumer"
        return
    for name in ("wait_first", "ack", "_drain_messages"):
        if getattr(driver, name, None) is not getattr(base, name, None):
            yield f"{_where(driver, name)} overrides the Consumer.{name} that a fix patches"
    for cls in driver.__mro__[: driver.__mro__.index(base)]:
        init = vars(cls).get("__init__")
        if init is not None and "super.__init__" not in _names(init):
            yield f"{_where(cls, '__init__')} does not call super().__init__ (Consumer's)"


def _producer_buffer() -> Iterator[str]:
    """faust.transport.producer.ProducerBuffer: the changelog drain."""
    buffer = _load("faust.transport.producer", "ProducerBuffer")
    service_task = _load("mode.services", "ServiceTask")
    if buffer is None or service_task is None:
        yield "faust.transport.producer.ProducerBuffer or mode.services.ServiceTask is missing"
        return
    where = _where(buffer, "_handle_pending")
    task = vars(buffer).get("_handle_pending")
    if not isinstance(task, service_task):
        yield f"{where} is not a mode ServiceTask"
    else:
        yield from _signature(where, task.fun, ["self"])
        if "_handle_pending" not in buffer._tasks.get(buffer._get_class_id(), ()):
            yield f"{where} is not among the buffer's background tasks"
    yield from _parameters(buffer, "_send_pending", ["self", "fut"])
    try:
        instance = buffer()
    except Exception as error:  # reported with the rest rather than raised
        yield f"{_where(buffer)}() cannot be created: {error!r}"
        return
    if not isinstance(getattr(instance, "pending", None), asyncio.Queue):
        yield f"{_where(buffer, 'pending')} is not an asyncio.Queue"
    if not isinstance(getattr(instance, "message_sent", None), asyncio.Event):
        yield f"{_where(buffer, 'message_sent')} is not an asyncio.Event"
    if not hasattr(instance, "should_stop"):
        yield f"{_where(buffer, 'should_stop')} is missing"


def _streams() -> Iterator[str]:
    """faust.streams: the current event (current_event) and the skip test (skips)."""
    try:
        streams = importlib.import_module("faust.streams")
    except ImportError as error:
        yield f"faust.streams cannot be imported: {error}"
        return
    if not isinstance(getattr(streams, "_current_event", None), contextvars.ContextVar):
        yield "faust.streams._current_event is not a ContextVar"
    yield from _uses(streams, "current_event", ["_current_event.get"])
    stream = getattr(streams, "Stream", None)
    if stream is None:
        yield "faust.streams.Stream is missing"
        return
    skip_test = ["self.app.flow_control.is_active", "self.app.consumer_generation_id"]
    yield from _uses(stream, "_py_aiter", [*skip_test, "event.ack"])


def _mode() -> Iterator[str]:
    """mode's WaitResults, which the inline hand-off returns in place of Service.wait_first,
    and its FlowControlEvent, whose ``resume`` flow_resume patches."""
    results = _load("mode.services", "WaitResults")
    if results is None:
        yield "mode.services.WaitResults is missing"
    elif getattr(results, "_fields", None) != ("done", "results", "stopped"):
        yield f"mode.services.WaitResults has fields {getattr(results, '_fields', None)}"
    flow = _load("mode.utils.queues", "FlowControlEvent")
    if flow is None:
        yield "mode.utils.queues.FlowControlEvent is missing"
        return
    yield from _parameters(flow, "resume", ["self"])
    yield from _parameters(flow, "is_active", ["self"])


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _function(owner: Any, name: str) -> Any:
    """``owner.name`` as Faust defines it: a patch here wraps it (``functools.wraps``)."""
    found = getattr(owner, name, None)
    return inspect.unwrap(found) if callable(found) else None


def _where(owner: Any, name: str = "") -> str:
    """``owner.name`` in full: ``faust.transport.consumer.Consumer.ack``."""
    if inspect.ismodule(owner):
        where = owner.__name__
    else:
        where = f"{owner.__module__}.{owner.__qualname__}"
    return f"{where}.{name}" if name else where


def _parameters(owner: Any, name: str, expected: list[str]) -> Iterator[str]:
    function = _function(owner, name)
    if function is None:
        yield f"{_where(owner, name)} is missing"
        return
    yield from _signature(_where(owner, name), function, expected)


def _signature(where: str, function: Any, expected: list[str]) -> Iterator[str]:
    try:
        signature = inspect.signature(inspect.unwrap(function))
    except (TypeError, ValueError) as error:
        yield f"{where} has no signature to read: {error}"
        return
    parameters = [
        ("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
        for p in signature.parameters.values()
    ]
    if parameters != expected:
        yield f"{where} takes ({', '.join(parameters)}), expected ({', '.join(expected)})"


def _uses(owner: Any, name: str, expected: list[str]) -> Iterator[str]:
    function = _function(owner, name)
    if function is None:
        yield f"{_where(owner, name)} is missing"
        return
    names = _names(function)
    for dotted in expected:
        if dotted not in names:
            yield f"{_where(owner, name)} no longer uses {dotted}"


def _assigns(owner: Any, name: str, attributes: list[str]) -> Iterator[str]:
    function = _function(owner, name)
    if function is None:
        yield f"{_where(owner, name)} is missing"
        return
    assigned = {
        target.attr
        for node in ast.walk(_tree(function))
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }
    for attribute in attributes:
        if attribute not in assigned:
            yield f"{_where(owner, name)} no longer sets self.{attribute}"


def _names(function: Any) -> set[str]:
    """The dotted names the source of ``function`` reads (``self._gap.pop``, ``super.__init__``)."""
    names: set[str] = set()
    for node in ast.walk(_tree(function)):
        if not isinstance(node, ast.Attribute):
            continue
        parts = [node.attr]
        value = node.value
        while isinstance(value, ast.Attribute):
            parts.append(value.attr)
            value = value.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            value = value.func  # super().__init__ reads as super.__init__
        if isinstance(value, ast.Name):
            names.add(".".join([value.id, *reversed(parts)]))
    return names


def _tree(function: Any) -> ast.AST:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return ast.Module(body=[], type_ignores=[])  # no source: every use reads as missing
