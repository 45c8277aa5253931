"""Realtime: clients held by one socket process, its memory per client, and a room's fan-out.

Two servers, each in a process of its own, driven the same way by a load generator in another
process (`bench/socket_load.py`, with a light socket.io client of its own, `bench/sio_client.py`):

- Switchboard's socket service (`switchboard web socket`: Redis manager, the `/widget`
  namespace) with a real application's widget key;
- the baseline, a bare python-socketio server (`bench/socket_bare.py`): in-memory manager, no
  authentication, one namespace.

For each: one client connects (RSS "idle" is read after it), then 999 more join its room (on
Switchboard with the same visitor's token: the same conversation room), then the rest connect
as new visitors, up to the client count, 200 handshakes in flight. A client counts once it is
ready (on Switchboard, once its `history` arrived). RSS per connection is the RSS growth over
the clients held. The fan-out pushes `message`s to the 1,000-client room, on Switchboard through
`RealtimeEmitter` (a write-only Redis manager, as the delivery worker does), on the baseline
through an HTTP call to the server; latency is a client's arrival time minus the push's
`sent_at`, measured with only the room connected, then with every client held. Last, every
client leaves at once: the server's CPU until it is idle again, then SIGTERM to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.pipeline import _start
from bench.socket_load import raise_open_files_limit
from core import ids
from core.clients.database import new_mongo_client
from core.clients.realtime import WIDGET_NAMESPACE, RealtimeEmitter
from core.settings import Settings
from core.stores.application_store import ApplicationStore

GOAL = 10_000
ROOM = 1_000
PUSHES = 30
WARM_UP_PUSHES = 5
#: A push to 1,000 clients costs a python-socketio server 70-160 ms of CPU: closer pushes would
#: measure the queue behind them.
PUSH_INTERVAL_S = 0.4
CONCURRENCY = 200  # handshakes in flight, over all the generators
BARE_PORT = 8198
STOP_TIMEOUT_S = 60.0
#: The socket service reads its own, emptied database, so that its figures do not depend on what
#: earlier runs left in the development one (FerretDB scans a collection even to find that an
#: `_id` is missing).
DATABASE = "switchboard_bench_socket"

Push = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Ramp:
    asked: int
    connected: int
    seconds: float
    connect_ms: list[float]
    failures: Counter[str]
    session: dict[str, Any] | None

    @property
    def per_second(self) -> float:
        return self.connected / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class FanOut:
    latencies_ms: list[float]
    slowest_ms: list[float]  # each push's slowest delivery
    expected: int
    seconds: float  # from the first push until every delivery had arrived (or 15 s after)
    cpu_s: tuple[float, float]  # (server, generators) over that time


@dataclass(frozen=True)
class ServerRun:
    name: str
    idle_rss_kib: int
    room: Ramp  # the clients that join the first one's room
    room_rss_kib: int
    fresh: Ramp  # the new clients after them
    full_rss_kib: int
    held: int  # at the end
    fanouts: tuple[FanOut, FanOut]  # with the room connected, then with every client
    ramp_cpu_s: tuple[float, float]  # (server, generators) over the new clients' ramp
    listen_overflows: int  # SYNs dropped for a full accept queue during the ramps (retried)
    disconnect_cpu_s: float  # the server's CPU from the clients' leaving until it is idle again
    stop_s: float | None  # SIGTERM to exit, once idle; None if it had not exited in STOP_TIMEOUT_S


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * fraction) - 1))]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _cpu_s(*pids: int) -> float:
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _listen_overflows() -> int:
    """The kernel's count of connections dropped because an accept queue was full (all ports)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class Generators:
    """The load generator processes; each command goes to all, the clients split between them."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self._processes = processes

    @classmethod
    async def start(cls, count: int, port: int) -> Generators:
        processes = [
            await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bench.socket_load", str(port), WIDGET_NAMESPACE),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                limit=1 << 26,
            )
            for _ in range(count)
        ]
        return cls(processes)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    async def _ask(self, index: int, command: dict[str, Any]) -> dict[str, Any]:
        process = self._processes[index]
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(command).encode() + b"\n")
        await process.stdin.drain()
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator {process.pid} exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def _all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._ask(i, command) for i in range(len(self.pids)))))

    async def connect(self, count: int, auth: dict[str, Any], ready: str | None) -> Ramp:
        share, extra = divmod(count, len(self._processes))
        counts = [share + (i < extra) for i in range(len(self._processes))]
        concurrency = max(1, CONCURRENCY // len(self._processes))
        command = {"op": "connect", "auth": auth, "ready": ready, "concurrency": concurrency}
        answers = await asyncio.gather(
            *(self._ask(i, {**command, "count": n}) for i, n in enumerate(counts) if n)
        )
        sessions = [a["session"] for a in answers if a["session"]]
        return Ramp(
            asked=count,
            connected=sum(a["connected"] for a in answers),
            seconds=max((a["seconds"] for a in answers), default=0.0),
            connect_ms=[t for a in answers for t in a["connect_ms"]],
            failures=sum((Counter(a["failures"]) for a in answers), Counter()),
            session=sessions[-1] if sessions else None,
        )

    async def held(self) -> tuple[int, int]:
        """Clients still open, and deliveries seen since the last listen."""
        answers = await self._all({"op": "held"})
        return sum(a["held"] for a in answers), sum(a["delivered"] for a in answers)

    async def listen(self) -> None:
        await self._all({"op": "listen"})

    async def deliveries(self) -> tuple[list[float], list[float]]:
        """Every delivery's latency (ms), and each push's slowest delivery."""
        answers = await self._all({"op": "deliveries"})
        slowest: dict[str, float] = {}
        for answer in answers:
            for push, latency in answer["slowest_ms"].items():
                slowest[push] = max(latency, slowest.get(push, 0.0))
        return [t for a in answers for t in a["latencies_ms"]], list(slowest.values())

    async def quit(self) -> None:
        for process in self._processes:
            if process.returncode is None and process.stdin is not None:
                process.stdin.write(b'{"op": "quit"}\n')
        for process in self._processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=60)
            except TimeoutError:
                process.kill()


@dataclass(frozen=True)
class Target:
    """One server under test: how its clients authenticate and how a push reaches its room."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    first_auth: dict[str, Any]
    #: the first client's session -> the auth of the clients that join its room
    room_auth: Callable[[dict[str, Any] | None], dict[str, Any]]
    fresh_auth: dict[str, Any]
    ready: str | None
    push: Callable[[dict[str, Any] | None], Push]  # first client's session -> push to its room


async def _fanout(generators: Generators, push: Push, members: int, pid: int) -> FanOut:
    def message(index: int) -> dict[str, Any]:
        now = time.time()
        return {"id": f"bench-{index}", "role": "bot", "text": "A push to every tab.",
                "created_at": now, "request_id": None, "sent_at": now}  # fmt: skip

    for index in range(WARM_UP_PUSHES):
        await push(message(index))
        await asyncio.sleep(PUSH_INTERVAL_S)
    await asyncio.sleep(1)
    await generators.listen()
    cpu = _cpu_s(pid), _cpu_s(*generators.pids)
    began = time.monotonic()
    for index in range(PUSHES):
        await asyncio.sleep(max(0.0, began + index * PUSH_INTERVAL_S - time.monotonic()))
        await push(message(WARM_UP_PUSHES + index))
    expected = PUSHES * members
    for _ in range(60):  # up to 15 s for the stragglers
        if (await generators.held())[1] >= expected:
            break
        await asyncio.sleep(0.25)
    seconds = time.monotonic() - began
    cpu = _cpu_s(pid) - cpu[0], _cpu_s(*generators.pids) - cpu[1]
    return FanOut(*await generators.deliveries(), expected, seconds, cpu)


async def _measure(target: Target, clients: int, generator_count: int) -> ServerRun:
    room_size = min(ROOM, clients)
    pid = target.process.pid
    generators = await Generators.start(generator_count, target.port)
    try:
        first = await generators.connect(1, target.first_auth, target.ready)
        if first.connected != 1:
            raise RuntimeError(f"{target.name}: the first client failed: {dict(first.failures)}")
        await asyncio.sleep(1)
        idle_rss = _rss_kib(pid)
        overflows = _listen_overflows()
        room = await generators.connect(
            room_size - 1, target.room_auth(first.session), target.ready
        )
        await asyncio.sleep(1)
        room_rss = _rss_kib(pid)
        push = target.push(first.session)
        members = 1 + room.connected
        room_fanout = await _fanout(generators, push, members, pid)
        cpu = _cpu_s(pid), _cpu_s(*generators.pids)
        fresh = await generators.connect(clients - room_size, target.fresh_auth, target.ready)
        ramp_cpu = _cpu_s(pid) - cpu[0], _cpu_s(*generators.pids) - cpu[1]
        overflows = _listen_overflows() - overflows
        await asyncio.sleep(2)
        full_rss = _rss_kib(pid)
        full_fanout = await _fanout(generators, push, members, pid)
        held = (await generators.held())[0]
        disconnect_cpu = _cpu_s(pid)
    finally:
        await generators.quit()
    disconnect_cpu = await _until_idle(pid) - disconnect_cpu
    return ServerRun(
        target.name, idle_rss, room, room_rss, fresh, full_rss, held, (room_fanout, full_fanout),
        ramp_cpu, overflows, disconnect_cpu, await _stop(target.process),
    )  # fmt: skip


async def _until_idle(pid: int) -> float:
    """The server's CPU time once a second of it has used under 5 % of a core (at most 5 min)."""
    used = _cpu_s(pid)
    for _ in range(300):
        await asyncio.sleep(1)
        used, before = _cpu_s(pid), used
        if used - before < 0.05:
            break
    return used


async def _stop(process: subprocess.Popen[bytes]) -> float | None:
    began = time.monotonic()
    process.terminate()
    while time.monotonic() - began < STOP_TIMEOUT_S:
        if process.poll() is not None:
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    return None


async def _widget_key(settings: Settings) -> str:
    """A new application's widget key, in a new workspace of an emptied database."""
    client = new_mongo_client(settings)
    try:
        await client.drop_database(settings.mongo_database)
        store = ApplicationStore(client[settings.mongo_database])
        document = await store.create(
            ids.new_id("ws"), {"name": "socket benchmark", "prompt": "Be brief."}
        )
    finally:
        await client.close()
    return str(document["widget_key"])


def _free_base_port(settings: Settings) -> Settings:
    """Settings whose socket port is free, so a running platform is left alone."""
    for base in range(8300, 9000, 20):
        candidate = settings.model_copy(update={"web_base_port": base})
        if _port_free(candidate.service_port("socket")):
            return candidate
    raise SystemExit("no free port for the socket service between 8300 and 9000")


@contextlib.contextmanager
def _server(
    argv: list[str], log: Path, ready: str, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, killed on the way out if the measurement did not stop it."""
    process = _start(argv, log, ready, env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _run_bare(log_dir: Path, clients: int, generators: int) -> ServerRun:
    if not _port_free(BARE_PORT):
        raise SystemExit(f"port {BARE_PORT} is busy")
    argv = [sys.executable, "-m", "bench.socket_bare", str(BARE_PORT), WIDGET_NAMESPACE]
    with _server(argv, log_dir / "bench-socket-bare.log", "bare socket.io ready", {}) as process:

        async def measure() -> ServerRun:
            async with aiohttp.ClientSession() as http:

                def push(_: dict[str, Any] | None) -> Push:
                    async def send(data: dict[str, Any]) -> None:
                        url = f"http://127.0.0.1:{BARE_PORT}/fanout"
                        async with http.post(url, json=data) as response:
                            response.raise_for_status()

                    return send

                target = Target(
                    "bare python-socketio", BARE_PORT, process, {"room": "fanout"},
                    lambda _: {"room": "fanout"}, {}, None, push,
                )  # fmt: skip
                return await _measure(target, clients, generators)

        return asyncio.run(measure())


def _run_switchboard(settings: Settings, log_dir: Path, clients: int, generators: int) -> ServerRun:
    settings = _free_base_port(settings.model_copy(update={"mongo_database": DATABASE}))
    port = settings.service_port("socket")
    key = asyncio.run(_widget_key(settings))
    # Every simulated visitor connects from loopback: one address, far over the connect rate.
    env = {"SWITCHBOARD_WEB_BASE_PORT": str(settings.web_base_port),
           "SWITCHBOARD_MONGO_DATABASE": DATABASE, "SWITCHBOARD_LOG_LEVEL": "warning",
           "SWITCHBOARD_WIDGET_CONNECTS_PER_MINUTE": str(10 * clients)}  # fmt: skip
    argv = [sys.executable, "-m", "infra.cli", "web", "socket"]
    with _server(argv, log_dir / "bench-socket.log", "web: socket ready", env) as process:

        async def measure() -> ServerRun:
            emitter = RealtimeEmitter(settings)

            def push(session: dict[str, Any] | None) -> Push:
                conversation_id = str((session or {})["conversation_id"])

                async def send(data: dict[str, Any]) -> None:
                    data = {**data, "conversation_id": conversation_id}
                    await emitter.to_conversation(conversation_id, "message", data)

                return send

            target = Target(
                "Switchboard socket service", port, process, {"key": key},
                lambda session: {"key": key, "token": (session or {})["token"]},
                {"key": key}, "history", push,
            )  # fmt: skip
            return await _measure(target, clients, generators)

        return asyncio.run(measure())


def run(
    settings: Settings, log_dir: Path, clients: int = GOAL, generators: int = 1
) -> list[ServerRun]:
    """The Switchboard run first, then the baseline's (Redis, FerretDB and Kafka must be up)."""
    raise_open_files_limit()
    return [
        _run_switchboard(settings, log_dir, clients, generators),
        _run_bare(log_dir, clients, generators),
    ]


def _per_connection_kib(run: ServerRun, rss_kib: int, clients: int) -> float:
    return (rss_kib - run.idle_rss_kib) / clients if clients else float("nan")


def _rows(run: ServerRun) -> dict[str, float]:
    room_clients = 1 + run.room.connected
    full_clients = room_clients + run.fresh.connected
    rows = {
        "clients held": float(run.held),
        "connect rate, new clients (/s)": run.fresh.per_second,
        "connect p50 ms (200 in flight)": statistics.median(run.fresh.connect_ms or [0.0]),
        "connect p99 ms": percentile(run.fresh.connect_ms, 0.99),
        "server CPU per connect (ms)": 1000 * run.ramp_cpu_s[0] / max(1, run.fresh.connected),
        "connect rate, room joins (/s)": run.room.per_second,
        "RSS idle (MiB)": run.idle_rss_kib / 1024,
        f"RSS per connection, {room_clients:,} held (KiB)": _per_connection_kib(
            run, run.room_rss_kib, room_clients
        ),
        f"RSS per connection, {full_clients:,} held (KiB)": _per_connection_kib(
            run, run.full_rss_kib, full_clients
        ),
    }
    for label, fanout in zip((f"{room_clients:,} held", "all held"), run.fanouts, strict=True):
        rows[f"fan-out p50 ms, {label}"] = statistics.median(fanout.latencies_ms or [0.0])
        rows[f"fan-out p99 ms, {label}"] = percentile(fanout.latencies_ms, 0.99)
        rows[f"fan-out delivered %, {label}"] = 100 * len(fanout.latencies_ms) / fanout.expected
    rows["all leave: server CPU until idle (s)"] = run.disconnect_cpu_s
    rows["then SIGTERM to exit (s)"] = float("nan") if run.stop_s is None else run.stop_s
    return rows


def report(runs: list[ServerRun], generators: int = 1) -> str:
    switchboard, bare = runs
    asked = 1 + switchboard.room.asked + switchboard.fresh.asked
    lines = [
        f"socket benchmark: {asked:,} clients from {generators} load generator process(es), "
        f"{CONCURRENCY} handshakes in flight; fan-out: {PUSHES} pushes {PUSH_INTERVAL_S * 1000:.0f}"
        f" ms apart to a {min(ROOM, asked):,}-client room",
        f"{'':40} {'switchboard':>12} {'bare':>12} {'ratio':>7}",
    ]
    bare_rows = _rows(bare)
    for (label, value), other in zip(_rows(switchboard).items(), bare_rows.values(), strict=True):
        ratio = f"{value / other:7.2f}" if other else f"{'-':>7}"
        lines.append(f"{label:40} {value:12,.1f} {other:12,.1f} {ratio}")
    for run in runs:
        failures = run.room.failures + run.fresh.failures
        missing = run.room.asked + run.fresh.asked - run.room.connected - run.fresh.connected
        if failures or missing:
            lines.append(
                f"{run.name}: refused or degraded attempts {dict(failures)}; "
                f"clients never ready: {missing}"
            )
        lines.append(
            f"{run.name}: CPU during the new clients' ramp, server {run.ramp_cpu_s[0]:.1f} s, "
            f"generators {run.ramp_cpu_s[1]:.1f} s; accept queue overflows {run.listen_overflows}"
        )
        for fanout in run.fanouts:
            slowest = sorted(fanout.slowest_ms)
            lines.append(
                f"{run.name}: fan-out over {fanout.seconds:.2f} s, CPU server "
                f"{fanout.cpu_s[0]:.2f} s, generators {fanout.cpu_s[1]:.2f} s; a push's last "
                f"delivery p50 {percentile(slowest, 0.5):.0f} ms, worst "
                f"{', '.join(f'{t:.0f}' for t in slowest[-3:])} ms"
            )
        if run.stop_s is None:
            lines.append(f"{run.name}: still running {STOP_TIMEOUT_S:.0f} s after SIGTERM; killed")
    held = "not tried" if asked < GOAL else ("yes" if switchboard.held >= GOAL else "no")
    lines.append(f"{GOAL:,} clients held: {held} ({switchboard.held:,} of {asked:,})")
    return "\n".join(lines)
