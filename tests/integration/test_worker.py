"""`switchboard worker` starts, declares every contract topic, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from kafka import KafkaAdminClient

from core.settings import Settings
from streams.contract import CONTRACT, FUNCTION_CALLS, dead_letter_of


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
