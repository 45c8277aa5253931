from __future__ import annotations

import io
import sys
from pathlib import Path

from infra import children
from infra.children import is_loud

FAUST_INFO = "[2025-01-31 12:00:00,123] [4567] [INFO] [^Worker]: Ready\n"
FAUST_WARNING = "[2025-01-31 12:00:00,123] [4567] [WARNING] Heartbeat failed: ERROR in group\n"
WEB_INFO = "2025-01-31 12:00:00,123 INFO web.runner: users listening on http://127.0.0.1:8100\n"
WEB_ERROR = "2025-01-31 12:00:00,123 ERROR aiohttp.server: Error handling request\n"


def test_records_at_warning_or_above_are_loud_and_info_is_not() -> None:
    for quiet in (FAUST_INFO, WEB_INFO):
        assert not is_loud(quiet, after_loud=True)
    for loud in (FAUST_WARNING, WEB_ERROR):
        assert is_loud(loud, after_loud=False)


def test_a_records_level_is_its_first_level_word() -> None:
    assert not is_loud("[2025-01-31 12:00:00,123] [1] [INFO]: WARNING: x\n", after_loud=False)


def test_lines_after_a_record_follow_it_and_a_bare_traceback_is_loud() -> None:
    table = "| topic | partitions |\n"
    assert is_loud(table, after_loud=True)
    assert not is_loud(table, after_loud=False)
    assert is_loud("Traceback (most recent call last):\n", after_loud=False)


def test_everything_goes_to_the_log_and_only_what_is_loud_to_the_terminal(
    tmp_path: Path,
) -> None:
    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level='INFO',"
        " format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
        "log = logging.getLogger('probe')\n"
        "log.info('group joined')\n"
        "print('| topic | partitions |')\n"
        "log.warning('slow broker')\n"
        "log.info('rebalanced')\n"
        "raise SystemExit('gone: bye')\n"
    )
    terminal = io.StringIO()
    log_file = tmp_path / "logs" / "probe.log"
    child = children.start("probe", [sys.executable, "-c", script], log_file, terminal)
    assert child.process.wait(timeout=30) == 1
    tail = child.log_tail()

    for text in (
        "group joined",
        "| topic | partitions |",
        "slow broker",
        "rebalanced",
        "gone: bye",
    ):
        assert text in tail
    shown = terminal.getvalue().splitlines()
    assert len(shown) == 1, shown
    assert shown[0].startswith("probe: ")
    assert "WARNING probe: slow broker" in shown[0]


def test_a_traceback_reaches_the_terminal(tmp_path: Path) -> None:
    terminal = io.StringIO()
    child = children.start(
        "probe", [sys.executable, "-c", "1 / 0"], tmp_path / "probe.log", terminal
    )
    assert child.process.wait(timeout=30) == 1
    children.stop([child])  # and its relay has copied everything
    shown = terminal.getvalue()
    assert shown.startswith("probe: Traceback (most recent call last):")
    assert "probe: ZeroDivisionError: division by zero" in shown
