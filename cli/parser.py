"""The ``agentplex`` command line's grammar: the parser, its help text, and ``parse_args``.

Only the grammar lives here; :mod:`agentplex.cli.main` maps each parsed command name to
the function that runs it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from agentplex.cli import admin, doctor, panel, service, top, ui
from agentplex.protocol.errors import InvalidArgument
from agentplex.supervisor import __version__

EPILOG = """\
sessions are named by their UUID or any unique prefix of it; commands that take an
optional ID act on the active session (the newest, or the one chosen with 'switch').

environment: AGENTPLEX_RUNTIME_DIR (sockets, lock) and AGENTPLEX_STATE_DIR (transcripts)
place a daemon; every command honours them, so isolated daemons can run side by side.

exit codes: 0 ok, 2 bad input, 3 no such session, 4 session state forbids it,
66 transcript gone (purged), 69 daemon (or the agent's program, systemd, metrics port)
unavailable, 70 internal error, 74 transcript not writable, 75 timeout (or the daemon out of
descriptors), 76 unreadable daemon reply, 77 not permitted (the caller's role, or a runtime
dir not private), 78 bad configuration, 130 interrupted by Ctrl-C.

examples:
  agentplex daemon --detach                   # start the daemon; returns once it serves
  id=$(agentplex start --backend demo "hello")
  agentplex attach $id                        # history, then live output
  agentplex send ${id:0:6} "tell me more"     # or: send -s ID MESSAGE
  agentplex start --backend exec --tag build -- make -j2
  agentplex events --json | jq .              # NDJSON for editor plugins
"""

DAEMON_EPILOG = """\
examples:
  agentplex daemon                            # in the foreground, until Ctrl-C or SIGTERM
  agentplex daemon --detach                   # in the background; returns once it serves
  agentplex start --backend demo "hello"      # at once: the daemon already answers
  agentplex daemon --stop                     # SIGTERM it and wait until it is gone

--detach appends the daemon's output to STATE/daemon.log; if the daemon fails to start
(e.g. one already runs there) it prints the daemon's error and exits with its code
(75 if it did not serve within 15 s). --stop exits 69 if no daemon runs there.
"""

RUNTIME_DIR_HELP = "daemon runtime dir (default: $AGENTPLEX_RUNTIME_DIR)"
CONFIG_HELP = "config file (default: $AGENTPLEX_CONFIG, else ~/.config/agentplex/config.toml)"

SEND_USAGE = "agentplex send [-h] [-s SESSION] MESSAGE\n       agentplex send [-h] SESSION MESSAGE"
SEND_EPILOG = """\
one word is the message, for the active session (or the one -s names); two words are
the session, then the message. Quote a message that has spaces.

examples:
  agentplex send "tell me more"               # to the active session
  agentplex send 3f2a "tell me more"          # to session 3f2a...
  agentplex send -s 3f2a "tell me more"       # the same
  agentplex send 3f2a - < notes.md            # '-': the message from standard input
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentplex",
        description="Run CLI coding agents side by side under one daemon and watch them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runtime-dir", help=RUNTIME_DIR_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per request")
    parser.add_argument("--config", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_daemon(sub)
    _add_demo(sub)
    _add_start(sub)
    _add_session_commands(sub)
    _add_views(sub)
    _add_operations(sub)
    return parser


def _add_daemon(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "daemon",
        help="run the daemon in the foreground, or with --detach in the background",
        description="Run the daemon in the foreground (systemd-friendly; Ctrl-C stops it),\n"
        "or with --detach in the background.",
        epilog=DAEMON_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    how = d.add_mutually_exclusive_group()
    how.add_argument(
        "--detach",
        action="store_true",
        help="start it in the background and return once it serves (log: STATE/daemon.log)",
    )
    how.add_argument(
        "--stop",
        action="store_true",
        help="stop the daemon serving the runtime dir (SIGTERM) and wait until it is gone",
    )
    # The global flags are taken after "daemon" too (where people put them, and where the
    # "start one with: agentplex daemon --runtime-dir ..." hint puts them).
    d.add_argument("--runtime-dir", default=argparse.SUPPRESS, help=RUNTIME_DIR_HELP)
    d.add_argument("--state-dir", help="transcripts and state (default: $AGENTPLEX_STATE_DIR)")
    d.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL (default 5)")
    d.add_argument("--max-sessions", type=int, help="refuse to start more sessions than this")
    d.add_argument("--turn-timeout", type=float, help="stop a turn after this many seconds")
    d.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    d.add_argument("--log-format", choices=["auto", "json", "console"])
    d.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    d.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("demo", help="start a daemon (if none runs) and a demo session, offline")
    d.add_argument("--state-dir", help="where the demo daemon keeps transcripts")
    d.add_argument(
        "--turns", type=_turns, default=3, help="how many turns to show, 1 or more (default 3)"
    )


def _turns(text: str) -> int:
    """``demo --turns``: a whole number, 1 or more (argparse reports the error, exit 2)."""
    try:
        turns = int(text)
    except ValueError:
        turns = 0
    if turns < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of turns, 1 or more, got {text!r}"
        )
    return turns


def _add_start(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "start",
        help="start a session and print its id",
        description="Start a session. For the exec backend give the command after --.",
    )
    s.add_argument(
        "--backend", "-b", help="backend id (default: the persona's, else demo; see 'backends')"
    )
    s.add_argument("--persona", "-p", help="persona name (see 'agentplex personas')")
    s.add_argument("--mode", choices=["turn", "long_lived"], help="if the backend has both")
    s.add_argument("--model", help="model for the agent CLI (default: the persona's)")
    s.add_argument(
        "--policy",
        choices=["ask", "allow", "deny"],
        help="tool permissions: what each does depends on the backend (claude turn mode and "
        "codex/gemini cannot ask; deny holds through the CLI's own flags): see "
        "'agentplex backends --policies'",
    )
    s.add_argument("--tag", "-t", help="tag: groups transcripts under <state>/sessions/<tag>/")
    s.add_argument("--cwd", default=os.getcwd(), help="working directory (default: here)")
    s.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    s.add_argument("--attach", "-a", action="store_true", help="attach after starting")
    s.add_argument(
        "--keep-children",
        action="store_true",
        help="let what the agent leaves running outlive it (until terminated)",
    )
    s.add_argument("--json", action="store_true", help="print the session as JSON")
    s.add_argument(
        "prompt",
        nargs="?",
        help="first prompt (required for turn-based backends); '-' reads it from standard "
        "input, for one over the 128 KiB an argument holds: start -b claude - < big.log",
    )
    s.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _add_session_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "send",
        help="send a message to a session",
        usage=SEND_USAGE,
        epilog=SEND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--session", "-s", help="session id or prefix (default: the active one)")
    # Both "send ID MESSAGE" (what people type first) and "send -s ID MESSAGE";
    # parse_args() sorts the one or two words into session and message.
    s.add_argument(
        "words",
        nargs="+",
        metavar="[SESSION] MESSAGE",
        help="the message ('-': read it from standard input), optionally preceded by the "
        "session id or prefix",
    )
    s.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")
    for name, helptext in (
        ("interrupt", "interrupt a session's running turn (SIGINT to its group)"),
        ("switch", "make a session the active one"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument(
            "session", nargs=None if name == "switch" else "?", help="session id or prefix"
        )
        c.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")
    pm = sub.add_parser("permit", help="answer a session's tool permission request")
    pm.add_argument("session", nargs="?", help="session id or prefix (default: the active one)")
    answer = pm.add_mutually_exclusive_group(required=True)
    answer.add_argument("--allow", action="store_true", help="let the agent use the tool")
    answer.add_argument("--deny", action="store_true", help="refuse it")
    pm.add_argument("--request", help="request id (default: the pending one)")
    pm.add_argument("--json", action="store_true", help="print the daemon's reply as JSON")
    k = sub.add_parser("kill", help="terminate a session and its whole process tree")
    k.add_argument("session", nargs="?", help="session id or prefix (default: the active one)")
    k.add_argument(
        "--grace",
        type=float,
        help="seconds between SIGTERM and SIGKILL (default: the daemon's [grace] terminate, 5)",
    )
    k.add_argument("--json", action="store_true", help="print the terminated session as JSON")


def _add_views(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ls = sub.add_parser("ls", help="list sessions")
    ls.add_argument(
        "--json", action="store_true", help="a JSON array of sessions, each with \"active\""
    )
    ls.add_argument(
        "--all", "-a", action="store_true", help="also sessions ended over keep_ended ago"
    )
    a = sub.add_parser("attach", help="print a session's history, then its live output")
    a.add_argument("session", nargs="?", help="session id or prefix (default: the active one)")
    a.add_argument("--from", dest="from_seq", type=int, default=1, help="first seq to show")
    a.add_argument("--json", action="store_true", help="NDJSON chunks")
    a.add_argument(
        "--color",
        action="store_true",
        help="keep the agent's colours (SGR escapes); other control characters are always "
        "shown as ^X, never sent to the terminal",
    )
    e = sub.add_parser("events", help="print events as they happen")
    e.add_argument("--session", "-s", help="only this session's chunks and lifecycle")
    e.add_argument("--lifecycle", action="store_true", help="only session lifecycle events")
    e.add_argument("--json", action="store_true", help="NDJSON, one event per line")
    lg = sub.add_parser("logs", help="print a session's transcript path (--cat: its records)")
    lg.add_argument("session", nargs="?", help="session id or prefix (default: the active one)")
    lg.add_argument("--cat", action="store_true", help="print the transcript's records")
    lg.add_argument("--json", action="store_true", help="the session as JSON (--cat: NDJSON)")
    b = sub.add_parser("backends", help="list backends, whether their CLI was found, versions")
    b.add_argument("--json", action="store_true", help="a JSON array, one object per backend")
    b.add_argument(
        "--policies", action="store_true", help="also say what ask, allow and deny do with each"
    )
    ps = sub.add_parser("personas", help="list persona templates (and broken template files)")
    ps.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"personas": [...], "problems": [...]} (exit 78 if a problem)',
    )
    ps.add_argument("--reload", action="store_true", help="have the daemon read them again first")


def _add_operations(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service.add_parser(sub)
    doctor.add_parser(sub)
    admin.add_parsers(sub)
    top.add_parser(sub)
    panel.add_parser(sub)
    ui.add_parser(sub)


DURATIONS = (
    ("timeout", "--timeout", True),
    ("grace", "--grace", False),
    ("turn_timeout", "--turn-timeout", True),
)
"""Flags holding seconds: (attribute, flag, must be over 0). Grace may be 0 (SIGKILL at
once); a timeout of 0 could never be met. None may be nan or infinite."""


def _check_durations(args: argparse.Namespace) -> None:
    for attribute, flag, positive in DURATIONS:
        value = getattr(args, attribute, None)
        if value is None:
            continue
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            least = "over 0" if positive else "0 or more"
            raise InvalidArgument(f"{flag} expects a finite number of seconds, {least}: {value}")


def _send_target(args: argparse.Namespace) -> tuple[str | None, str]:
    """``send``'s session and message from its one or two positional words."""
    words: list[str] = args.words
    if len(words) == 1:
        return args.session, words[0]
    if len(words) > 2:
        raise InvalidArgument(
            f"expected [SESSION] MESSAGE, got {len(words)} words (quote the message)"
        )
    if args.session is not None:
        raise InvalidArgument("name the session either with -s or before the message, not both")
    return words[0], words[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; for ``start``, everything after ``--`` is the command.

    argparse alone would hand the command's first word to the optional ``prompt``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = _parse(parser, argv)
    if args.command == "start" and "--" in argv:
        cut = argv.index("--")
        args = _parse(parser, argv[:cut])
        args.argv = argv[cut + 1 :]
    try:
        _check_durations(args)
        if args.command == "send":
            args.session, args.message = _send_target(args)
    except InvalidArgument as exc:
        # One line and exit 2, as argparse's own errors exit (but without the usage).
        print(f"agentplex {args.command}: {exc.message}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    return args


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, except that an option the command does not know is reported
    with that command's usage (argparse reports it with the top-level one)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = _subcommands(parser).get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps the subparsers only there
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
