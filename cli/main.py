"""``agentplex``: the command line, built on the client library.

Unix habits: quiet on success (``start`` prints only the new id), ``--json`` wherever
the output is data, one line on stderr and a meaningful exit code on failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agentplex import protocol as p
from agentplex.cli import admin, doctor, panel, service, top, ui
from agentplex.cli.parser import parse_args
from agentplex.cli.render import (
    ChunkPrinter,
    describe_event,
    json_line,
    session_listing,
    session_table,
)
from agentplex.client.sync_client import Client
from agentplex.client.transcripts import read_records, transcript_file
from agentplex.protocol.errors import (
    EXIT_CONFIG,
    EXIT_USAGE,
    AgentplexError,
    ConfigError,
    InvalidArgument,
)

EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------------- commands


def cmd_start(client: Client, args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    info = client.start(
        args.backend,
        None if args.prompt is None else text_argument(args.prompt),
        persona=args.persona,
        mode=args.mode,
        model=args.model,
        permission_policy=args.policy,
        tag=args.tag,
        cwd=str(Path(args.cwd).absolute()),
        env=parse_env(args.env),
        argv=argv,
        keep_children=args.keep_children,
    )
    print(p.encode(info).decode() if args.json else info.id)
    if args.attach:
        return _attach(client, info.id, 1, as_json=args.json)
    return 0


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


STDIN = "-"
"""A prompt or message given as ``-`` is read from standard input: one argument holds at
most 128 KiB, and people paste logs and whole files."""


def text_argument(value: str) -> str:
    """A prompt or message argument; ``-``: standard input, less its trailing newlines (as
    ``$(cat file)`` would read it)."""
    if value != STDIN:
        return value
    try:
        return sys.stdin.buffer.read().decode().rstrip("\n")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"standard input is not UTF-8 text ({exc.reason})") from None


def cmd_send(client: Client, args: argparse.Namespace) -> int:
    reply = client.send(text_argument(args.message), args.session)
    return _print_reply(reply, args)


def cmd_interrupt(client: Client, args: argparse.Namespace) -> int:
    session_id = client.interrupt(args.session)
    return _print_reply(p.Interrupted(session_id=session_id), args)


def cmd_permit(client: Client, args: argparse.Namespace) -> int:
    reply = client.permit(args.allow, args.session, request_id=args.request)
    return _print_reply(reply, args)


def _print_reply(reply: p.Reply, args: argparse.Namespace) -> int:
    """A quiet command's output: nothing, or with ``--json`` the daemon's reply."""
    if args.json:
        print(p.encode(reply).decode())
    return 0


def cmd_kill(client: Client, args: argparse.Namespace) -> int:
    reply = client.terminate(args.session, grace=args.grace)
    if args.json:
        print(p.encode(reply.session).decode())
    return 0


def cmd_switch(client: Client, args: argparse.Namespace) -> int:
    session_id = client.switch(args.session)
    return _print_reply(p.Switched(session_id=session_id), args)


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    reply = client.list(all=args.all)
    if args.json:
        print(session_listing(reply.sessions, reply.active))
    elif reply.sessions:
        print(session_table(reply.sessions, reply.active))
    return 0


def cmd_attach(client: Client, args: argparse.Namespace) -> int:
    return _attach(client, args.session, args.from_seq, as_json=args.json, colors=args.color)


def _attach(
    client: Client, session: str | None, from_seq: int, *, as_json: bool, colors: bool = False
) -> int:
    info = client.inspect(session)
    printer = ChunkPrinter(as_json=as_json, colors=colors)
    try:
        for chunk in client.follow(info.id, from_seq):
            printer.print(chunk)
    finally:
        printer.close()
    return 0


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    prefixes: list[str] = []
    if args.session:
        sid = client.inspect(args.session).id
        prefixes = [p.chunk_topic(sid).decode()] + [
            f"session.{what}.{sid}" for what in ("created", "terminated", "status_changed")
        ]
    elif args.lifecycle:
        prefixes = [p.SESSION_TOPIC.decode()]
    with client.subscribe(*prefixes) as events:
        for event in events:
            print(p.encode(event).decode() if args.json else describe_event(event), flush=True)
    return 0


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    info = client.inspect(args.session)
    path = transcript_file(info.transcript)  # its .gz once compressed; purged: transcript_gone
    if not args.cat:
        print(p.encode(info).decode() if args.json else path)
        return 0
    for record in read_records(path):
        print(json_line(p.encode(record)))  # what a terminal could act on stays escaped
    return 0


def cmd_backends(client: Client, args: argparse.Namespace) -> int:
    backends = client.backends()  # as the daemon sees them: its PATH, its environment
    if args.json:
        print(p.encode(backends).decode())
        return 0
    print(f"{'BACKEND':<8} {'MODES':<16} {'STATUS':<8} {'VERSION':<10} WHERE")
    for b in backends:
        state = "ok" if b.available else "missing"
        where = b.executable or b.problem or ""
        modes = ",".join(b.modes)
        print(f"{b.id:<8} {modes:<16} {state:<8} {b.version or '-':<10} {where}")
        if b.credentials:  # names only: the daemon never sends a value
            found = ", ".join(b.credentials_found) or "none found (see README: Credentials)"
            print(f"{'':<8} credentials: {found}")
        if args.policies:
            for policy, what in b.policies.items():
                print(f"{'':<8} {policy:<6} {what}")
    return 0


def cmd_personas(client: Client, args: argparse.Namespace) -> int:
    """The personas (``--reload``: read again first); exit 78 if a template has a problem."""
    reply = client.personas(reload=args.reload)
    if args.json:
        listing = {"personas": reply.personas, "problems": reply.problems}
        if args.reload:
            listing["changes"] = reply.changes
        print(p.encode(listing).decode())
    else:
        if args.reload:
            for change in reply.changes or ["nothing changed"]:
                print(f"reloaded: {change}")
        policies = {b.id: b.policies for b in client.backends()} if reply.personas else {}
        for persona in reply.personas:
            backend = persona.backend or "-"
            mark = "  (!) see below" if persona.problem else ""
            line = f"{persona.icon or ' '} {persona.name:<12} {backend:<8} {persona.description}"
            print(line + mark)
            policy = persona.permission_policy.value
            what = policies.get(persona.backend or "demo", {}).get(policy, "")
            print(f"{'':<23} policy {policy}{': ' + what if what else ''}")
        for problem in reply.problems:
            print(f"agentplex personas: {problem}", file=sys.stderr)
    return EXIT_CONFIG if reply.problems else 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "start": cmd_start,
    "send": cmd_send,
    "interrupt": cmd_interrupt,
    "kill": cmd_kill,
    "permit": cmd_permit,
    "personas": cmd_personas,
    "switch": cmd_switch,
    "ls": cmd_ls,
    "attach": cmd_attach,
    "events": cmd_events,
    "logs": cmd_logs,
    "backends": cmd_backends,
    "panel": panel.run,
}


# ---------------------------------------------------------------------- running

LOCAL_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "service": service.run,
    "doctor": doctor.run,
    "config": admin.run_config,
    "purge": admin.run_purge,
    "top": top.run,
    "ui": ui.run,
}
"""Commands that need no daemon connection up front (``top``, ``purge`` and ``ui`` open
their own)."""
READS_OWN_CONFIG = ("daemon", "doctor", "config")
"""Commands that load the config file themselves (with flags, or to report on it)."""


def _use_config_file(args: argparse.Namespace) -> int:
    """Let the config file's dirs and backend CLIs reach this command; 0, or the exit code
    of a broken file."""
    from agentplex.supervisor import config_file

    try:
        config_file.export_to_environment(config_file.load(args.config))
    except ConfigError as exc:
        print(f"agentplex {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


def _guarded(args: argparse.Namespace, command: Callable[[argparse.Namespace], int]) -> int:
    """Run ``command(args)``; a failure becomes one line on stderr and its exit code."""
    try:
        return command(args)
    except AgentplexError as exc:
        print(f"agentplex {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


def _run_remote(args: argparse.Namespace) -> int:
    """Connect to the daemon and run a command of :data:`COMMANDS` through it."""
    with Client(timeout=args.timeout) as client:
        return COMMANDS[args.command](client, args)


def run(argv: Sequence[str] | None = None) -> int:
    """Run one CLI command; returns the exit code."""
    args = parse_args(argv)
    if args.runtime_dir:
        os.environ["AGENTPLEX_RUNTIME_DIR"] = str(Path(args.runtime_dir).absolute())
    if args.command not in READS_OWN_CONFIG and (code := _use_config_file(args)):
        return code
    if args.command in LOCAL_COMMANDS:
        return _guarded(args, LOCAL_COMMANDS[args.command])
    if args.command in ("daemon", "demo"):
        from agentplex.cli import local

        return local.run_daemon(args) if args.command == "daemon" else local.run_demo(args)
    return _guarded(args, _run_remote)


def main() -> None:
    """Console entry point."""
    try:
        sys.exit(run())
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()

__all__ = ["EXIT_USAGE", "main", "run"]
