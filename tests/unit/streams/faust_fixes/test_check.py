"""The start-up check passes on the installed Faust and names each internal that differs."""

from __future__ import annotations

import configparser
from importlib import metadata
from typing import Any, NamedTuple

import faust.streams
import mode.services
import pytest
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import Consumer as KafkaConsumer
from faust.transport.producer import ProducerBuffer

import streams.admin
from core.settings import PROJECT_ROOT, Settings
from infra.cli import main
from streams.faust_fixes import FaustMismatch, check, install_all

FAUST = "faust.transport.consumer.Consumer"


def test_the_pinned_version_is_the_installed_one_and_setup_cfg_s() -> None:
    assert metadata.version(check.DISTRIBUTION) == check.FAUST_VERSION
    setup = configparser.ConfigParser()
    setup.read(PROJECT_ROOT / "setup.cfg")
    requires = setup["options"]["install_requires"].split()
    assert f"{check.DISTRIBUTION}=={check.FAUST_VERSION}" in requires


def test_the_installed_faust_passes() -> None:
    assert check.mismatches() == []
    check.verify()


def test_it_still_passes_once_the_fixes_are_installed() -> None:
    install_all(Settings(worker_inline_intake=True))
    assert Consumer.wait_first is not mode.services.Service.wait_first, "installed"
    assert check.mismatches() == [], "the check reads Faust's originals through the patches"


def test_another_release_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "FAUST_VERSION", "0.16.0")
    assert check.mismatches() == [
        f"faust-streaming {metadata.version('faust-streaming')} is installed, 0.16.0 is pinned"
    ]


def test_a_missing_method_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Consumer, "_drain_messages")
    assert f"{FAUST}._drain_messages is missing" in check.mismatches()


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def ack(self: Any, message: Any, n: int = 1) -> bool:
        return True

    monkeypatch.setattr(Consumer, "ack", ack)
    assert check.mismatches() == [f"{FAUST}.ack takes (self, message, n), expected (self, message)"]


def test_attributes_no_longer_set_by_consumer_init_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self._gap = {}
        self._acked = {}
        self.suspend_flow = None

    monkeypatch.setattr(Consumer, "__init__", __init__)
    assert check.mismatches() == [
        f"{FAUST}.__init__ no longer sets self._acked_index",
        f"{FAUST}.__init__ no longer sets self._read_offset",
    ]


def test_a_driver_consumer_out_of_the_patches_reach_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any: ...

    def seek_wait(self: Any, partitions: Any, timeout: float) -> None: ...

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None: ...

    monkeypatch.setattr(KafkaConsumer, "wait_first", wait_first)
    monkeypatch.setattr(KafkaConsumer, "seek_wait", seek_wait)
    monkeypatch.setattr(ThreadDelegateConsumer, "__init__", __init__)
    driver = "faust.transport.drivers.aiokafka.Consumer"
    assert check.mismatches() == [
        f"{driver}.seek_wait takes (self, partitions, timeout), expected (self, partitions)",
        f"{driver}.wait_first overrides the Consumer.wait_first that a fix patches",
        "faust.transport.consumer.ThreadDelegateConsumer.__init__ does not call super().__init__"
        " (Consumer's)",
    ]


def test_the_changelog_task_and_the_context_variable_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def _handle_pending(self: Any) -> None: ...

    monkeypatch.setattr(ProducerBuffer, "_handle_pending", _handle_pending)
    monkeypatch.setattr(faust.streams, "_current_event", {})

    class WaitResults(NamedTuple):
        done: list[Any]
        results: list[Any]

    monkeypatch.setattr(mode.services, "WaitResults", WaitResults)
    assert check.mismatches() == [
        "faust.transport.producer.ProducerBuffer._handle_pending is not a mode ServiceTask",
        "faust.streams._current_event is not a ContextVar",
        "mode.services.WaitResults has fields ('done', 'results')",
    ]


def test_a_mismatch_refuses_every_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "FAUST_VERSION", "0.16.0")
    original = Consumer.ack
    with pytest.raises(FaustMismatch) as refused:
        install_all(Settings())
    assert Consumer.ack is original, "nothing installed"
    assert refused.value.mismatches == (
        f"faust-streaming {metadata.version('faust-streaming')} is installed, 0.16.0 is pinned",
    )
    assert "0.16.0 is pinned" in str(refused.value)


def test_the_worker_refuses_to_start_with_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def no_topics(settings: Settings) -> list[str]:
        raise AssertionError("a worker that will not start creates no topics")

    monkeypatch.setattr(streams.admin, "create_topics", no_topics)
    monkeypatch.setattr(check, "FAUST_VERSION", "0.16.0")
    monkeypatch.delattr(Consumer, "_drain_messages")
    assert main(["worker"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the installed Faust does not match")
    assert "  - faust-streaming" in err
    assert f"  - {FAUST}._drain_messages is missing" in err
    assert "Traceback" not in err
