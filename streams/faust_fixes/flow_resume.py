"""Resuming flow that is not suspended keeps the records the streams have not taken yet.

mode's ``FlowControlEvent.resume`` empties every stream's buffer (Faust's channel queues) each
time it is called. At the end of a recovery Faust resumes the stream partitions, seeks them to
their committed offsets, and only then resumes flow control, which was already resumed for the
recovery itself: the records the fetch loop handed over during the seek are emptied out with
the consumer's position already past them, so nothing fetches them again until the next
rebalance, and on a quiet partition no later record shows the offset guard (continuity) the
hole. A restarted AI worker left the last request of a partition unanswered that way. Here a
resume of flow that is not suspended changes nothing; one that ends a suspension still empties
the buffers, as Faust's rebalance expects. Upstream: faust-streaming#596; without it this test
fails:
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
