"""When a typing indicator is relayed to the other side of a conversation, both ways.

Every relay is an emit through Redis to every instance, so a client sending ``typing`` in a
loop must not make one per event, whatever the value. A start is relayed at most once an
interval (it is repeated while someone types), an end only after a relayed start and then always
at once: ends are never more than starts, and nobody is left shown as typing. A start dropped
inside the interval is relayed with the next repetition.
"""

from __future__ import annotations

#: At most one relayed start per conversation and client in this interval.
TYPING_EVERY_S = 1.0

#: What was last relayed (typing or not) and when; (False, 0.0) before anything was.
State = tuple[bool, float]
IDLE: State = (False, 0.0)


def relayed(
    state: State, typing: bool, now: float, every_s: float = TYPING_EVERY_S
) -> State | None:
    """The state after relaying ``typing``, or None when it is not to be relayed."""
    sent, at = state
    if not typing:
        return (False, now) if sent else None
    if now - at < every_s:
        return None
    return (True, now)
