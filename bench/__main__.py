"""`make bench`: run every benchmark and print its figures against its in-run baseline.

`python -m bench socket --clients 2000` runs the named benchmarks only (a quick socket run);
`python -m bench channels --no-raised` measures the sender at Telegram's limits only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import ai, channels, gateway, pipeline, socket
from core.settings import Settings
from infra.stack import down, up

BENCHMARKS = ("gateway", "pipeline", "ai", "socket", "channels")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="NAME",
        help=f"some of {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=socket.GOAL,
        help="socket clients to hold (default: %(default)s)",
    )
    parser.add_argument(
        "--generators",
        type=int,
        default=1,
        help="socket load generator processes (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=channels.CONNECTIONS,
        help="channels: webhook connections (default: %(default)s, Telegram's default)",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=channels.DURATION_S,
        help="channels: seconds per webhook row (default: %(default)s)",
    )
    parser.add_argument(
        "--bots",
        type=int,
        default=channels.BOTS,
        help="channels: Telegram bots the sender sends for (default: %(default)s)",
    )
    parser.add_argument(
        "--chats",
        type=int,
        default=channels.CHATS,
        help="channels: chats per bot (default: %(default)s)",
    )
    parser.add_argument(
        "--per-chat",
        type=int,
        default=channels.PER_CHAT,
        help="channels: messages per chat (default: %(default)s)",
    )
    parser.add_argument(
        "--no-raised",
        action="store_true",
        help="channels: skip the run with the rate limits raised",
    )
    args = parser.parse_args()
    chosen = args.benchmarks or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}")
    settings = Settings()
    if "gateway" in chosen:
        print(gateway.report(gateway.run(settings)), flush=True)
    if set(chosen) == {"gateway"}:
        return
    started = up(settings, ["kafka", "ferretdb", "redis"])
    try:
        with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as logs:
            if "pipeline" in chosen:
                print(pipeline.report(pipeline.run(settings, Path(logs))), flush=True)
            if "ai" in chosen:
                print(ai.report(ai.run(settings, Path(logs))), flush=True)
            if "socket" in chosen:
                runs = socket.run(settings, Path(logs), args.clients, args.generators)
                print(socket.report(runs, args.generators), flush=True)
            if "channels" in chosen:
                sizes = channels.Sizes(
                    connections=args.connections, duration_s=args.duration, bots=args.bots,
                    chats=args.chats, per_chat=args.per_chat, raised=not args.no_raised,
                )  # fmt: skip
                print(channels.report(channels.run(settings, Path(logs), sizes)), flush=True)
    finally:
        if started:
            down(settings, started)


if __name__ == "__main__":
    main()
