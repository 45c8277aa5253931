"""Channels: what a Telegram webhook costs to take in, and how close the sender comes to the limits.

Ingress: `switchboard web integrations` in its own process, with a new connected channel (sealed
token and webhook secret) in MongoDB. wrk, in a process of its own (one thread, 40 connections:
Telegram's default for a webhook), posts Telegram updates for a fixed time, each with a new
``update_id`` and ``message_id`` (its Lua script fills them in) from one of 1,000 private chats,
so every request is verified, claimed in Redis and produced to Kafka, acked, before its 200. The
baseline is the bare aiohttp hello-world (`bench/hello.py`) under the same wrk in the same run; a
third row posts one update that was already taken, again and again: a redelivery, which stops at
the dedup check. What reached messages.inbound is counted after each row.

Sender: FakeTelegram (`tests/fakes/telegram.py`) in its own process at Telegram's documented
limits (per chat 1 a second, bursts of 3; per bot 30 a second, bursts of 30), and a `switchboard
worker` sending to it. K bots x M chats x P messages go to platform.outbound at once, chat by
chat in turn, as answers to many conversations would. Delivered per second runs from the first
produce to the fake's last accepted send; the ideal is what the limits allow, the sum over bots
of min(30, M x 1) a second. A second configuration raises the sender's and the fake's limits out
of the way: the sender's own ceiling.

Each row also says where the CPU went (``/proc``): the server or worker, FerretDB, Kafka, Redis,
the load generator or the fake, and the whole machine. The ingress's records are dead-lettered
downstream (the channel has no application); each worker first waits for the pipeline's
consumer group to be its own, then catches up with what the group has not taken (those records
included), so none of it leaks into the measurement or into the next benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError

from bench.gateway import _millis, _port_free, _wait_for
from core import ids
from core.clients.database import Document
from core.settings import Settings
from infra.services import apt_install
from infra.stack import status
from streams.app import APP_ID
from streams.contract import MESSAGES_INBOUND, PLATFORM_OUTBOUND
from streams.records import InboundMessage, decode, encode
from tests.fakes import telegram_updates as tg
from tests.fakes.telegram import SECRET_HEADER, FakeTelegram
from tests.integration.channel_harness import bot_token, platform_send, telegram_channel
from tests.integration.topic_reader import end_offsets, records_since

#: Telegram's default ``max_connections`` for a webhook.
CONNECTIONS = 40
DURATION_S = 8
USERS = 1_000
FIRST_UPDATE = 731_000_000
FIRST_USER = 5_500_000_000
TEXT = "Hi! My order #48213 still says 'processing' a week later. Could you check on it?"
#: Numbers that stand for the fields the load generator fills in, one per request.
MARKERS = {"UPDATE": 1_000_000_001, "USER": 2_000_000_002, "MESSAGE": 3_000_000_003}
BOTS, CHATS, PER_CHAT = 4, 40, 12
#: The fake's defaults, Telegram's documented limits: (burst, per second) per chat and per bot.
DOCUMENTED = (3, 1.0, 30, 30.0)
#: Limits so high that the sender's own pace is what shows.
RAISED = (10_000, 10_000.0, 10_000, 10_000.0)


@dataclass(frozen=True)
class Sizes:
    connections: int = CONNECTIONS
    duration_s: int = DURATION_S
    bots: int = BOTS
    chats: int = CHATS
    per_chat: int = PER_CHAT
    raised: bool = True


@dataclass(frozen=True)
class Load:
    """One wrk row: requests per second, latency, and what the server spent on them."""

    name: str
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float
    cpu: Mapping[str, float]  # percent of one core, per process (``Meter``)
    produced: int | None = None


@dataclass(frozen=True)
class Delivery:
    """One sender configuration: K bots x M chats x P messages through the fake."""

    name: str
    messages: int
    per_second: float
    ideal: float | None
    first_send_ms: float
    floods: int
    requests: int
    duplicates: int
    cpu_ms_per_message: float
    cpu: Mapping[str, float]  # percent of one core, per process (``Meter``)
    caught_up: int


@dataclass(frozen=True)
class Channels:
    sizes: Sizes
    loads: list[Load]
    deliveries: list[Delivery]
    load_average: tuple[float, float]  # 1-minute, as the ingress and as the sender began


# --- pure pieces ----------------------------------------------------------------------------


def ideal_rate(bots: int, chats: int, chat_per_s: float, bot_per_s: float) -> float:
    """Sends a second that the limits allow at best: each bot is bound by its own limit or by
    its chats' together, whichever is lower (bursts aside)."""
    return bots * min(bot_per_s, chats * chat_per_s)


def update_template(date: int) -> str:
    """A Telegram text update as compact JSON, with ``@UPDATE@``, ``@USER@`` and ``@MESSAGE@``
    where each request's numbers go."""
    update = tg.text(
        MARKERS["UPDATE"], MARKERS["USER"], MARKERS["USER"], TEXT, MARKERS["MESSAGE"], date=date
    )
    body = json.dumps(update, separators=(",", ":"))
    for name, number in MARKERS.items():
        body = body.replace(str(number), f"@{name}@")
    return body


def render(template: str, values: Mapping[str, int]) -> str:
    """What the load generator's script makes of the template for one request."""
    return re.sub(r"@([A-Z]+)@", lambda found: str(values[found.group(1)]), template)


def wrk_script(template: str, secret: str, *, fresh: bool) -> str:
    """wrk's Lua: a new update and message id on every request (from one of ``USERS`` chats),
    or, unless ``fresh``, always the first update."""
    head = (
        f"local template = [==[{template}]==]\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["{SECRET_HEADER}"] = "{secret}"\n'
    )
    if not fresh:
        first = {"UPDATE": FIRST_UPDATE, "USER": FIRST_USER, "MESSAGE": 1}
        return head + f"wrk.body = [==[{render(template, first)}]==]\n"
    return head + (
        "local count = 0\n"
        "request = function()\n"
        "  count = count + 1\n"
        f"  local values = {{UPDATE = tostring({FIRST_UPDATE} + count),\n"
        f"    USER = tostring({FIRST_USER} + count % {USERS}), MESSAGE = tostring(count + 1)}}\n"
        '  return wrk.format(nil, nil, nil, (template:gsub("@(%u+)@", values)))\n'
        "end\n"
    )


def parse_wrk(output: str) -> tuple[int, float, float, float, int]:
    """Requests, requests/s, p50 and p99 (ms), and errors (non-2xx and socket errors)."""

    def find(pattern: str) -> re.Match[str]:
        found = re.search(pattern, output, re.M)
        if found is None:
            raise RuntimeError(f"wrk said something else:\n{output}")
        return found

    requests = int(find(r"(\d+) requests in")[1])
    rps = float(find(r"Requests/sec:\s+([\d.]+)")[1])
    p50, p99 = (_millis(find(rf"^\s+{p}%\s+(\S+)")[1]) for p in (50, 99))
    socket_errors = re.search(r"Socket errors: (.*)", output)
    errors = sum(int(n) for n in re.findall(r"\d+", socket_errors[1])) if socket_errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return requests, rps, p50, p99, errors + (int(non_2xx[1]) if non_2xx else 0)


# --- processes ------------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """User plus system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU time the whole machine has spent busy (not idle or waiting for I/O), all cores."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Where the CPU went while something ran, in percent of one core: each named process, the
    processes this one started that finished meanwhile (the load generator), and the whole
    machine (all cores: up to 100 x cores)."""

    def __init__(self, pids: Mapping[str, int], children: str | None = None) -> None:
        self._pids, self._children = dict(pids), children
        self._at = time.monotonic()
        self._before = self._read()
        self.elapsed_s = 0.0

    def _read(self) -> dict[str, float]:
        taken = {name: _cpu_s(pid) for name, pid in self._pids.items()}
        if self._children:
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            taken[self._children] = used.ru_utime + used.ru_stime
        return {**taken, "machine": _machine_busy_s()}

    def shares(self) -> dict[str, float]:
        after, self.elapsed_s = self._read(), time.monotonic() - self._at
        return {name: 100 * (after[name] - self._before[name]) / self.elapsed_s for name in after}


def _infrastructure(settings: Settings) -> dict[str, int]:
    """The local services' processes, where this project started them."""
    return {state.name: state.pid for state in status(settings) if state.pid and state.name in
            ("kafka", "ferretdb", "redis")}  # fmt: skip


def _stop(process: subprocess.Popen[Any], grace_s: float = 30) -> None:
    """SIGTERM to the process's own group (it runs in a session of its own), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def _process(
    argv: list[str], log: Path, ready: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process with its output in ``log``, once ``ready`` is in it; stopped on the way out."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(argv)} did not start; see {log}")
            time.sleep(0.2)
        yield process
    finally:
        _stop(process)


class FakeProcess:
    """FakeTelegram in a process of its own, driven by JSON lines on its stdin and stdout."""

    def __init__(self, limits: tuple[int, float, int, float], log: Path) -> None:
        with log.open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.channels", "telegram", *map(str, limits)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                start_new_session=True,
            )  # fmt: skip
        try:
            self.url = str(self._answer()["url"])
        except BaseException:
            _stop(self.process)
            raise

    def _answer(self, timeout_s: float = 30) -> dict[str, Any]:
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if readable else b""
        if not line:
            raise RuntimeError("the Telegram fake stopped answering")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        """End of input: the fake stops serving and exits (or is stopped)."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        _stop(self.process, grace_s=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


async def _serve_fake(limits: list[str]) -> None:
    chat_burst, chat_per_s, bot_burst, bot_per_s = limits
    async with FakeTelegram(
        chat_burst=int(chat_burst), chat_per_s=float(chat_per_s),
        bot_burst=int(bot_burst), bot_per_s=float(bot_per_s),
    ) as fake:  # fmt: skip
        print(json.dumps({"url": fake.url}), flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = json.loads(line)
            if "add_bot" in command:
                fake.add_bot(*command["add_bot"])
                print(json.dumps({"ok": True}), flush=True)
                continue
            sent = fake.sent()
            print(json.dumps({
                "sent": len(sent), "distinct": len({(s.token, s.chat_id, s.text) for s in sent}),
                "first": min((s.time for s in sent), default=None),
                "last": max((s.time for s in sent), default=None),
                "floods": sum(1 for call in fake.calls if call.status == 429),
                "requests": fake.requests["sendMessage"],
            }), flush=True)  # fmt: skip


# --- ingress --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _integrations_settings(settings: Settings) -> Settings:
    """Settings whose integrations port is free, so a running platform is left alone."""
    for base in range(8400, 9000, 20):
        candidate = settings.model_copy(update={"web_base_port": base})
        if _port_free(candidate.service_port("integrations")):
            return candidate
    raise SystemExit("no free port for the integrations service between 8400 and 9000")


def _wrk(
    name: str, url: str, sizes: Sizes, pids: Mapping[str, int], script: Path | None = None
) -> Load:
    """wrk against ``url``; ``pids`` names the server first, then the processes it uses."""
    lua = ["-s", str(script)] if script else []
    meter = Meter(pids, children="wrk")
    output = subprocess.run(
        ["wrk", "-t1", f"-c{sizes.connections}", f"-d{sizes.duration_s}s", "--latency", *lua,
         url], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = meter.shares()
    requests, rps, p50, p99, errors = parse_wrk(output)
    server_ms = 10 * cpu[next(iter(pids))] * meter.elapsed_s / max(1, requests)
    return Load(name, requests, rps, p50, p99, errors, server_ms, cpu)


async def _produced(settings: Settings, since: dict[TopicPartition, int], channel: str) -> int:
    records = await records_since(settings, since)
    return sum(
        1
        for record in records
        if isinstance(message := decode(record.value), InboundMessage)
        and message.channel_id == channel
    )


def _post(url: str, body: str, secret: str) -> None:
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        url, body.encode(), {"Content-Type": "application/json", SECRET_HEADER: secret}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback URL)
        if response.status != 200:
            raise RuntimeError(f"the first delivery was answered {response.status}")


def _ingress(settings: Settings, log_dir: Path, sizes: Sizes) -> list[Load]:
    if shutil.which("wrk") is None:
        apt_install("wrk", lambda message: print(f"bench: {message}", flush=True))
    service = _integrations_settings(settings)
    secret = secrets.token_urlsafe(32)
    channel = asyncio.run(
        telegram_channel(
            settings, ids.new_id("ws"), ids.new_id("app"), bot_token(tg.BOT_ID),
            webhook_secret=secret, username=tg.BOT_USERNAME,
        )
    )  # fmt: skip
    url = f"{service.service_url('integrations')}/webhooks/telegram/{channel['_id']}"
    template = update_template(int(time.time()))
    scripts = {}
    for fresh in (True, False):
        scripts[fresh] = log_dir / f"bench-channels-{'fresh' if fresh else 'again'}.lua"
        scripts[fresh].write_text(wrk_script(template, secret, fresh=fresh))
    hello_port = _free_port()
    infrastructure = _infrastructure(settings)
    # Delivery marks kept 10 minutes rather than a week: the same writes, less left behind.
    env = {"SWITCHBOARD_WEB_BASE_PORT": str(service.web_base_port),
           "SWITCHBOARD_WEBHOOK_DEDUP_TTL_S": "600"}  # fmt: skip
    argv = [sys.executable, "-m", "infra.cli", "web", "integrations"]
    hello_argv = [sys.executable, "-m", "bench.hello", str(hello_port)]
    with (
        _process(argv, log_dir / "bench-integrations.log", "web: integrations ready", env) as web,
        subprocess.Popen(hello_argv, start_new_session=True) as hello,
    ):
        try:
            healthz = f"http://127.0.0.1:{hello_port}/healthz"
            _wait_for(healthz)
            baseline = _wrk("bare aiohttp hello-world (GET)", healthz, sizes,
                            {"server": hello.pid, **infrastructure})  # fmt: skip
        finally:
            _stop(hello)
        rows = [baseline]
        for name, fresh in (("webhook, new update", True), ("webhook, redelivered update", False)):
            if not fresh:  # taken once first: every request after it is a duplicate
                _post(url, render(template, {"UPDATE": FIRST_UPDATE, "USER": FIRST_USER,
                                             "MESSAGE": 1}), secret)  # fmt: skip
            since = asyncio.run(end_offsets(settings, MESSAGES_INBOUND))
            pids = {"server": web.pid, **infrastructure}
            load = _wrk(name, url, sizes, pids, scripts[fresh])
            produced = asyncio.run(_produced(settings, since, str(channel["_id"])))
            rows.append(dataclasses.replace(load, produced=produced))
    return rows


# --- sender ---------------------------------------------------------------------------------


async def _members(settings: Settings) -> int:
    """How many workers are in the pipeline's consumer group now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([APP_ID])
    except GroupCoordinatorNotAvailableError:
        return 0  # no such group yet
    finally:
        await admin.close()
    _error, _group, _state, _protocol_type, _protocol, members, *_ = described.groups[0]
    return len(members)


def _group_to_itself(settings: Settings, within_s: float = 300) -> None:
    """Wait until no other worker is in the consumer group (`make run`, a test's): it would
    take partitions, and so messages, that this benchmark's worker must send."""
    deadline, said = time.monotonic() + within_s, False
    while asyncio.run(_members(settings)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"another worker was in the group for {within_s:.0f}s")
        if not said:
            print("bench: waiting for another worker to leave the pipeline's group", flush=True)
            said = True
        time.sleep(1)


async def _caught_up(settings: Settings, within_s: float = 300) -> int:
    """Wait until the pipeline's consumer group has committed every record now in
    messages.inbound and platform.outbound; how many it had left to take."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    first: int | None = None
    try:
        ends = {
            **await end_offsets(settings, MESSAGES_INBOUND),
            **await end_offsets(settings, PLATFORM_OUTBOUND),
        }
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
        await consumer.start()
        try:
            starts = await consumer.beginning_offsets(list(ends))
        finally:
            await consumer.stop()
        deadline = time.monotonic() + within_s
        while True:
            with contextlib.suppress(KafkaError):  # the group's coordinator may not be known yet
                committed = await admin.list_consumer_group_offsets(APP_ID)
                done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
                left = sum(max(0, end - done.get(tp, starts[tp])) for tp, end in ends.items())
                first = left if first is None else first
                if left == 0:
                    return first
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not catch up within {within_s:.0f}s")
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def _produce(settings: Settings, channels: list[Document], sizes: Sizes) -> float:
    """Every message, chat by chat in turn; when the first was handed to the producer."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        began = time.monotonic()
        pending = []
        for turn in range(sizes.per_chat):
            for chat in range(sizes.chats):
                for channel in channels:
                    text = f"Order #{48_000 + chat}: update {turn + 1} of {sizes.per_chat}."
                    record = platform_send(channel, str(FIRST_USER + chat), text)
                    key = record.conversation_id.encode()
                    pending.append(await producer.send(PLATFORM_OUTBOUND, encode(record), key))
        await asyncio.gather(*pending)
        return began
    finally:
        await producer.stop()


def _deliver(
    settings: Settings, log_dir: Path, sizes: Sizes, name: str,
    limits: tuple[int, float, int, float],
) -> Delivery:  # fmt: skip
    slug = name.replace(" ", "-")
    fake = FakeProcess(limits, log_dir / f"bench-channels-telegram-{slug}.log")
    try:
        workspace, application = ids.new_id("ws"), ids.new_id("app")
        channels = []
        for index in range(sizes.bots):
            bot_id = 7_100_000_000 + secrets.randbelow(100_000_000) * 10 + index
            token = bot_token(bot_id)
            fake.ask({"add_bot": [token, bot_id, f"bench_{bot_id}_bot"]})
            channels.append(asyncio.run(telegram_channel(settings, workspace, application, token)))
        _, chat_per_s, _, bot_per_s = limits
        env = {"SWITCHBOARD_TELEGRAM_API_BASE": fake.url, "SWITCHBOARD_AI_AGENT_ENABLED": "false",
               "SWITCHBOARD_TELEGRAM_CHAT_RATE_PER_S": str(chat_per_s),
               "SWITCHBOARD_TELEGRAM_BOT_RATE_PER_S": str(bot_per_s)}  # fmt: skip
        argv = [sys.executable, "-m", "infra.cli", "worker", "--loglevel", "info"]
        log = log_dir / f"bench-channels-worker-{slug}.log"
        _group_to_itself(settings)
        with _process(argv, log, "[^Worker]: Ready", env) as worker:
            caught_up = asyncio.run(_caught_up(settings))
            if asyncio.run(_members(settings)) != 1:
                raise RuntimeError("another worker is in the group: run it again")
            count = sizes.bots * sizes.chats * sizes.per_chat
            pids = {"worker": worker.pid, "fake": fake.process.pid, **_infrastructure(settings)}
            meter = Meter(pids)
            began = asyncio.run(_produce(settings, channels, sizes))
            stats = _wait_for_sends(fake, count, worker)
            cpu = meter.shares()
            if log.read_text(errors="replace").count("Joined group") > 1:
                raise RuntimeError("another worker joined the group meanwhile: run it again")
    finally:
        fake.close()
    ideal = ideal_rate(sizes.bots, sizes.chats, chat_per_s, bot_per_s)
    return Delivery(
        name, count, count / (stats["last"] - began), ideal if limits == DOCUMENTED else None,
        1000 * (stats["first"] - began), stats["floods"], stats["requests"],
        stats["sent"] - stats["distinct"], 10 * cpu["worker"] * meter.elapsed_s / count, cpu,
        caught_up,
    )  # fmt: skip


def _wait_for_sends(
    fake: FakeProcess, count: int, worker: subprocess.Popen[bytes], stall_s: float = 60
) -> dict[str, Any]:
    """Poll the fake until ``count`` messages arrived; fail if none arrives for ``stall_s``."""
    seen, progress = -1, time.monotonic()
    while True:
        stats = fake.ask({"stats": True})
        if stats["distinct"] >= count:
            return stats
        if stats["distinct"] != seen:
            seen, progress = stats["distinct"], time.monotonic()
        if worker.poll() is not None or time.monotonic() - progress > stall_s:
            raise RuntimeError(
                f"{stats['distinct']} of {count} messages arrived (another worker in the "
                "pipeline's group takes some partitions' records); see the logs"
            )
        time.sleep(0.2)


def run(settings: Settings, log_dir: Path, sizes: Sizes) -> Channels:
    ingress_load = os.getloadavg()[0]
    loads = _ingress(settings, log_dir, sizes)
    sender_load = os.getloadavg()[0]
    deliveries = [
        _deliver(settings, log_dir, sizes, "documented limits", DOCUMENTED),
        *([_deliver(settings, log_dir, sizes, "limits raised", RAISED)] if sizes.raised else []),
    ]
    return Channels(sizes, loads, deliveries, (ingress_load, sender_load))


def _cpu_table(title: str, rows: list[tuple[str, Mapping[str, float]]]) -> list[str]:
    """Each process's share of a core, the rest of the machine's busy time (other), and the
    machine's (all cores)."""
    names = [name for name in rows[0][1] if name != "machine"] if rows else []
    lines = [f"{title:32} " + " ".join(f"{n[:9]:>9}" for n in [*names, "other", "machine"])]
    for row, cpu in rows:
        other = cpu["machine"] - sum(cpu[name] for name in names)
        shares = [*(cpu[name] for name in names), other, cpu["machine"]]
        lines.append(f"{row:32} " + " ".join(f"{share:9.0f}" for share in shares))
    return lines


def report(result: Channels) -> str:
    sizes, baseline = result.sizes, result.loads[0].requests_per_s
    lines = [
        f"channels benchmark, ingress: wrk 1 thread, {sizes.connections} connections, "
        f"{sizes.duration_s}s per row (load average {result.load_average[0]:.2f})",
        f"{'':32} {'req/s':>7} {'vs hello':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'CPU ms/req':>10} {'produced':>8}",
    ]
    for load in result.loads:
        produced = "" if load.produced is None else str(load.produced)
        lines.append(
            f"{load.name:32} {load.requests_per_s:7.0f} {load.requests_per_s / baseline:8.3f} "
            f"{load.p50_ms:7.2f} {load.p99_ms:7.2f} {load.errors:6d} "
            f"{load.cpu_ms_per_request:10.2f} {produced:>8}"
        )
    lines += _cpu_table("CPU, % of one core", [(load.name, load.cpu) for load in result.loads])
    lines += [
        f"channels benchmark, sender: {sizes.bots} bots x {sizes.chats} chats x "
        f"{sizes.per_chat} messages, 1 worker (load average {result.load_average[1]:.2f})",
        f"{'':18} {'msgs':>5} {'msg/s':>7} {'ideal':>6} {'of ideal':>8} {'429s':>5} "
        f"{'requests':>8} {'dupes':>5} {'1st send ms':>11} {'CPU ms/msg':>10} {'caught up':>9}",
    ]
    for run_ in result.deliveries:
        ideal = f"{run_.ideal:6.0f}" if run_.ideal else f"{'-':>6}"
        share = f"{run_.per_second / run_.ideal:8.2f}" if run_.ideal else f"{'-':>8}"
        lines.append(
            f"{run_.name:18} {run_.messages:5d} {run_.per_second:7.1f} {ideal} {share} "
            f"{run_.floods:5d} {run_.requests:8d} {run_.duplicates:5d} "
            f"{run_.first_send_ms:11.0f} {run_.cpu_ms_per_message:10.2f} {run_.caught_up:9d}"
        )
    lines += _cpu_table("CPU, % of one core", [(run_.name, run_.cpu) for run_ in result.deliveries])
    return "\n".join(lines)


def main() -> None:
    """``python -m bench.channels telegram CHAT_BURST CHAT_PER_S BOT_BURST BOT_PER_S``: the
    fake, for the sender benchmark (which starts it)."""
    if sys.argv[1:2] != ["telegram"] or len(sys.argv) != 6:
        raise SystemExit(main.__doc__)
    asyncio.run(_serve_fake(sys.argv[2:]))


if __name__ == "__main__":
    main()
