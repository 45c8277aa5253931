"""The widget's recent-messages log, against an in-memory stand-in for the few Redis calls it
makes (an integration test runs it against Redis itself)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast

from redis.asyncio import Redis

from core.stores.recent_messages import KEEP, TTL_S, RecentMessages, View, log_key


def _index(index: int, length: int) -> int:
    return index + length if index < 0 else index


class FakePipeline:
    """Queues rpush, ltrim and expire and applies them on execute, as a pipeline does."""

    def __init__(self, redis: FakeRedis) -> None:
        self._redis = redis
        self._queued: list[tuple[str, tuple[Any, ...]]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._queued.clear()

    def rpush(self, key: str, *values: str) -> None:
        self._queued.append(("rpush", (key, *values)))

    def ltrim(self, key: str, start: int, stop: int) -> None:
        self._queued.append(("ltrim", (key, start, stop)))

    def expire(self, key: str, seconds: int) -> None:
        self._queued.append(("expire", (key, seconds)))

    async def execute(self) -> list[Any]:
        results = [getattr(self._redis, name)(*args) for name, args in self._queued]
        self._queued.clear()
        return results


class FakeRedis:
    def __init__(self) -> None:
        self.lists: dict[str, list[bytes]] = {}
        self.ttls: dict[str, int] = {}
        self.pipelines = 0

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        assert transaction is False  # the log's writes need no MULTI
        self.pipelines += 1
        return FakePipeline(self)

    def rpush(self, key: str, *values: str) -> int:
        self.lists.setdefault(key, []).extend(value.encode() for value in values)
        return len(self.lists[key])

    def ltrim(self, key: str, start: int, stop: int) -> bool:
        entries = self.lists.get(key, [])
        kept = entries[max(_index(start, len(entries)), 0) : _index(stop, len(entries)) + 1]
        if kept:
            self.lists[key] = kept
        else:
            self.lists.pop(key, None)
        return True

    def expire(self, key: str, seconds: int) -> bool:
        if key not in self.lists:
            return False
        self.ttls[key] = seconds
        return True

    async def lrange(self, key: str, start: int, stop: int) -> list[bytes]:
        entries = self.lists.get(key, [])
        return entries[max(_index(start, len(entries)), 0) : _index(stop, len(entries)) + 1]


def view(message_id: str, text: str = "") -> View:
    return {"id": message_id, "conversation_id": "cv_1", "role": "user", "text": text or message_id}


def ids_of(views: list[View] | None) -> list[str] | None:
    return None if views is None else [v["id"] for v in views]


def recent() -> tuple[RecentMessages, FakeRedis]:
    redis = FakeRedis()
    return RecentMessages(cast(Redis, redis)), redis


async def test_an_empty_log_cannot_tell() -> None:
    log, _ = recent()
    assert await log.after("cv_1", None) is None
    assert await log.after("cv_1", "in_1") is None


async def test_the_messages_after_a_known_id() -> None:
    log, _ = recent()
    await log.append("cv_1", [view("in_1"), view("bt_1")])
    await log.append("cv_1", [view("in_2", "héllo ✓")])
    assert ids_of(await log.after("cv_1", "in_1")) == ["bt_1", "in_2"]
    assert await log.after("cv_1", "bt_1") == [view("in_2", "héllo ✓")]
    assert await log.after("cv_1", "in_2") == []


async def test_an_unknown_last_id_cannot_be_answered() -> None:
    log, _ = recent()
    await log.append("cv_1", [view("in_1")])
    assert await log.after("cv_1", "in_0") is None


async def test_without_a_last_id_the_whole_log() -> None:
    log, _ = recent()
    await log.append("cv_1", [view("in_1"), view("bt_1")])
    assert ids_of(await log.after("cv_1", None)) == ["in_1", "bt_1"]


async def test_conversations_have_their_own_logs() -> None:
    log, redis = recent()
    await log.append("cv_1", [view("in_1")])
    assert await log.after("cv_2", None) is None
    assert set(redis.lists) == {log_key("cv_1")}


async def test_each_id_once_though_appended_again() -> None:
    log, _ = recent()
    await log.append("cv_1", [view("in_1"), view("bt_1")])
    await log.append("cv_1", [view("in_1"), view("in_2")])
    assert ids_of(await log.after("cv_1", None)) == ["in_1", "bt_1", "in_2"]
    assert ids_of(await log.after("cv_1", "in_1")) == ["bt_1", "in_2"]


async def test_the_log_keeps_the_last_entries_and_lapses() -> None:
    log, redis = recent()
    await log.append("cv_1", [view(f"m_{n}") for n in range(KEEP - 1)])
    await log.append("cv_1", [view(f"m_{n}") for n in range(KEEP - 1, KEEP + 5)])
    assert len(redis.lists[log_key("cv_1")]) == KEEP
    assert ids_of(await log.after("cv_1", None)) == [f"m_{n}" for n in range(5, KEEP + 5)]
    assert await log.after("cv_1", "m_4") is None  # trimmed away: MongoDB answers
    assert ids_of(await log.after("cv_1", "m_5")) == [f"m_{n}" for n in range(6, KEEP + 5)]
    assert ids_of(await log.after("cv_1", f"m_{KEEP + 3}")) == [f"m_{KEEP + 4}"]
    assert redis.ttls == {log_key("cv_1"): TTL_S}


async def test_appending_nothing_touches_nothing() -> None:
    log, redis = recent()
    await log.append("cv_1", [])
    assert (redis.pipelines, redis.lists) == (0, {})
