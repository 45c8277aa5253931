"""The processes ``switchboard run`` keeps in the foreground, and where their output goes.

Each child's output, every line of it, goes to its log file under ``.local/logs/``. Only what
needs a look also reaches the terminal: log records at WARNING or above, with the lines that
follow them (a traceback), and a traceback printed outside any record. Faust's and aiokafka's
INFO lines (topic tables, group joins) would otherwise bury the launcher's own lines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# A log record's first line starts with its time: Faust's "[2025-01-31 12:00:00,123] [pid]
# [LEVEL]: ..." and the web services' "2025-01-31 12:00:00,123 LEVEL name: ...". Its first
# level word is its level: nothing before it in either format is a word.
_RECORD = re.compile(r"\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")
_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
_LOUD = frozenset({"WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"})
_TRACEBACK = "Traceback (most recent call last):"


def is_loud(line: str, *, after_loud: bool) -> bool:
    """Whether ``line`` goes to the terminal; ``after_loud`` is whether the line before did."""
    if _RECORD.match(line):
        level = _LEVEL.search(line)
        return level is not None and level.group(1) in _LOUD
    return after_loud or line.startswith(_TRACEBACK)


@dataclass(frozen=True)
class Child:
    """A child process whose output a thread copies to its log file and, in part, the terminal."""

    label: str
    process: subprocess.Popen[str]
    log_file: Path
    relay: threading.Thread

    def exited(self) -> bool:
        return self.process.poll() is not None

    def log_tail(self, lines: int = 25) -> str:
        """The end of its log, once the relay has copied what the process wrote before exiting."""
        self.relay.join(timeout=5)
        text = self.log_file.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def start(label: str, argv: Sequence[str], log_file: Path, terminal: IO[str]) -> Child:
    """Start ``argv`` in its own session (Ctrl-C reaches the launcher only, which stops it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {list(argv)}\n")
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its prints arrive as they are made
    )
    assert process.stdout is not None
    relay = threading.Thread(
        target=_relay, args=(process.stdout, log_file, label, terminal), daemon=True
    )
    relay.start()
    return Child(label, process, log_file, relay)


def _relay(output: IO[str], log_file: Path, label: str, terminal: IO[str]) -> None:
    loud = False
    with output, log_file.open("a") as log:
        for line in output:
            log.write(line)
            log.flush()
            loud = is_loud(line, after_loud=loud)
            if loud:
                terminal.write(f"{label}: {line}")
                terminal.flush()


def stop(children: Sequence[Child], timeout: float = 20.0) -> None:
    """SIGTERM each child, wait for all, SIGKILL what is left; then let the relays finish."""
    for child in children:
        if not child.exited():
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
    for child in children:
        child.relay.join(timeout=5)
