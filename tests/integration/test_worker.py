"""`switchboard worker` starts, declares every contract topic, and stops cleanly on SIGTERM,
closing every client it opened."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kafka import KafkaAdminClient

from core.ids import new_id
from core.security.secrets import SecretBox
from core.settings import Settings
from streams.contract import CONTRACT, FUNCTION_CALLS, MESSAGES_INBOUND, dead_letter_of
from tests.fakes.llm import Call, FakeLLM, Text, ToolCalls
from tests.fakes.tool_endpoint import ToolEndpoint
from tests.integration.pipeline_harness import (
    Conversation,
    Worker,
    create_application,
    insert_documents,
    send_all,
    wait_for_event,
)


def _partition_counts(settings: Settings) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
    finally:
        admin.close()


class _Output:
    """Collects a child's output lines in a thread, so the test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def join(self) -> None:
        self._thread.join(timeout=10)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.2)
        return False


def _delete_topic(settings: Settings, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        if name in admin.list_topics():
            admin.delete_topics([name])
        deadline = time.monotonic() + 30
        while name in admin.list_topics():
            assert time.monotonic() < deadline, f"{name} was not deleted"
            time.sleep(0.2)
    finally:
        admin.close()


def test_worker_declares_topics_and_shuts_down_gracefully(settings: Settings) -> None:
    # A dead-letter topic nothing reads yet: safe to delete, so the worker must create it again.
    _delete_topic(settings, dead_letter_of(FUNCTION_CALLS))
    with subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "worker", "--loglevel", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as worker:
        output = _Output(worker)
        try:
            assert output.wait_for("[^Worker]: Ready", timeout=90), "".join(output.lines[-30:])
            expected = {spec.name: spec.partitions for spec in CONTRACT}
            expected |= {spec.dead_letter: spec.partitions for spec in CONTRACT}
            deadline = time.monotonic() + 30
            while not all(_partition_counts(settings).get(n) == p for n, p in expected.items()):
                assert time.monotonic() < deadline, "the worker did not declare every topic"
                time.sleep(0.5)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
            output.join()
    assert code == 0, "".join(output.lines[-30:])
    assert any("created topics: function.calls.dlq" in line for line in output.lines)
    # Ready only after its start-up heap was frozen out of the collector's way (streams/heap.py).
    settled = next(i for i, line in enumerate(output.lines) if "heap settled:" in line)
    ready = next(i for i, line in enumerate(output.lines) if "[^Worker]: Ready" in line)
    assert settled < ready
    assert any("[^Worker]: Closing event loop" in line for line in output.lines)


#: What Python, aiohttp, redis-py and PyMongo report of a client, socket, transport or loop left
#: open when it is collected ("Unclosed client session", "unclosed transport", ...).
UNCLOSED = re.compile(r"unclosed|never closed|was destroyed but it is pending", re.IGNORECASE)


async def _tenant_with_a_tool(settings: Settings, llm: FakeLLM, endpoint: ToolEndpoint) -> str:
    """A workspace whose chatbot calls ``llm`` and may call one tenant tool at ``endpoint``."""
    workspace = new_id("ws")
    sealed = SecretBox(settings.encryption_key.get_secret_value()).seal(f"Bearer {endpoint.token}")
    await insert_documents(
        settings,
        "tools",
        {
            "_id": new_id("tool"),
            "workspace_id": workspace,
            "name": "lookup_order",
            "description": "Where an order is.",
            "url": endpoint.url("/orders/lookup"),
            "method": "POST",
            "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "secret_headers": {"Authorization": sealed},
            "enabled": True,
        },
    )
    return workspace


async def test_a_worker_that_used_every_client_closes_them_all_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    # Every client the pipeline opens, used once: MongoDB and Redis (every stage), the model
    # client on the model thread, the tool's HTTP session, and socket.io's Redis manager (the
    # answer streams to a web conversation).
    worker = Worker(
        tmp_path,
        "closing-worker",
        ai=True,
        env={
            "SWITCHBOARD_TOOL_ALLOW_NETWORKS": "127.0.0.1/32",
            "SWITCHBOARD_LLM_ALLOW_NETWORKS": "127.0.0.1/32",
            # Shown, not ignored as by default: a client left open is reported when collected.
            "PYTHONWARNINGS": "always::ResourceWarning",
        },
    )
    async with FakeLLM() as llm, ToolEndpoint() as endpoint:
        workspace = await _tenant_with_a_tool(settings, llm, endpoint)
        application = await create_application(
            settings,
            workspace,
            chatbot={
                "tools": ["lookup_order"],
                "llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model"},
            },
        )
        llm.script(ToolCalls([Call("lookup_order", {"id": 7})]), Text("Order 7 has shipped."))
        conversation = Conversation(workspace, application, "closing", channel="web")
        worker.start()
        try:
            worker.wait_ready()
            await send_all(settings, MESSAGES_INBOUND, [conversation.message("1", "Order 7?")])
            await wait_for_event(settings, conversation.id, "turn.completed", 1)
        finally:
            code = worker.stop()
    assert len(endpoint.requests) == 1, "the tool was not called"
    assert len(llm.requests) == 2, "the model was not called twice"
    log = worker.log.read_text(errors="replace")
    assert code == 0, worker.tail()
    assert "[^Worker]: Closing event loop" in log
    reported = [line for line in log.splitlines() if UNCLOSED.search(line)]
    assert reported == [], "\n".join(reported)
