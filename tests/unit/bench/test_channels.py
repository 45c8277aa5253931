"""The channels benchmark's own arithmetic: what its load generator posts, what it reads back
from wrk, and the ideal it compares the sender with."""

from __future__ import annotations

import json

import pytest

from bench.channels import MARKERS, TEXT, ideal_rate, parse_wrk, render, update_template
from tests.fakes import telegram_updates as tg

WRK_OUTPUT = """\
Running 8s test @ http://127.0.0.1:8406/webhooks/telegram/ch_1
  1 threads and 40 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   254.10ms   80.52ms 601.33ms   70.00%
    Req/Sec   160.12     30.01   210.00     70.00%
  Latency Distribution
     50%  239.66ms
     75%  300.01ms
     90%  380.20ms
     99%  497.35ms
  1262 requests in 8.01s, 190.10KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:    157.56
Transfer/sec:     23.73KB
"""


def test_the_template_renders_the_update_telegram_would_send() -> None:
    template = update_template(1_700_000_000)
    assert set(MARKERS) == {"UPDATE", "USER", "MESSAGE"}
    rendered = render(template, {"UPDATE": 731_000_007, "USER": 5_500_000_123, "MESSAGE": 8})
    expected = tg.text(731_000_007, 5_500_000_123, 5_500_000_123, TEXT, 8, date=1_700_000_000)
    assert json.loads(rendered) == expected


def test_each_request_gets_its_own_numbers() -> None:
    template = update_template(1_700_000_000)
    first = json.loads(render(template, {"UPDATE": 1, "USER": 10, "MESSAGE": 2}))
    second = json.loads(render(template, {"UPDATE": 2, "USER": 11, "MESSAGE": 3}))
    assert first["update_id"] != second["update_id"]
    assert first["message"]["chat"]["id"] == first["message"]["from"]["id"] == 10


def test_wrk_figures_and_every_kind_of_error_are_read() -> None:
    requests, per_s, p50, p99, errors = parse_wrk(WRK_OUTPUT)
    assert (requests, per_s, p50, p99) == (1262, 157.56, 239.66, 497.35)
    assert errors == 2 + 3 + 4


def test_output_without_figures_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="wrk said"):
        parse_wrk("unable to connect to 127.0.0.1:8406 Connection refused")


@pytest.mark.parametrize(
    ("bots", "chats", "ideal"),
    [(4, 40, 120.0), (4, 10, 40.0), (1, 30, 30.0), (2, 1, 2.0)],
    ids=["bound-by-the-bot", "bound-by-the-chats", "both", "one-chat"],
)
def test_the_ideal_is_the_lower_limit_of_each_bot(bots: int, chats: int, ideal: float) -> None:
    assert ideal_rate(bots, chats, chat_per_s=1.0, bot_per_s=30.0) == ideal
