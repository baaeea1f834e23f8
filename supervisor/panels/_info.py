"""A panel at a glance (``PanelInfo``), counted from its config, metadata and log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agentplex.protocol import Usage
from agentplex.protocol.panels import MemberInfo, PanelConfig, PanelInfo, PanelMessage
from agentplex.supervisor.panels.store import PanelMetadata, ParticipantRecord


def panel_info(
    config: PanelConfig,
    metadata: PanelMetadata,
    messages: Sequence[PanelMessage],
    participants: Mapping[str, ParticipantRecord],
) -> PanelInfo:
    said: dict[str, int] = {}
    usage = Usage()
    for message in messages:
        said[message.participant] = said.get(message.participant, 0) + 1
        if message.usage is not None:
            usage = add_usage(usage, message.usage)
    members = []
    for spec in config.members:
        record = participants.get(spec.name)
        members.append(
            MemberInfo(
                spec=spec,
                session_id=record.session_id if record else None,
                messages=said.get(spec.name, 0),
                active=record.active if record else True,
            )
        )
    pending = metadata.pending
    return PanelInfo(
        id=metadata.id,
        config=config,
        status=metadata.status,
        members=members,
        created_at=metadata.created_at,
        round=metadata.round,
        turn=metadata.turn,
        messages=len(messages),
        speaking=pending.participant if pending else None,
        stop_reason=metadata.stop_reason,
        usage=usage,
    )


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
        cost_usd=a.cost_usd + b.cost_usd,
    )
