import gc
from collections.abc import Iterator

import pytest

from streams import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session keeps an ordinary collector


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_survivors_are_frozen_and_later_garbage_is_still_collected(unfrozen: None) -> None:
    before = Cycle()
    assert heap.settle() == gc.get_freeze_count() > 0
    # What lived through the settle is out of every generation the collector walks.
    assert not any(obj is before for obj in gc.get_objects())
    collected = []
    after = Cycle()
    gc.callbacks.append(lambda phase, info: collected.append(info["collected"]))
    try:
        del after
        gc.collect()
    finally:
        gc.callbacks.pop()
    assert collected[-1] >= 1  # a cycle made after the settle is found and freed
