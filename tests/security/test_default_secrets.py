"""The published default secrets: nothing off the local stack starts with them, and the local
stack does not use them (it generates its own on the first run), so a token signed with the
default JWT secret from the source code is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import jwt
import pytest

from core.security.local_secrets import SECRET_FIELDS
from core.security.tokens import ALGORITHM, AUDIENCE
from core.settings import PROJECT_ROOT, Settings
from tests.forged_tokens import signed

#: The addresses of the Docker compose deployment: not the local stack.
DEPLOYED = {
    "SWITCHBOARD_KAFKA_URL": "kafka://kafka:9092",
    "SWITCHBOARD_MONGO_URL": "mongodb://mongo:27017/",
    "SWITCHBOARD_REDIS_URL": "redis://redis:6379/0",
    "SWITCHBOARD_S3_ENDPOINT": "minio:9000",
    "SWITCHBOARD_WEB_HOST": "0.0.0.0",
}


def _published(field: str) -> str:
    default = Settings.model_fields[field].default
    return str(default.get_secret_value())


def _switchboard(state_dir: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``switchboard ARGV`` with no secret set, its local state (and secrets) in ``state_dir``."""
    inherited = {k: v for k, v in os.environ.items() if k not in SECRET_FIELDS.values()}
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *argv],
        env={**inherited, "SWITCHBOARD_STATE_DIR": str(state_dir), **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "addresses"),
    [
        (["web", "users"], DEPLOYED),
        (["worker"], {"SWITCHBOARD_KAFKA_URL": "kafka://10.20.30.40:9092"}),
    ],
    ids=["web users, deployed", "worker, remote Kafka"],
)
def test_a_process_off_the_local_stack_refuses_the_default_secrets(
    tmp_path: Path, argv: list[str], addresses: dict[str, str]
) -> None:
    result = _switchboard(tmp_path, *argv, SWITCHBOARD_WEB_BASE_PORT="18300", **addresses)

    assert result.returncode == 2, result.stdout + result.stderr
    for variable in SECRET_FIELDS.values():
        assert f"{variable} has its published default value" in result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert "created topics" not in result.stdout
    assert list(tmp_path.iterdir()) == [], "it wrote its state before refusing"


def test_one_default_secret_is_enough_to_refuse(tmp_path: Path) -> None:
    result = _switchboard(
        tmp_path,
        "web",
        "users",
        SWITCHBOARD_JWT_SECRET="an-operator-secret-of-their-own-0123456789",
        SWITCHBOARD_S3_SECRET_KEY="an-operator-s3-secret-0123456789",
        **DEPLOYED,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "error: SWITCHBOARD_ENCRYPTION_KEY has its published default value; "
        "set it to a secret of your own (e.g. `openssl rand -hex 32`)"
    )
    assert "SWITCHBOARD_JWT_SECRET" not in result.stderr


def test_the_local_stack_generates_private_secrets_once(tmp_path: Path) -> None:
    first = _switchboard(tmp_path, "status")
    secrets_file = tmp_path / "secrets.env"
    written = secrets_file.read_text()
    second = _switchboard(tmp_path, "status")

    assert "has its published default" not in first.stderr + second.stderr
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert secrets_file.read_text() == written, "the second run rewrote the secrets"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["secrets.env"]
    local = Settings(state_dir=tmp_path)
    for field, variable in SECRET_FIELDS.items():
        value = getattr(local, field).get_secret_value()
        assert value != _published(field), variable
        assert f"{variable}={value}\n" in written


async def test_a_token_signed_with_the_published_jwt_secret_is_refused(
    settings: Settings, web_all: subprocess.Popen[bytes]
) -> None:
    users = settings.service_url("users")
    account = {
        "email": f"forger-{os.urandom(6).hex()}@example.test",
        "password": "correct horse battery",
        "name": "Mallory",
        "workspace_name": "Forgery",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{users}/api/auth/register", json=account) as response:
            assert response.status in (201, 202), await response.text()
        sign_in = {"email": account["email"], "password": account["password"]}
        async with http.post(f"{users}/api/auth/login", json=sign_in) as response:
            assert response.status == 200, await response.text()
            genuine = (await response.json())["access_token"]
        # The same claims, of a real user and session, signed with the secret in the source.
        claims = jwt.decode(genuine, options={"verify_signature": False}, audience=AUDIENCE)
        forged = signed(claims, _published("jwt_secret"))
        assert jwt.get_unverified_header(forged)["alg"] == ALGORITHM

        answers = {}
        for name, token in (("genuine", genuine), ("forged", forged)):
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{users}/api/users/me", headers=headers) as response:
                answers[name] = response.status
    assert answers == {"genuine": 200, "forged": 401}
