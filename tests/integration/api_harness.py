"""What the REST API tests share: operators signed in with minted tokens, one fresh workspace
each (the ``db`` and ``redis`` fixtures are in conftest.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from core.clients.database import Document
from core.security.tokens import TokenService
from core.settings import Settings

Db = AsyncDatabase[Document]


def operator_headers(settings: Settings, workspace_id: str, role: str) -> dict[str, str]:
    """An access token of a new session of a new operator of ``workspace_id``."""
    token = TokenService(settings).access_token(
        f"usr_{uuid.uuid4().hex}", workspace_id, role, f"ses_{uuid.uuid4().hex}"
    )
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Tenant:
    """A fresh workspace and an admin of it."""

    workspace_id: str
    headers: dict[str, str]

    def as_role(self, settings: Settings, role: str) -> dict[str, str]:
        return operator_headers(settings, self.workspace_id, role)


def new_tenant(settings: Settings) -> Tenant:
    workspace_id = f"ws_{uuid.uuid4().hex}"
    return Tenant(workspace_id, operator_headers(settings, workspace_id, "admin"))
