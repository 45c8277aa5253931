"""`make bench`: run every benchmark and print its figures against its in-run baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import ai, gateway, pipeline
from core.settings import Settings
from infra.stack import down, up


def main() -> None:
    settings = Settings()
    print(gateway.report(gateway.run(settings)), flush=True)
    started = up(settings, ["kafka", "ferretdb", "redis"])
    try:
        with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as logs:
            print(pipeline.report(pipeline.run(settings, Path(logs))), flush=True)
            print(ai.report(ai.run(settings, Path(logs))), flush=True)
    finally:
        if started:
            down(settings, started)


if __name__ == "__main__":
    main()
