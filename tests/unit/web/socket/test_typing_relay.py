"""When a typing indicator is relayed: starts at most once an interval, ends only after a
relayed start and never dropped then, whatever a client sends."""

from __future__ import annotations

from web.socket.typing_relay import IDLE, TYPING_EVERY_S, State, relayed


def _flood(values: list[bool], times: list[float]) -> list[bool]:
    state: State = IDLE
    sent = []
    for typing, now in zip(values, times, strict=True):
        after = relayed(state, typing, now)
        if after is not None:
            state = after
            sent.append(typing)
    return sent


def test_ends_without_a_start_are_never_relayed() -> None:
    assert _flood([False] * 1000, [100.0 + n / 1000 for n in range(1000)]) == []


def test_a_flood_inside_one_interval_makes_one_start_and_one_end() -> None:
    values = [n % 2 == 0 for n in range(1000)] + [False]
    times = [100.0 + n * TYPING_EVERY_S / 2000 for n in range(1001)]
    assert _flood(values, times) == [True, False]


def test_repeated_starts_are_relayed_once_an_interval() -> None:
    times = [100.0 + n * TYPING_EVERY_S / 4 for n in range(12)]
    assert _flood([True] * 12, times) == [True, True, True]


def test_the_end_after_a_relayed_start_always_goes_out() -> None:
    started = relayed(IDLE, True, 100.0)
    assert started == (True, 100.0)
    assert relayed(started, False, 100.001) == (False, 100.001)
    assert relayed(started, True, 100.001) is None


def test_a_start_right_after_an_end_waits_for_the_next_interval() -> None:
    ended: State = (False, 100.0)
    assert relayed(ended, True, 100.0 + TYPING_EVERY_S / 2) is None
    assert relayed(ended, True, 100.0 + TYPING_EVERY_S) == (True, 100.0 + TYPING_EVERY_S)
