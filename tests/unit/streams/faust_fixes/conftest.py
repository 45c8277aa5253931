"""Every test here leaves Faust's classes as it found them, whatever it installs on them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from mode.utils.queues import FlowControlEvent

from tests.unit.streams.faust_fixes.harness import FaustHarness

#: The classes the fixes' ``install()`` patch.
PATCHED = (Consumer, ProducerBuffer, FlowControlEvent)


@pytest.fixture(autouse=True)
def faust_classes() -> Iterator[None]:
    """Put back, after the test, every class attribute it added or replaced."""
    before = {cls: dict(vars(cls)) for cls in PATCHED}
    yield
    for cls, attributes in before.items():
        for name in set(vars(cls)) - set(attributes):
            delattr(cls, name)
        for name, value in attributes.items():
            if vars(cls).get(name) is not value:
                setattr(cls, name, value)


@pytest.fixture
async def harness() -> AsyncIterator[FaustHarness]:
    """A real Faust app and its consumers, without a broker (harness.py)."""
    real = FaustHarness()
    yield real
    real.close()
