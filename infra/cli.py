"""The ``switchboard`` command. Each subcommand exists because it works end to end."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from core.settings import SERVICES, Settings


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from streams.admin import create_topics
    from streams.app import configure
    from streams.faust_fixes import FaustMismatch
    from streams.worker import Worker

    try:
        app = configure(settings)  # first: a worker that will not start creates no topics
    except FaustMismatch as mismatch:
        print(f"error: {mismatch}", file=sys.stderr)
        return 1
    created = asyncio.run(create_topics(settings))
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    worker = Worker(app, loglevel=args.loglevel or settings.log_level)
    # The model SDK's HTTP client logs every request at INFO: a line per model call is noise
    # in a worker's log, and writing it cost 4% of a busy worker's time.
    for chatty in ("httpx", "httpx2"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    worker.execute_from_commandline()  # returns only through SystemExit
    return 0


def _web(settings: Settings, args: argparse.Namespace) -> int:
    from web.runner import run

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run(settings, SERVICES if args.service == "all" else (args.service,))
    return 0


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from infra.stack import StartError, up

    try:
        up(settings, args.services)
    except (StartError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("all services up; `switchboard status` shows them, `switchboard down` stops them")
    return 0


def _down(settings: Settings, args: argparse.Namespace) -> int:
    from infra.stack import down

    try:
        stopped = down(settings, args.services)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _test(settings: Settings, args: argparse.Namespace) -> int:
    """The local services up first, step by step on the terminal, then pytest; its status.

    The integration tests' session fixture would start them too, but behind pytest's captured
    output: minutes of silence on a first run. It finds them up and leaves them alone; this
    stops, at the end, only what it started.
    """
    import signal
    import subprocess

    from infra.stack import StartError, down, up

    print("==> local services for the tests", flush=True)
    try:
        started = up(settings)
    except (StartError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    print("==> pytest", *pytest_args, flush=True)
    # Ctrl-C reaches pytest as well (one process group): wait for its teardown, then stop.
    # A handler, not SIG_IGN, which pytest would inherit.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        code = subprocess.call([sys.executable, "-m", "pytest", *pytest_args])
    finally:
        signal.signal(signal.SIGINT, previous)
        if started:
            print(f"==> stopping what the tests started: {', '.join(started)}", flush=True)
            down(settings, started)
    return code


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from infra.launcher import web_service_states
    from infra.stack import status

    states = status(settings)
    width = max(len(name) for name in (*SERVICES, *(s.name for s in states)))
    print("infrastructure")
    for state in states:
        print(f"  {state.name:<{width}}  {state.address:<21}  {state.describe()}")
    print(f"switchboard (behind {settings.gateway_url})")
    for name, address, healthy in web_service_states(settings):
        print(f"  {name:<{width}}  {address:<21}  {'up' if healthy else 'down'}")
    return 0 if all(state.healthy for state in states) else 3


def _replay_show(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from streams.replay import conversation_records

    records = asyncio.run(
        conversation_records(
            settings,
            args.conversation_id,
            topics=args.topic or None,
            since=_timestamp(args.since),
            until=_timestamp(args.until),
            from_offset=args.from_offset,
            to_offset=args.to_offset,
        )
    )
    for record in records:
        print(record.as_json() if args.json else record.as_text())
    return 0


def _replay_redrive(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from streams.replay import redrive

    count = len(asyncio.run(redrive(settings, args.dead_letter_topic, dry_run=args.dry_run)))
    verb = "would re-drive" if args.dry_run else "re-drove"
    print(f"{verb} {count} record(s) from {args.dead_letter_topic}")
    return 0


def _replay_refeed(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    import time

    from streams.replay import refeed

    sandbox = args.sandbox or f"sandbox-{int(time.time())}"
    copies = asyncio.run(
        refeed(
            settings,
            args.conversation_id,
            sandbox,
            since=_timestamp(args.since),
            until=_timestamp(args.until),
        )
    )
    if not copies:
        print(f"no user messages of {args.conversation_id} to re-feed")
        return 1
    print(f"re-fed {len(copies)} message(s) into sandbox {sandbox}")
    print(f"follow it with: switchboard replay show {copies[0].conversation_id}")
    return 0


def _replay_turns(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from streams.rerun import recorded_turns

    turns = asyncio.run(recorded_turns(settings, args.conversation_id))
    for turn in turns:
        print(turn.as_json() if args.json else turn.as_text())
    return 0 if turns else 1


def _replay_rerun(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from streams.rerun import Rerun, rerun, rerun_model

    prompt = Path(args.prompt_file).read_text() if args.prompt_file else args.prompt
    model = rerun_model(settings, base_url=args.base_url, model=args.model, api_key=args.api_key)

    async def answer_again() -> list[Rerun]:
        try:
            return await rerun(settings, args.conversation_id, model, prompt=prompt)
        finally:
            await model.close()

    reruns = asyncio.run(answer_again())
    for one in reruns:
        print(one.as_json() if args.json else one.as_text())
    if not reruns:
        print(f"no recorded turns of {args.conversation_id}", file=sys.stderr)
        return 1
    if not args.json:
        changed = sum(one.changed for one in reruns)
        print(f"{len(reruns)} turn(s) re-run with {model.label}: {changed} answer(s) changed")
    return 0


def _timestamp(text: str | None) -> float | None:
    """An ISO 8601 time (UTC unless it says otherwise) or seconds since the epoch."""
    if text is None:
        return None
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser(
        "replay", help="read a conversation back from Kafka; re-drive DLQs; re-feed a sandbox"
    )
    actions = replay.add_subparsers(dest="replay_command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="one conversation's records across all topics, in order")
    show.add_argument("conversation_id")
    show.add_argument("--topic", action="append", help="only this topic (repeatable)")
    show.add_argument("--since", help="ISO time or epoch seconds")
    show.add_argument("--until", help="ISO time or epoch seconds")
    show.add_argument("--from-offset", type=int, help="first offset, in each topic's partition")
    show.add_argument("--to-offset", type=int, help="last offset, in each topic's partition")
    show.add_argument("--json", action="store_true", help="JSON lines instead of text")
    show.set_defaults(handler=_replay_show)
    again = actions.add_parser("redrive", help="put a dead-letter topic's records back, once")
    again.add_argument("dead_letter_topic", help="e.g. messages.inbound.dlq")
    again.add_argument("--dry-run", action="store_true", help="count, send nothing")
    again.set_defaults(handler=_replay_redrive)
    refeed = actions.add_parser(
        "refeed",
        help="send a conversation's user messages again, into a sandbox that sends nothing",
    )
    refeed.add_argument("conversation_id")
    refeed.add_argument("--sandbox", help="sandbox name (default: sandbox-<epoch seconds>)")
    refeed.add_argument("--since", help="ISO time or epoch seconds")
    refeed.add_argument("--until", help="ISO time or epoch seconds")
    refeed.set_defaults(handler=_replay_refeed)
    turns = actions.add_parser(
        "turns", help="why the bot said what it said: each turn's prompt, tools, tokens, answer"
    )
    turns.add_argument("conversation_id")
    turns.add_argument("--json", action="store_true", help="JSON lines instead of text")
    turns.set_defaults(handler=_replay_turns)
    again_ai = actions.add_parser(
        "rerun",
        help="answer each recorded turn again with another prompt or model; recorded tool "
        "results are served back and nothing is sent",
    )
    again_ai.add_argument("conversation_id")
    prompt = again_ai.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="the system prompt to use instead of the recorded one")
    prompt.add_argument("--prompt-file", help="read that system prompt from a file")
    again_ai.add_argument("--base-url", help="OpenAI-compatible endpoint (default: the settings')")
    again_ai.add_argument("--model", help="model name (default: the settings'; else the demo)")
    again_ai.add_argument("--api-key", help="key for that endpoint (default: the settings')")
    again_ai.add_argument("--json", action="store_true", help="JSON lines instead of text")
    again_ai.set_defaults(handler=_replay_rerun)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from infra.launcher import run_platform

    return run_platform(settings, workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="AI chatbots on every channel, with live human takeover."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser(
        "worker", help="run a pipeline worker (Faust); run several to scale"
    )
    worker.add_argument("--loglevel", default=None, help="log level (default: settings.log_level)")
    worker.set_defaults(handler=_worker)

    web_cmd = commands.add_parser("web", help="serve a web service, or all of them in one process")
    web_cmd.add_argument("service", choices=[*SERVICES, "all"])
    web_cmd.set_defaults(handler=_web)

    for name, handler, text in (
        ("up", _up, "install (once) and start the local services; idempotent"),
        ("down", _down, "stop the local services started by `up`"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "services",
            nargs="*",
            metavar="SERVICE",
            help="kafka, ferretdb, redis, s3, nginx, traefik (default: all)",
        )
        command.set_defaults(handler=handler)

    test = commands.add_parser(
        "test", help="up, then pytest (arguments after --); stops what it started; pytest's status"
    )
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARG")
    test.set_defaults(handler=_test)

    status = commands.add_parser("status", help="show which services are up")
    status.set_defaults(handler=_status)

    _add_replay(commands)

    run = commands.add_parser("run", help="up, then every Switchboard process in the foreground")
    run.add_argument("--workers", type=int, default=1, help="pipeline workers to start (default 1)")
    run.set_defaults(handler=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    if args.command != "down":  # stopping what was started is always allowed
        from core.security.default_secrets import DefaultSecret
        from infra.secrets_file import startup_settings

        try:
            settings = startup_settings(settings)
        except DefaultSecret as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        code: int = args.handler(settings, args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
