from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from core.security.local_secrets import secrets_file
from core.settings import Settings


def _write(state_dir: Path, text: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    secrets_file(state_dir).write_text(text)


def test_the_state_dirs_file_gives_the_secrets(tmp_path: Path) -> None:
    _write(tmp_path, "# comment\nSWITCHBOARD_JWT_SECRET=from-the-file\n")
    settings = Settings(state_dir=tmp_path)
    assert settings.jwt_secret.get_secret_value() == "from-the-file"
    assert settings.encryption_key == Settings.model_fields["encryption_key"].default


def test_the_state_dir_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "SWITCHBOARD_S3_SECRET_KEY=from-the-file\n")
    monkeypatch.setenv("SWITCHBOARD_STATE_DIR", str(tmp_path))
    assert Settings().s3_secret_key.get_secret_value() == "from-the-file"


def test_the_environment_and_arguments_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "SWITCHBOARD_JWT_SECRET=file\nSWITCHBOARD_ENCRYPTION_KEY=file\n")
    monkeypatch.setenv("SWITCHBOARD_JWT_SECRET", "environment")
    settings = Settings(state_dir=tmp_path, encryption_key=SecretStr("argument"))
    assert settings.jwt_secret.get_secret_value() == "environment"
    assert settings.encryption_key.get_secret_value() == "argument"


def test_the_file_sets_nothing_but_the_secrets(tmp_path: Path) -> None:
    _write(tmp_path, "SWITCHBOARD_KAFKA_URL=kafka://elsewhere:9092\n")
    assert Settings(state_dir=tmp_path).kafka_url == Settings.model_fields["kafka_url"].default


def test_no_file_leaves_the_defaults(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "missing")
    assert settings.jwt_secret == Settings.model_fields["jwt_secret"].default
