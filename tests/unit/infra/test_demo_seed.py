"""The demo page and what `make run` prints about the demo workspace."""

from __future__ import annotations

import stat
from pathlib import Path

from core.ai.llm import DEMO_LABEL
from core.settings import Settings
from infra.demo_seed import (
    DemoWorkspace,
    _read_credentials,
    _write_private,
    demo_model,
    page_url,
    render_page,
)
from infra.launcher import _demo_lines

DEMO = DemoWorkspace(
    email="demo@switchboard.local",
    password="Pa55wordPa55wordPa55",
    user_id="usr_1",
    workspace_id="ws_1",
    chatbot_id="bot_1",
    application_id="app_1",
    widget_key='pk_"><script>alert(1)</script>',
)
OFFLINE = Settings(llm_base_url=None, llm_model=None, gateway_host="127.0.0.1", gateway_port=8080)
ONLINE = Settings(llm_base_url="http://127.0.0.1:11434/v1", llm_model="llama3.2")


def test_the_page_embeds_the_widget_with_one_tag_and_its_key_escaped() -> None:
    page = render_page(OFFLINE, DEMO)
    assert page.count("<script") == 1
    assert (
        '<script src="/widget.js" '
        'data-key="pk_&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" async></script>'
    ) in page
    assert "call get_conversation_info" in page
    assert DEMO.password not in page


def test_the_demo_answers_with_the_configured_model_else_the_offline_one() -> None:
    assert demo_model(OFFLINE) == DEMO_LABEL
    assert "[demo model]" in render_page(OFFLINE, DEMO)
    assert demo_model(ONLINE) == "llama3.2"
    assert "<code>llama3.2</code> answers" in render_page(ONLINE, DEMO)


def test_make_run_prints_the_credentials_and_the_page() -> None:
    lines = _demo_lines(OFFLINE, DEMO)
    assert "Demo workspace (from the first run):" in lines
    assert f"  sign in:   {DEMO.email} / {DEMO.password}\n" in lines
    assert f"  chat page: {page_url(OFFLINE)}\n" in lines
    assert page_url(OFFLINE) == "http://localhost:8080/demo/"
    assert "created now" in _demo_lines(OFFLINE, DemoWorkspace(**{**vars(DEMO), "created": True}))


def test_the_credentials_file_is_private_and_a_bad_one_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "data" / "demo.json"
    assert _read_credentials(path) is None
    _write_private(path, "[]")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _read_credentials(path) is None
    _write_private(path, '{"email": 3}')
    assert _read_credentials(path) is None
