"""``agentplex panel …``: create a panel, list, show, watch, post to and control it."""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from agentplex import protocol as p
from agentplex.cli.render import visible
from agentplex.client.sync_client import Client
from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.panels import (
    Decision,
    MemberSpec,
    PanelAction,
    PanelConfig,
    PanelInfo,
    PanelMessage,
    PanelType,
    RoundShape,
    SpeakerPolicy,
    Stance,
)

MEMBER = re.compile(
    r"^(?P<persona>[^:@]+)(?::(?P<backend>[^:@]*)(?::(?P<model>[^@]*))?)?"
    r"(?:@(?P<stance>\w+))?$"
)

EPILOG = """\
examples:
  id=$(agentplex panel create --type debate --topic "Ship on Friday?" \\
        --member pm:demo@for --member qa:demo@against --member specialist:demo --rounds 2)
  agentplex panel watch $id                   # the discussion so far, then live
  agentplex panel say $id "What about the migration?"
  agentplex panel end $id
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    panel = sub.add_parser(
        "panel",
        help="panels: several agents discussing one topic in turns",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = panel.add_subparsers(dest="panel_command", required=True, metavar="VERB")
    c = verbs.add_parser("create", help="start a panel and print its id")
    c.add_argument("--type", default="multi_persona", choices=[t.value for t in PanelType])
    c.add_argument("--topic", required=True)
    c.add_argument(
        "--member",
        action="append",
        default=[],
        required=True,
        metavar="PERSONA[:BACKEND[:MODEL]][@STANCE]",
        help="repeat for each member",
    )
    c.add_argument("--moderator", help="the member name of the moderator")
    c.add_argument("--rounds", type=int, help="stop after this many rounds")
    c.add_argument("--shape", default="sequential", choices=[s.value for s in RoundShape])
    c.add_argument(
        "--policy",
        choices=[s.value for s in SpeakerPolicy],
        help="who speaks next in sequential rounds (default: the type's; manual: 'panel next')",
    )
    c.add_argument(
        "--until",
        action="append",
        default=[],
        metavar="CONDITION",
        help="stop condition, e.g. 'messages=10 or marker=DECISION:'",
    )
    c.add_argument("--tag", help="tag of the members' sessions")
    c.add_argument("--json", action="store_true", help="print the panel as JSON")
    ls = verbs.add_parser("ls", help="list panels")
    ls.add_argument("--all", "-a", action="store_true", help="also archived panels")
    ls.add_argument("--json", action="store_true")
    for verb, helptext in (
        ("show", "a panel's members, status and messages"),
        ("watch", "a panel's messages so far, then live until it ends"),
        ("report", "a panel's analytics as Markdown"),
    ):
        v = verbs.add_parser(verb, help=helptext)
        v.add_argument("panel", help="panel id or unique prefix")
        v.add_argument("--json", action="store_true")
    s = verbs.add_parser("say", help="post a message as a human")
    s.add_argument("panel")
    s.add_argument("text")
    s.add_argument("--reply-to", metavar="MSG", help="the message id this answers")
    s.add_argument("--as", dest="participant", default="human", help="your name (default human)")
    s.add_argument("--json", action="store_true")
    r = verbs.add_parser("react", help="react to a message (not a turn)")
    for name in ("panel", "message", "emoji"):
        r.add_argument(name)
    r.add_argument("--json", action="store_true")
    d = verbs.add_parser("decide", help="put a proposal to the voting members")
    d.add_argument("panel")
    d.add_argument("proposal")
    d.add_argument("--veto", action="store_true", help="offer the voters a veto")
    d.add_argument(
        "--human-wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long voting human members have to post their POSITION (default 120)",
    )
    d.add_argument("--json", action="store_true")
    n = verbs.add_parser("next", help="pick who speaks next (the manual speaker policy)")
    n.add_argument("panel")
    n.add_argument("member", help="the member's name")
    n.add_argument("--json", action="store_true")
    for action in PanelAction:
        a = verbs.add_parser(action.value, help=f"{action.value} a panel")
        a.add_argument("panel")
        a.add_argument("--json", action="store_true")


def parse_member(text: str) -> MemberSpec:
    """``PERSONA[:BACKEND[:MODEL]][@STANCE]`` as a member named for its persona."""
    found = MEMBER.match(text)
    if found is None:
        raise InvalidArgument(f"--member expects PERSONA[:BACKEND[:MODEL]][@STANCE], got {text!r}")
    stance = found["stance"]
    if stance is not None and stance not in {s.value for s in Stance}:
        raise InvalidArgument(f"--member {text!r}: stance must be for, against or neutral")
    persona = found["persona"]
    return MemberSpec(
        name=persona,
        persona=persona,
        backend=found["backend"] or None,
        model=found["model"] or None,
        stance=Stance(stance) if stance else None,
    )


def config_from(args: argparse.Namespace) -> PanelConfig:
    return PanelConfig(
        topic=args.topic,
        type=PanelType(args.type),
        members=[parse_member(m) for m in args.member],
        moderator=args.moderator,
        shape=RoundShape(args.shape),
        speaker_policy=SpeakerPolicy(args.policy) if args.policy else None,
        max_rounds=args.rounds,
        until=args.until,
        tag=args.tag,
        cwd=str(Path(os.getcwd()).absolute()),
    )


def run(client: Client, args: argparse.Namespace) -> int:
    verb = args.panel_command
    if verb == "create":
        info = client.panel_create(config_from(args))
        print(p.encode(info).decode() if args.json else info.id)
    elif verb == "ls":
        panels = client.panel_list(all=args.all)
        if args.json:
            print(p.encode(panels).decode())
        for info in [] if args.json else panels:
            print(listing_line(info))
    elif verb == "show":
        shown = client.panel_show(args.panel)
        if args.json:
            print(p.encode(shown).decode())
        else:
            print_panel(shown.panel, shown.messages)
    elif verb == "watch":
        return watch(client, args.panel, as_json=args.json)
    elif verb == "report":
        report = client.panel_report(args.panel)
        print(p.encode(report).decode() if args.json else report.markdown)
    else:
        return _act(client, args)
    return 0


def _act(client: Client, args: argparse.Namespace) -> int:
    """The quiet verbs: nothing printed unless ``--json`` (decide prints its decision)."""
    verb = args.panel_command
    reply: object
    if verb == "say":
        reply = client.panel_say(
            args.panel, args.text, participant=args.participant, reply_to=args.reply_to
        )
    elif verb == "react":
        reply = client.panel_react(args.panel, args.message, args.emoji)
    elif verb == "next":
        reply = client.panel_next(args.panel, args.member)
    elif verb == "decide":
        reply = client.panel_decide(
            args.panel, args.proposal, veto=args.veto, human_wait_s=args.human_wait
        )
        if not args.json:
            print_decision(reply.decision)
    else:
        reply = client.panel_control(args.panel, PanelAction(verb))
    if args.json:
        print(p.encode(reply).decode())
    return 0


def print_decision(decision: Decision) -> None:
    """The consensus reached, then each vote on a line."""
    level = decision.level.value.replace("_", " ")
    print(f"{level} (agreement {decision.agreement:.3f})  decision {decision.id}")
    for vote in decision.votes:
        print(f"  {vote.participant}: {vote.position}  {visible(vote.reason)}")
    for item in decision.action_items:
        print(f"  action item: {visible(item)}")


def listing_line(info: PanelInfo) -> str:
    names = ",".join(m.spec.name for m in info.members)
    topic = visible(" ".join(info.config.topic.split()))[:50]
    return (
        f"{info.id[:8]}  {info.status:<9} {info.config.type:<19} round {info.round:<3} "
        f"{info.messages:>4} msgs  {names}  {topic}"
    )


def print_panel(info: PanelInfo, messages: list[PanelMessage]) -> None:
    print(f"panel {info.id}  {info.status}  {info.config.type}  round {info.round}")
    print(f"topic: {visible(info.config.topic)}")
    if info.stop_reason:
        print(f"stopped: {info.stop_reason}")
    for member in info.members:
        stance = f" @{member.spec.stance}" if member.spec.stance else ""
        session = (member.session_id or "-")[:8]
        print(
            f"  {member.spec.name} ({member.spec.role}{stance}) session {session}"
            f" {member.messages} msgs{'' if member.active else ' (left)'}"
        )
    for message in messages:
        print(message_text(message))


def message_text(message: PanelMessage) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(message.ts))
    mark = " (interrupted)" if message.interrupted else ""
    reply = f" ↳{message.reply_to}" if message.reply_to else ""
    reactions = " ".join(r.emoji for r in message.reactions)
    head = f"[{when} r{message.round} t{message.turn}] {message.id} {message.participant}"
    body = visible(message.text)  # an agent's escapes never reach the terminal
    return f"{head}{mark}{reply}: {body}" + (f"  [{reactions}]" if reactions else "")


def watch(client: Client, ref: str, *, as_json: bool) -> int:
    """The log so far, then live events until the panel ends (subscribed first: nothing
    said between the two is missed, and nothing is printed twice)."""
    with client.subscribe(p.PANEL_TOPIC) as events:
        shown = client.panel_show(ref)
        panel_id, printed = shown.panel.id, {m.id for m in shown.messages}
        for message in shown.messages:
            print(p.encode(message).decode() if as_json else message_text(message), flush=True)
        if shown.panel.status.ended:
            return 0
        for event in events:
            if not isinstance(event, p.PanelEvent) or event.panel_id != panel_id:
                continue
            if isinstance(event, p.PanelMessageEvent) and event.message.id in printed:
                continue
            if isinstance(event, p.PanelMessageEvent):
                printed.add(event.message.id)
            print(p.encode(event).decode() if as_json else describe(event), flush=True)
            if isinstance(event, p.PanelEnded):
                return 0
    return 0


def describe(event: p.PanelEvent) -> str:
    match event:
        case p.PanelMessageEvent(message=message):
            return message_text(message)
        case p.PanelTurnStarted(participant=who, round=rnd):
            return f"… {who} is speaking (round {rnd})"
        case p.PanelUpdated(panel=info):
            return f"-- round {info.round}, {info.status}"
        case p.PanelEnded(stop_reason=reason):
            return f"panel ended: {reason}"
        case p.PanelParticipantLeft(participant=who, reason=reason):
            return f"{who} left: {visible(reason)}"
        case p.PanelInsightEvent(insight=insight):
            return f"  {insight.kind}: {visible(insight.text)}"
        case _:
            return f"{type(event).__struct_config__.tag}"
