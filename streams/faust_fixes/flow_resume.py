"""Resuming flow control that is not suspended keeps the records the streams have not taken.

mode's ``FlowControlEvent.resume`` empties every stream's buffer each time it is called, and at
the end of a recovery Faust calls it again after seeking to committed offsets, which drops the
records handed over during the seek with the consumer already past them; here a resume of flow
that is not suspended changes nothing (docs/faust.md). Upstream: faust-streaming#596; without
it this test fails:
tests/unit/streams/faust_fixes/test_flow_resume.py::test_a_record_handed_over_during_the_seek_reaches_its_stream
"""

from __future__ import annotations

import functools

from mode.utils.queues import FlowControlEvent

_INSTALLED = "_switchboard_resume_keeps_buffers"


def install() -> None:
    """Make resuming flow control a no-op unless it is suspended; idempotent."""
    if getattr(FlowControlEvent, _INSTALLED, False):
        return
    original = FlowControlEvent.resume

    @functools.wraps(original)
    def resume(self: FlowControlEvent) -> None:
        if self.is_active():
            return  # not suspended: what the buffers hold was handed over in this generation
        original(self)

    FlowControlEvent.resume = resume  # type: ignore[method-assign]
    setattr(FlowControlEvent, _INSTALLED, True)
