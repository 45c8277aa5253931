from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from infra.process import ManagedProcess


def _managed(tmp_path: Path) -> ManagedProcess:
    return ManagedProcess("probe", tmp_path / "run" / "probe.pid", tmp_path / "logs" / "probe.log")


def test_spawn_logs_and_stop(tmp_path: Path) -> None:
    process = _managed(tmp_path)
    pid = process.spawn(["bash", "-c", "echo hello from the child; exec sleep 60"])
    assert process.pid() == pid
    assert os.getpgid(pid) == pid  # its own session and process group
    deadline = time.monotonic() + 5
    while "hello from the child" not in process.log_tail():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert process.stop(timeout=5)
    assert process.pid() is None
    assert not process.pid_file.exists()
    assert not process.stop()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    process = _managed(tmp_path)
    process.spawn(["bash", "-c", "trap '' TERM; echo ready; sleep 60 & wait"])
    deadline = time.monotonic() + 5
    while "ready" not in process.log_tail():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    assert process.stop(timeout=0.5)
    assert time.monotonic() - started < 10
    assert process.pid() is None


def test_stale_pid_file_means_not_running(tmp_path: Path) -> None:
    process = _managed(tmp_path)
    process.pid_file.parent.mkdir(parents=True)
    process.pid_file.write_text("999999999\n")
    assert process.pid() is None
    assert process.exited()


def test_a_server_does_not_inherit_its_starters_descriptors(tmp_path: Path) -> None:
    """As under ``flock LOCK make test``: a descriptor the starter was given stays with it."""
    lock = os.open(tmp_path / "lock", os.O_RDONLY | os.O_CREAT)
    os.set_inheritable(lock, True)
    process = _managed(tmp_path)
    try:
        pid = process.spawn(["sleep", "60"])
        assert str(tmp_path / "lock") not in _descriptors_of(pid)
        assert process.stop(timeout=5)
    finally:
        os.close(lock)


def _descriptors_of(pid: int) -> set[str]:
    """What ``pid`` holds open; a descriptor closed while being listed (exec in progress) is
    skipped."""
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return held
