"""What a Switchboard service and the gateway cost per request, against a bare aiohttp app.

wrk (a separate process) drives each URL in turn with the same connections and duration:
- the baseline, a bare aiohttp hello-world app;
- the users service's /healthz, directly (Switchboard's middleware: errors, metrics, headers);
- the same through Traefik (/_health/users), i.e. what every request through the gateway pays;
- the users service's /readyz, directly: a real round trip to FerretDB and Redis per request;
- two authenticated REST reads through the gateway, as a signed-in operator makes them: one
  application (`GET /api/apps/{id}`) and a page of conversations (`GET /api/conversations`).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from core.settings import Settings
from infra.services import apt_install
from infra.stack import down, up

BASELINE_PORT = 8199
DURATION_S = 8
CONNECTIONS = 32


@dataclass(frozen=True)
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float


def _wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback URL)
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _millis(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wrk(name: str, url: str, token: str | None = None) -> Result:
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    output = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION_S}s", "--latency", *auth, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _millis(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _millis(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in output:
        raise RuntimeError(f"{name}: some responses were not 2xx:\n{output}")
    return Result(name, rps, p50, p99)


def _post(url: str, body: dict[str, object], token: str | None = None) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 (loopback URL)
        url, json.dumps(body).encode(), headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback URL)
        answer: dict[str, object] = json.load(response)
    return answer


def _operator(settings: Settings) -> tuple[str, str]:
    """A new workspace's owner (its access token) and one application of theirs."""
    gateway = settings.gateway_url
    credentials: dict[str, object] = {
        "email": f"bench-{time.time_ns()}@example.com",
        "password": "benchmark password",
    }
    _post(
        f"{gateway}/api/auth/register",
        {**credentials, "name": "Benchmark", "workspace_name": "Benchmark"},
    )  # sign-up answers no tokens: sign in next
    token = str(_post(f"{gateway}/api/auth/login", credentials)["access_token"])
    application = _post(f"{gateway}/api/apps", {"name": "benchmark", "prompt": "Be brief."}, token)
    return token, str(application["id"])


REST_SERVICES = ("users", "applications", "conversations")


def run(settings: Settings) -> list[Result]:
    if shutil.which("wrk") is None:
        apt_install("wrk", lambda message: print(f"bench: {message}", flush=True))
    ports = [BASELINE_PORT, *(settings.service_port(s) for s in REST_SERVICES)]
    for port in ports:
        if not _port_free(port):
            raise SystemExit(f"port {port} is busy; stop `make run` before `make bench`")
    started = up(settings, ["kafka", "ferretdb", "redis", "nginx", "traefik"])
    processes = [
        subprocess.Popen([sys.executable, "-m", "bench.hello", str(BASELINE_PORT)]),
        *(
            subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "web", service], stdout=subprocess.DEVNULL
            )
            for service in REST_SERVICES
        ),
    ]
    try:
        baseline = f"http://127.0.0.1:{BASELINE_PORT}/healthz"
        direct = f"{settings.service_url('users')}/healthz"
        gateway = f"http://127.0.0.1:{settings.gateway_port}/_health/users"
        for url in (baseline, direct, gateway):
            _wait_for(url)
        for service in REST_SERVICES:
            _wait_for(f"{settings.service_url(service)}/healthz")
        token, application_id = _operator(settings)
        api = settings.gateway_url
        return [
            _wrk("baseline: bare aiohttp /healthz", baseline),
            _wrk("users /healthz, direct", direct),
            _wrk("users /healthz via Traefik", gateway),
            _wrk(
                "users /readyz (FerretDB + Redis), direct",
                f"{settings.service_url('users')}/readyz",
            ),
            _wrk("GET /api/apps/{id} via Traefik, signed in", f"{api}/api/apps/{application_id}",
                 token),
            _wrk("GET /api/conversations via Traefik, signed in",
                 f"{api}/api/conversations?limit=20", token),
        ]  # fmt: skip
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
        if started:
            down(settings, started)


def report(results: list[Result]) -> str:
    baseline = results[0].requests_per_s
    lines = [
        f"gateway benchmark: wrk, 1 thread, {CONNECTIONS} connections, {DURATION_S}s per URL",
        f"{'':44} {'req/s':>9} {'vs baseline':>11} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for result in results:
        lines.append(
            f"{result.name:44} {result.requests_per_s:9.0f} "
            f"{result.requests_per_s / baseline:11.2f} {result.p50_ms:8.2f} {result.p99_ms:8.2f}"
        )
    return "\n".join(lines)
