"""`make bench`: run every benchmark and print its figures against its in-run baseline."""

from __future__ import annotations

from bench import gateway
from core.settings import Settings


def main() -> None:
    settings = Settings()
    print(gateway.report(gateway.run(settings)), flush=True)


if __name__ == "__main__":
    main()
