"""The panel requests of the control API, carried out against the :class:`PanelService`
(``supervisor.api.Api`` checks the caller's role first and hands every panel request here)."""

from __future__ import annotations

import msgspec

from agentplex.protocol.errors import InvalidArgument
from agentplex.protocol.replies import (
    PanelChanged,
    PanelCreated,
    PanelDecided,
    PanelPosted,
    PanelReported,
    Panels,
    PanelShown,
    Reply,
)
from agentplex.protocol.requests import (
    PanelControl,
    PanelCreate,
    PanelDecide,
    PanelList,
    PanelNext,
    PanelReact,
    PanelReport,
    PanelRequest,
    PanelSay,
    PanelShow,
)
from agentplex.supervisor.panels import analytics, report
from agentplex.supervisor.panels.service import PanelService


class PanelApi:
    """Turns each panel request into the service call that carries it out, and its reply."""

    def __init__(self, service: PanelService) -> None:
        self.service = service

    async def handle(self, request: PanelRequest) -> Reply:
        service, rid = self.service, request.id
        match request:
            case PanelCreate(config=config):
                return PanelCreated(id=rid, panel=service.create(config))
            case PanelList(all=everything):
                return Panels(id=rid, panels=service.listing(everything))
            case PanelShow(panel=ref, start=start, limit=limit):
                info, messages = service.show(ref, start, limit)
                total = len(service.get(ref).messages)
                return PanelShown(id=rid, panel=info, messages=messages, start=start, total=total)
            case PanelSay(panel=ref, text=text, participant=who, reply_to=reply_to):
                return PanelPosted(id=rid, message=service.say(ref, who, text, reply_to))
            case PanelReact(panel=ref, message=message, emoji=emoji, participant=who):
                return PanelPosted(id=rid, message=service.react(ref, message, emoji, who))
            case PanelControl(panel=ref, action=action):
                return PanelChanged(id=rid, panel=await service.control(ref, action))
            case PanelDecide(panel=ref, proposal=proposal, veto=veto, human_wait_s=wait):
                decision = await service.decide(ref, proposal, veto=veto, human_wait_s=wait)
                return PanelDecided(id=rid, decision=decision)
            case PanelNext(panel=ref, participant=name):
                return PanelChanged(id=rid, panel=service.pick(ref, name))
            case PanelReport(panel=ref):
                return self._report(ref, rid)
            case _:
                raise InvalidArgument(f"unknown panel request {type(request).__name__}")

    def _report(self, ref: str, rid: int) -> PanelReported:
        panel = self.service.get(ref)
        figures, found = panel.analytics()
        info = panel.info()
        text = report.markdown(info, figures, panel.messages, panel.decisions, found)
        raw = msgspec.Raw(analytics.encode(figures))
        return PanelReported(id=rid, panel=info, markdown=text, analytics=raw)
