"""The pipeline worker process: Faust's worker, with what Switchboard needs once it is ready."""

from __future__ import annotations

import faust

from streams import heap


class Worker(faust.Worker):
    """Faust's worker (its log lines still read `[^Worker]`, which scripts wait for)."""

    async def on_startup_finished(self) -> None:
        """Ready: every agent is running and every table recovered. Settle the heap first.

        This blocks the loop once, for 110-210 ms before Ready is logged: a collection holds the
        interpreter wherever it runs, and once at start costs less than one every few seconds.
        """
        heap.settle()
        await super().on_startup_finished()
