"""infra.stack with a stand-in server: a real process whose "keys" are its environment."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from infra.services import LocalService, Progress
from infra.stack import StartError, ensure_local_secrets, ensure_up


class KeyedServer(LocalService):
    """Serves only settings with the key it was started with, like S3 and its root keys."""

    name = "keyed"
    start_timeout = 10.0

    def __init__(self, settings: Settings, key: str) -> None:
        super().__init__(settings)
        self.key = key

    @property
    def address(self) -> str:
        return "here"

    def installed(self) -> bool:
        return True

    def install(self, progress: Progress) -> None:
        raise AssertionError("installed already")

    def argv(self) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(120)"]

    def env(self) -> dict[str, str]:
        return {"KEYED_SERVER_KEY": self.key}

    def running_key(self) -> str | None:
        pid = self.process.pid()
        if pid is None:
            return None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        found = [item for item in environ if item.startswith(b"KEYED_SERVER_KEY=")]
        return found[0].split(b"=", 1)[1].decode() if found else None

    def healthy(self) -> bool:
        return self.running_key() == self.key

    def conflict(self) -> str | None:
        running = self.running_key()
        return "runs with other keys" if running not in (None, self.key) else None


class Squatter(KeyedServer):
    """Something else answers there, with other keys, and has no pid file of ours."""

    def conflict(self) -> str | None:
        return "runs with other keys"


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(state_dir=tmp_path)
    yield settings
    KeyedServer(settings, "").process.stop(timeout=5)


def test_a_server_we_started_with_other_keys_is_restarted_with_these(settings: Settings) -> None:
    old = KeyedServer(settings, "published")
    assert ensure_up(old)
    first = old.process.pid()

    new = KeyedServer(settings, "generated")
    assert ensure_up(new)
    assert new.running_key() == "generated"
    assert new.process.pid() != first
    assert not ensure_up(new), "healthy now: left alone"


def test_one_we_did_not_start_is_not_touched(settings: Settings) -> None:
    with pytest.raises(StartError, match="runs with other keys, and Switchboard did not start"):
        ensure_up(Squatter(settings, "generated"))


def test_when_ours_was_not_the_one_answering_it_is_refused(settings: Settings) -> None:
    assert ensure_up(KeyedServer(settings, "ours, elsewhere"))
    with pytest.raises(StartError, match="did not start it"):
        ensure_up(Squatter(settings, "generated"))


def test_the_secrets_are_made_before_anything_starts(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(StartError, match="generated just now"):
        ensure_local_secrets(settings)
    assert (tmp_path / "secrets.env").is_file()
    ensure_local_secrets(Settings(state_dir=tmp_path))  # read after: fine


def test_off_the_local_stack_no_secrets_are_made(tmp_path: Path) -> None:
    ensure_local_secrets(Settings(state_dir=tmp_path, kafka_url="kafka://kafka:9092"))
    assert list(tmp_path.iterdir()) == []
