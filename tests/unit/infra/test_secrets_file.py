from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.security.default_secrets import DefaultSecret
from core.security.local_secrets import SECRET_FIELDS
from core.settings import Settings
from infra.secrets_file import ensure_secrets_file, startup_settings


def test_written_once_private_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets.env"
    assert ensure_secrets_file(path)
    written = path.read_text()
    assert not ensure_secrets_file(path)
    assert path.read_text() == written
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secrets.env"]
    values = dict(
        line.split("=", 1) for line in written.splitlines() if line and not line.startswith("#")
    )
    assert set(values) == set(SECRET_FIELDS.values())
    assert len(set(values.values())) == 3
    assert all(len(value) >= 40 for value in values.values())


def test_processes_starting_at_once_agree_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_secrets_file(path))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.env"]


def test_the_local_stack_starts_with_its_generated_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_STATE_DIR", str(tmp_path))
    for variable in SECRET_FIELDS.values():
        monkeypatch.delenv(variable, raising=False)
    settings = startup_settings(Settings())
    assert (tmp_path / "secrets.env").is_file()
    for field in SECRET_FIELDS:
        assert getattr(settings, field) != Settings.model_fields[field].default
    assert startup_settings(settings) is settings


def test_off_the_local_stack_nothing_is_written_and_defaults_are_refused(
    tmp_path: Path,
) -> None:
    settings = Settings(state_dir=tmp_path, redis_url="redis://cache:6379/0")
    with pytest.raises(DefaultSecret):
        startup_settings(settings)
    assert list(tmp_path.iterdir()) == []
