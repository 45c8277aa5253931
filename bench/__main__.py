"""`make bench`: run every benchmark and print its figures against its in-run baseline.

`python -m bench socket --clients 2000` runs the named benchmarks only (a quick socket run).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import ai, gateway, pipeline, socket
from core.settings import Settings
from infra.stack import down, up

BENCHMARKS = ("gateway", "pipeline", "ai", "socket")


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
    finally:
        if started:
            down(settings, started)


if __name__ == "__main__":
    main()
