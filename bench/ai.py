"""The AI stage against a fake model: answers per second and p99, next to the ideal.

One worker with its AI stage on; every application's chatbot points at a local fake
OpenAI-compatible server that answers after a fixed latency. 200 conversations each send one
message at once, five rounds in a row; the ideal throughput is concurrency ÷ latency (what a
stage that only waits on the model could do). At 0 ms there is no such bound: the figure shows
what the stage itself costs per answer.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.pipeline import Run, _drive, _pipeline_codec, _start
from core import ids
from core.database import new_mongo_client
from core.settings import Settings
from tests.fakes.llm import FakeLLM

CONVERSATIONS = 200
ROUNDS = 5
LATENCIES_S = (0.0, 0.5)


@dataclass(frozen=True)
class AIRun:
    latency_s: float
    run: Run

    @property
    def ideal(self) -> float | None:
        return CONVERSATIONS / self.latency_s if self.latency_s else None


async def _application(settings: Settings, llm: FakeLLM) -> tuple[str, str]:
    workspace, application = ids.new_id("ws"), ids.new_id("app")
    chatbot = {"llm": {"base_url": llm.base_url, "api_key": "test-key", "model": "fake-model"}}
    client = new_mongo_client(settings)
    try:
        await client[settings.mongo_database]["applications"].insert_one(
            {"_id": application, "workspace_id": workspace, "name": "benchmark",
             "prompt": "Be brief.", "chatbot": chatbot}
        )  # fmt: skip
    finally:
        await client.close()
    return workspace, application


async def _measure(settings: Settings, latency_s: float) -> AIRun:
    async with FakeLLM() as llm:
        llm.latency_s = latency_s
        workspace, application = await _application(settings, llm)
        codec = _pipeline_codec(workspace, application)
        await _drive(settings, "warm-up", "messages.inbound", "platform.outbound", *codec,
                     CONVERSATIONS, None)  # fmt: skip
        rounds: list[Run] = []
        for _ in range(ROUNDS):
            rounds.append(
                await _drive(
                    settings,
                    "round",
                    "messages.inbound",
                    "platform.outbound",
                    *codec,
                    CONVERSATIONS,
                    None,
                )
            )
    total = sum(r.messages for r in rounds)
    elapsed = sum(r.messages / r.per_second for r in rounds)
    return AIRun(
        latency_s,
        Run(
            f"model latency {latency_s * 1000:.0f} ms",
            total,
            total / elapsed,
            statistics.median(r.p50_ms for r in rounds),
            max(r.p99_ms for r in rounds),
        ),
    )


def run(settings: Settings, log_dir: Path) -> list[AIRun]:
    worker = _start([sys.executable, "-m", "core.cli", "worker", "--loglevel", "info"],
                    log_dir / "bench-ai-worker.log", "[^Worker]: Ready",
                    env={"SWITCHBOARD_AI_AGENT_ENABLED": "true"})  # fmt: skip
    try:
        return [asyncio.run(_measure(settings, latency)) for latency in LATENCIES_S]
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def report(results: list[AIRun]) -> str:
    lines = [
        f"AI stage benchmark: {CONVERSATIONS} concurrent conversations, {ROUNDS} rounds, 1 worker",
        f"{'':28} {'answers':>8} {'ans/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ideal/s':>8} "
        f"{'of ideal':>9}",
    ]
    for result in results:
        run = result.run
        ideal = result.ideal
        lines.append(
            f"{run.name:28} {run.messages:8d} {run.per_second:8.0f} {run.p50_ms:8.1f} "
            f"{run.p99_ms:8.1f} {ideal or float('nan'):8.0f} "
            f"{(run.per_second / ideal if ideal else float('nan')):9.2f}"
        )
    return "\n".join(lines)
