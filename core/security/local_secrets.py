"""The local stack's own secrets: ``<state_dir>/secrets.env``, read as a settings source.

The file is written once, on the first run, by ``infra.secrets_file``. Every Switchboard
process and the local S3 server then share its values, so none of them runs with the
published defaults. It ranks below the environment and ``.env``: a value set there wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource

FILE_NAME = "secrets.env"

#: Each secret the file holds: its settings field and its environment variable.
SECRET_FIELDS: dict[str, str] = {
    "jwt_secret": "SWITCHBOARD_JWT_SECRET",
    "encryption_key": "SWITCHBOARD_ENCRYPTION_KEY",
    "s3_secret_key": "SWITCHBOARD_S3_SECRET_KEY",
}


def secrets_file(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


class LocalSecretsSource(PydanticBaseSettingsSource):
    """The secrets of ``state_dir``'s file, ``state_dir`` as the other sources set it."""

    def __init__(
        self, settings_cls: type[BaseSettings], above: tuple[PydanticBaseSettingsSource, ...]
    ) -> None:
        super().__init__(settings_cls)
        self._above = above

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the file whole

    def _state_dir(self) -> Path:
        for source in self._above:
            value = source().get("state_dir")
            if value is not None:
                return Path(value)
        return Path(self.settings_cls.model_fields["state_dir"].default)

    def __call__(self) -> dict[str, Any]:
        path = secrets_file(self._state_dir())
        if not path.is_file():
            return {}
        values = DotEnvSettingsSource(self.settings_cls, env_file=path)()
        return {field: values[field] for field in SECRET_FIELDS if field in values}
