"""The demo workspace `make run` seeds, against the real FerretDB (and Redis, to sign in): made
once, read back on every later run, made again when the database lost it, never half-made."""

from __future__ import annotations

import html
import json
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pymongo.asynchronous.database import AsyncDatabase

from core.ai.llm import ModelSettings
from core.clients.database import Document, new_mongo_client
from core.security.passwords import verify_password
from core.settings import Settings
from core.stores.application_store import ApplicationStore
from core.stores.chatbot_store import ChatbotStore
from infra.demo_seed import (
    DEMO_EMAIL,
    DemoSeedError,
    DemoWorkspace,
    credentials_path,
    page_path,
    seed_demo,
)
from web import users

COLLECTIONS = ("workspaces", "users", "chatbots", "applications")


@pytest.fixture
def demo_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The local services, with a throwaway database and state directory, and no LLM."""
    return settings.model_copy(
        update={
            "state_dir": tmp_path,
            "mongo_database": f"test_demo_{uuid.uuid4().hex[:8]}",
            "llm_base_url": None,
            "llm_model": None,
        }
    )


@pytest.fixture
async def demo_db(demo_settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    client = new_mongo_client(demo_settings)
    try:
        yield client[demo_settings.mongo_database]
        await client.drop_database(demo_settings.mongo_database)
    finally:
        await client.close()


async def counts(db: AsyncDatabase[Document]) -> dict[str, int]:
    return {name: await db[name].count_documents({}) for name in COLLECTIONS}


async def signs_in(settings: Settings, demo: DemoWorkspace) -> bool:
    """Through the users service's own sign-in."""
    address = f"10.{uuid.uuid4().int % 251}.0.1"  # this test's own sign-in limit
    async with TestClient(TestServer(users.create_app(settings))) as client:
        response = await client.post(
            "/api/auth/login",
            json={"email": demo.email, "password": demo.password},
            headers={"X-Forwarded-For": address},
        )
        return response.status == 200 and "access_token" in await response.json()


async def test_the_first_run_makes_a_workspace_a_newcomer_can_use(
    demo_settings: Settings, demo_db: AsyncDatabase[Document]
) -> None:
    demo = await seed_demo(demo_settings)

    assert demo.created
    assert demo.email == DEMO_EMAIL
    assert len(demo.password) >= 20
    owner = await demo_db["users"].find_one({"email": DEMO_EMAIL})
    assert owner is not None
    assert (owner["_id"], owner["workspace_id"], owner["role"]) == (
        demo.user_id,
        demo.workspace_id,
        "owner",
    )
    assert await verify_password(owner["password_hash"], demo.password)
    assert await signs_in(demo_settings, demo)

    application = await ApplicationStore(demo_db).get(demo.workspace_id, demo.application_id)
    assert application["name"] == "Demo"
    assert application["chatbot_id"] == demo.chatbot_id
    assert application["prompt"]
    assert application["widget_key"] == demo.widget_key
    assert demo.widget_key.startswith("pk_")
    chatbot = await ChatbotStore(demo_db).get(demo.workspace_id, demo.chatbot_id)
    assert chatbot["llm"] == {}  # no model of its own: the settings' LLM, else the demo model
    assert ModelSettings.resolve(chatbot["llm"], demo_settings) is None
    assert await counts(demo_db) == dict.fromkeys(COLLECTIONS, 1)

    stored = credentials_path(demo_settings)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {
        "email": demo.email,
        "password": demo.password,
        "user_id": demo.user_id,
        "workspace_id": demo.workspace_id,
        "chatbot_id": demo.chatbot_id,
        "application_id": demo.application_id,
        "widget_key": demo.widget_key,
    }
    page = page_path(demo_settings).read_text()
    assert page.count("<script") == 1
    tag = f'<script src="/widget.js" data-key="{html.escape(demo.widget_key)}" async></script>'
    assert tag in page
    assert "<title>Switchboard demo</title>" in page
    assert demo.password not in page


async def test_a_later_run_reads_the_same_workspace_back_and_makes_nothing(
    demo_settings: Settings, demo_db: AsyncDatabase[Document]
) -> None:
    first = await seed_demo(demo_settings)
    before = await counts(demo_db)
    page_path(demo_settings).unlink()  # the page is derived: written again when missing

    again = await seed_demo(demo_settings)

    assert not again.created
    assert again == first
    assert await counts(demo_db) == before
    assert first.widget_key in page_path(demo_settings).read_text()
    assert await signs_in(demo_settings, again)


async def test_a_wiped_database_is_seeded_again(
    demo_settings: Settings, demo_db: AsyncDatabase[Document]
) -> None:
    first = await seed_demo(demo_settings)
    await demo_db["users"].delete_many({})

    second = await seed_demo(demo_settings)

    assert second.created
    assert (second.user_id, second.application_id) != (first.user_id, first.application_id)
    assert second.password != first.password
    assert await signs_in(demo_settings, second)
    stored = json.loads(credentials_path(demo_settings).read_text())
    assert (stored["password"], stored["widget_key"]) == (second.password, second.widget_key)
    assert second.widget_key in page_path(demo_settings).read_text()
    assert first.widget_key not in page_path(demo_settings).read_text()


async def test_an_owner_whose_password_is_lost_is_refused_not_overwritten(
    demo_settings: Settings, demo_db: AsyncDatabase[Document]
) -> None:
    await seed_demo(demo_settings)
    before = await counts(demo_db)
    credentials_path(demo_settings).unlink()

    with pytest.raises(DemoSeedError, match="make clean"):
        await seed_demo(demo_settings)

    assert await counts(demo_db) == before


async def test_a_failure_halfway_leaves_nothing_behind(
    demo_settings: Settings, demo_db: AsyncDatabase[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> Document:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(ApplicationStore, "create", broken)
        with pytest.raises(RuntimeError, match="went away"):
            await seed_demo(demo_settings)

    assert await counts(demo_db) == dict.fromkeys(COLLECTIONS, 0)
    assert not credentials_path(demo_settings).exists()
    assert (await seed_demo(demo_settings)).created
