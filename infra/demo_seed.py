"""The demo workspace ``make run`` seeds on its first run, so a newcomer can chat a minute later.

It is made through the REST API's own request models and stores (sign-up, a chatbot, an
application), so its documents are exactly those an operator would have made. The owner's
credentials are kept in ``.local/data/demo.json`` (mode 0600), beside the database they belong
to: ``make clean`` deletes both, and the next run seeds again. Every other run reads the file
back, so the credentials can be printed each time. The chatbot names no model: it answers with
the settings' LLM when one is configured and with the offline demo model otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from core.ai.llm import DEMO_LABEL, ModelSettings
from core.clients.database import Document, database, new_mongo_client
from core.security.passwords import hash_password
from core.security.secrets import SecretBox
from core.settings import Settings
from core.stores.application_store import ApplicationStore
from core.stores.chatbot_store import ChatbotStore
from core.stores.identity import EmailTaken, IdentityStore
from web.applications import ApplicationCreate
from web.chatbots import ChatbotCreate, new_chatbot_fields
from web.users import Register

DEMO_EMAIL = "demo@switchboard.local"
DEMO_NAME = "Demo"
PASSWORD_LENGTH = 20  # letters and digits: about 119 bits, and one double-click selects it all

PROMPT = (
    "You are the friendly assistant of the Switchboard demo. Greet visitors warmly, answer in a "
    "few sentences, and say so plainly when you do not know. When someone asks for a person, "
    "hand the conversation to a human operator."
)
INSTRUCTIONS = (
    "When asked about this conversation, call get_conversation_info. When the visitor says "
    "goodbye and needs nothing more, close the conversation."
)
WELCOME = 'Hi! I am the Switchboard demo bot. Say hello, or ask me to "call get_conversation_info".'


class DemoSeedError(Exception):
    """The demo workspace could not be made; the platform runs without it."""


@dataclass(frozen=True)
class DemoWorkspace:
    email: str
    password: str
    user_id: str
    workspace_id: str
    chatbot_id: str
    application_id: str
    widget_key: str
    #: Made by this call (not stored: it tells a first run from a later one).
    created: bool = field(default=False, compare=False)


def credentials_path(settings: Settings) -> Path:
    return settings.state_dir / "data" / "demo.json"


def page_path(settings: Settings) -> Path:
    return settings.state_dir / "data" / "site" / "demo" / "index.html"


def page_url(settings: Settings) -> str:
    return f"{settings.gateway_url}/demo/"


def demo_model(settings: Settings) -> str:
    """The model the demo chatbot answers with now: the settings' LLM, else the offline demo."""
    configured = ModelSettings.resolve({}, settings)
    return configured.model if configured is not None else DEMO_LABEL


async def seed_demo(settings: Settings) -> DemoWorkspace:
    """The demo workspace: the one ``demo.json`` names if its owner still exists, else a new one.

    Either way the demo page is (re)written, so that it always embeds the current widget key.
    """
    client = new_mongo_client(settings)
    try:
        db = database(client, settings)
        demo = await asyncio.to_thread(_read_credentials, credentials_path(settings))
        if demo is None or not await _owner_exists(db, demo):
            demo = await _create(db, settings)
            await asyncio.to_thread(_write_private, credentials_path(settings), _as_json(demo))
        await asyncio.to_thread(_write_page, page_path(settings), render_page(settings, demo))
        return demo
    finally:
        await client.close()


async def _owner_exists(db: AsyncDatabase[Document], demo: DemoWorkspace) -> bool:
    owner = await IdentityStore(db).by_email(demo.email)
    return owner is not None and owner["_id"] == demo.user_id


async def _create(db: AsyncDatabase[Document], settings: Settings) -> DemoWorkspace:
    owner = Register(
        email=DEMO_EMAIL, password=_new_password(), name="Demo owner", workspace_name=DEMO_NAME
    )
    try:
        user, workspace = await IdentityStore(db).register(
            email=owner.email, name=owner.name, password_hash=await hash_password(owner.password),
            workspace_name=owner.workspace_name,
        )  # fmt: skip
    except EmailTaken as error:
        raise DemoSeedError(
            f"{owner.email} exists but {credentials_path(settings)} does not hold its password; "
            "`make clean` starts afresh"
        ) from error
    workspace_id = str(workspace["_id"])
    try:
        box = SecretBox(settings.encryption_key.get_secret_value())
        chatbot_body = ChatbotCreate(name="Demo bot", instructions=INSTRUCTIONS)
        chatbot = await ChatbotStore(db).create(workspace_id, new_chatbot_fields(chatbot_body, box))
        applications = ApplicationStore(db)
        await applications.ensure_indexes()
        application_body = ApplicationCreate(
            name=DEMO_NAME, prompt=PROMPT, chatbot_id=chatbot["_id"], welcome_message=WELCOME
        )
        application = await applications.create(workspace_id, application_body.model_dump())
    except Exception:
        await _undo(db, workspace_id)
        raise
    return DemoWorkspace(
        email=owner.email,
        password=owner.password,
        user_id=str(user["_id"]),
        workspace_id=workspace_id,
        chatbot_id=str(chatbot["_id"]),
        application_id=str(application["_id"]),
        widget_key=str(application["widget_key"]),
        created=True,
    )


async def _undo(db: AsyncDatabase[Document], workspace_id: str) -> None:
    """Take a half-made demo workspace away again (no transactions on FerretDB), so that the
    next run can seed afresh instead of finding its email taken."""
    with contextlib.suppress(PyMongoError):
        for collection in ("applications", "chatbots", "users"):
            await db[collection].delete_many({"workspace_id": workspace_id})
        await db["workspaces"].delete_one({"_id": workspace_id})


def _new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))


_STORED = tuple(name for name in DemoWorkspace.__dataclass_fields__ if name != "created")


def _as_json(demo: DemoWorkspace) -> str:
    return json.dumps({name: getattr(demo, name) for name in _STORED}, indent=2) + "\n"


def _read_credentials(path: Path) -> DemoWorkspace | None:
    """What ``demo.json`` says, or None when it is missing or not what this module wrote."""
    try:
        stored = json.loads(path.read_text())
        values = {name: stored[name] for name in _STORED}
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not all(isinstance(value, str) and value for value in values.values()):
        return None
    return DemoWorkspace(**values)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner alone, replacing the file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    partial.chmod(0o600)  # O_CREAT's mode does not apply to a file left by an earlier crash
    partial.replace(path)


def _write_page(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def render_page(settings: Settings, demo: DemoWorkspace) -> str:
    """The demo page: a few things to try, and the widget embedded with its one tag."""
    model = demo_model(settings)
    if model == DEMO_LABEL:
        answers = (
            "The offline demo model answers, marking each reply <code>[demo model]</code>; set "
            "<code>SWITCHBOARD_LLM_BASE_URL</code> and <code>SWITCHBOARD_LLM_MODEL</code> for "
            "real answers."
        )
    else:
        answers = f"<code>{html.escape(model)}</code> answers."
    return _PAGE.format(
        answers=answers,
        email=html.escape(demo.email),
        key=html.escape(demo.widget_key, quote=True),
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Switchboard demo</title>
  <style>
    body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 3rem auto;
           padding: 0 1rem; color: #1d2433; }}
    h1 {{ margin-bottom: 0.2rem; }}
    .tag {{ color: #5b6476; margin-top: 0; }}
    li {{ margin: 0.6rem 0; }}
    code {{ background: #f1f3f7; padding: 0 0.25rem; border-radius: 3px; }}
  </style>
</head>
<body>
  <h1>Switchboard demo</h1>
  <p class="tag">The chat widget of the demo workspace's application is on this page: open it
    from the corner. {answers}</p>
  <h2>Things to try</h2>
  <ol>
    <li><strong>Say hello.</strong> Your message goes through the whole pipeline, and the answer
      streams back into the widget.</li>
    <li><strong>Ask the bot to &ldquo;call get_conversation_info&rdquo;.</strong> It calls a
      built-in tool and tells you what the tool returned.</li>
    <li><strong>Watch as an operator.</strong> Sign in as the workspace's owner,
      <code>{email}</code>, with the password <code>make run</code> printed (it is also in
      <code>.local/data/demo.json</code>); follow this conversation in the operators' inbox,
      take it over, and your replies reach this page live.</li>
  </ol>
  <p><a href="/">Switchboard</a></p>
  <script src="/widget.js" data-key="{key}" async></script>
</body>
</html>
"""
