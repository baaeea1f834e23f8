"""Commands about this machine's configuration and files: ``config show`` and ``purge``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from agentplex.protocol.errors import DaemonNotRunning, InvalidArgument

_AGE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("config", help="show the effective configuration and its sources")
    actions = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="every setting, its value and where it came from (default/file/env)",
        description="Print the effective configuration as TOML, each value commented with "
        "where it came from and the variable that overrides it.",
    )
    show.add_argument("--json", action="store_true")
    pg = sub.add_parser(
        "purge",
        help="delete the transcripts of a tag, or older than a date, and list them",
        description="Delete transcripts (never a live session's). A transcript's age is the "
        "time it was last written.",
    )
    pg.add_argument("--tag", "-t", help="the tag whose transcripts to delete")
    pg.add_argument(
        "--before",
        metavar="DATE",
        help="last written before DATE: YYYY-MM-DD, an ISO date-time, or an age like 30d, 12h",
    )
    pg.add_argument("--dry-run", "-n", action="store_true", help="list, delete nothing")
    pg.add_argument("--json", action="store_true", help="print the paths as a JSON array")


# ---------------------------------------------------------------------- config show


def run_config(args: argparse.Namespace) -> int:
    """``agentplex config show``."""
    from agentplex.supervisor import config_file

    resolved = config_file.load(args.config)
    if args.json:
        rows = {
            s.key: {"value": _shown(s.value), "source": s.source, "origin": s.origin, "env": s.env}
            for s in resolved.settings
        }
        print(json.dumps({"file": str(resolved.file) if resolved.file else None, **rows}))
        return 0
    where = resolved.file or f"none ({config_file.default_path()} does not exist)"
    print(f"# effective agentplex configuration; config file: {where}")
    section = ""
    for s in resolved.settings:
        table, _, leaf = s.key.rpartition(".")
        if table != section:
            print(f"\n[{table}]")
            section = table
        value = _shown(s.value)
        line = f"{leaf} = {_toml(value)}" if value is not None else f"# {leaf} = (unset)"
        source = s.source if s.source in ("default", "file") else f"{s.source} {s.origin}"
        override = f", override: {s.env}" if s.source != "env" and s.env else ""
        print(f"{line:<50} # {source}{override}")
    return 0


def _shown(value: Any) -> Any:
    """A value as shown: in a table of variables (``[backends.<id>] env``), those whose
    names look secret are not printed."""
    from agentplex.supervisor.credentials import looks_secret

    if isinstance(value, dict):
        return {k: SECRET_SHOWN if looks_secret(k) else v for k, v in value.items()}
    return value


SECRET_SHOWN = "(secret: not shown)"


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


# ---------------------------------------------------------------------- purge


def run_purge(args: argparse.Namespace) -> int:
    """``agentplex purge``: delete transcripts, print each one's path."""
    from agentplex.supervisor import config_file, retention

    if args.tag is None and args.before is None:
        raise InvalidArgument("say what to purge: --tag TAG and/or --before DATE")
    before = parse_before(args.before) if args.before else None
    sessions_dir = config_file.load(args.config).config.sessions_dir
    try:
        paths = retention.select(
            sessions_dir, live=_live_transcripts(args.timeout), tag=args.tag, before=before
        )
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    outcome = retention.purge(paths, dry_run=args.dry_run)
    if args.json:
        print(json.dumps([str(p) for p in outcome.deleted]))
    else:
        for path in outcome.deleted:
            print(path)
    summary = outcome.summary(dry_run=args.dry_run)  # "deleted 1 transcript (0.1 MiB)"
    print(f"agentplex purge: {summary} under {sessions_dir}", file=sys.stderr)
    return 0


def parse_before(text: str, now: float | None = None) -> float:
    """``2024-05-01`` (local midnight), an ISO date-time, or an age (``30d``) -> epoch."""
    age = _AGE.match(text.strip())
    if age:
        now = time.time() if now is None else now
        return now - float(age["n"]) * _UNIT_SECONDS[age["unit"]]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            f"--before {text!r}: expected YYYY-MM-DD, an ISO date-time, or an age like 30d"
        ) from None
    return when.timestamp()


def _live_transcripts(timeout: float) -> Collection[Path]:
    """The transcripts of the running daemon's live sessions (none if no daemon runs)."""
    from agentplex.client.sync_client import Client

    try:
        with Client(timeout=timeout) as client:
            sessions = client.list().sessions
    except DaemonNotRunning:
        return set()
    return {Path(s.transcript) for s in sessions if not s.status.ended}
