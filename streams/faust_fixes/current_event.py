"""Makes a record Faust's current event outside Faust's own stream iteration.

A Faust table writes its changelog record to the partition of the current event, and only
Faust's stream iteration sets that event, through the private context variable
``faust.streams._current_event``; a batch planned after it was taken has to set it itself
(upstream: faust-streaming#497). Without it, a table write raises:
tests/unit/streams/faust_fixes/test_current_event.py::test_a_table_write_goes_to_the_partition_of_the_current_event.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from faust.streams import _current_event


@contextlib.contextmanager
def as_current(event: Any) -> Iterator[None]:
    """Make ``event`` Faust's current event: a table writes its changelog to that partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
