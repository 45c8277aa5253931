"""The indexed manager leaves a disconnecting client's rooms exactly as python-socketio's does."""

from __future__ import annotations

import random
from typing import Any

import socketio

from web.socket.manager import IndexedRedisManager

URL = "redis://127.0.0.1:1/0"  # never connected to: room bookkeeping is local


def _rooms(manager: Any) -> dict[str, dict[Any, dict[str, str]]]:
    return {ns: {room: dict(members) for room, members in rooms.items()}
            for ns, rooms in manager.rooms.items()}  # fmt: skip


def _script(seed: int) -> list[tuple[str, ...]]:
    """Clients connecting, joining and leaving rooms and disconnecting, in a random order."""
    shuffle = random.Random(seed)
    steps: list[tuple[str, ...]] = []
    clients = [f"s{n}" for n in range(40)]
    for sid in clients:
        namespace = shuffle.choice(["/widget", "/inbox"])
        steps += [
            ("connect", sid, namespace),
            ("enter", sid, namespace, f"room{shuffle.randrange(5)}"),
        ]
        if shuffle.random() < 0.5:
            steps.append(("enter", sid, namespace, f"room{shuffle.randrange(5)}"))
        if shuffle.random() < 0.3:
            steps.append(("leave", sid, namespace, "room0"))
    shuffle.shuffle(clients)
    connected = {step[1]: step[2] for step in steps if step[0] == "connect"}
    steps += [("disconnect", sid, connected[sid]) for sid in clients[:30]]
    steps.append(("disconnect", "never-connected", "/widget"))
    return steps


def _play(manager: Any, steps: list[tuple[str, ...]]) -> None:
    for step in steps:
        action, sid, namespace = step[:3]
        if action == "connect":  # as pre_connect does: the namespace's room and the client's own
            manager.basic_enter_room(sid, namespace, None, eio_sid=f"e{sid}")
            manager.basic_enter_room(sid, namespace, sid, eio_sid=f"e{sid}")
            manager.pending_connect.setdefault(namespace, []).append(sid)
        elif action == "enter":
            manager.basic_enter_room(sid, namespace, step[3])
        elif action == "leave":
            manager.basic_leave_room(sid, namespace, step[3])
        else:
            manager.basic_disconnect(sid, namespace)


def test_rooms_match_python_socketio_after_any_order_of_joins_and_disconnects() -> None:
    for seed in range(20):
        steps = _script(seed)
        stock, indexed = socketio.AsyncRedisManager(URL), IndexedRedisManager(URL)
        _play(stock, steps)
        _play(indexed, steps)
        assert _rooms(indexed) == _rooms(stock)
        assert indexed.pending_connect == stock.pending_connect


def test_a_disconnected_client_leaves_nothing_behind() -> None:
    manager = IndexedRedisManager(URL)
    _play(manager, [("connect", "a", "/widget"), ("enter", "a", "/widget", "conversation:c"),
                    ("disconnect", "a", "/widget")])  # fmt: skip
    assert manager.rooms == {}
    assert manager._rooms_of == {}
    assert manager.pending_connect == {}
