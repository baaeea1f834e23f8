"""The client's panel methods (a mixin of :class:`AsyncClient`; ``Client`` wraps each)."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, TypeVar

from agentplex import protocol as p
from agentplex.protocol.panels import PanelAction, PanelConfig, PanelInfo, PanelMessage

R = TypeVar("R", bound=p.Reply)

DECIDE_TIMEOUT = 1860.0
"""How long ``panel_decide`` waits by default: the daemon's default turn timeout and a minute."""


class PanelMethods:
    """Create, read, post to and control panels."""

    if TYPE_CHECKING:

        async def request(
            self, request: p.Request, expect: type[R], timeout: float | None
        ) -> R: ...

    async def panel_create(self, config: PanelConfig, *, timeout: float | None = None) -> PanelInfo:
        """Start a panel; returns it as created (its members start with their first turns)."""
        return (await self.request(p.PanelCreate(config=config), p.PanelCreated, timeout)).panel

    async def panel_list(
        self, *, all: bool = False, timeout: float | None = None
    ) -> builtins.list[PanelInfo]:
        """The daemon's panels, newest first (archived ones with ``all``)."""
        return (await self.request(p.PanelList(all=all), p.Panels, timeout)).panels

    async def panel_show(
        self, panel: str, *, start: int = 0, limit: int = 1_000, timeout: float | None = None
    ) -> p.PanelShown:
        """A panel and a page of its messages from index ``start``."""
        request = p.PanelShow(panel=panel, start=start, limit=limit)
        return await self.request(request, p.PanelShown, timeout)

    async def panel_say(
        self,
        panel: str,
        text: str,
        *,
        participant: str = "human",
        reply_to: str | None = None,
        timeout: float | None = None,
    ) -> PanelMessage:
        """Post a human's message (optionally a reply to a message id)."""
        request = p.PanelSay(panel=panel, text=text, participant=participant, reply_to=reply_to)
        return (await self.request(request, p.PanelPosted, timeout)).message

    async def panel_react(
        self,
        panel: str,
        message: str,
        emoji: str,
        *,
        participant: str = "human",
        timeout: float | None = None,
    ) -> PanelMessage:
        """React to a message; returns it with the reaction."""
        request = p.PanelReact(panel=panel, message=message, emoji=emoji, participant=participant)
        return (await self.request(request, p.PanelPosted, timeout)).message

    async def panel_decide(
        self,
        panel: str,
        proposal: str,
        *,
        veto: bool = False,
        human_wait_s: float = 120.0,
        timeout: float | None = None,
    ) -> p.PanelDecided:
        """Put a proposal to the voting members (a position round, offering a veto if asked;
        voting humans have ``human_wait_s`` to post their position) and record the decision.
        It waits for the members' replies: by default as long as a daemon's turn may last."""
        request = p.PanelDecide(
            panel=panel, proposal=proposal, veto=veto, human_wait_s=human_wait_s
        )
        wait = timeout if timeout is not None else DECIDE_TIMEOUT + human_wait_s
        return await self.request(request, p.PanelDecided, wait)

    async def panel_control(
        self, panel: str, action: PanelAction | str, *, timeout: float | None = None
    ) -> PanelInfo:
        """Pause, resume, end or archive a panel; ``end`` returns once it has ended."""
        request = p.PanelControl(panel=panel, action=PanelAction(action))
        wait = timeout if timeout is not None else 60.0
        return (await self.request(request, p.PanelChanged, wait)).panel

    async def panel_next(
        self, panel: str, participant: str, *, timeout: float | None = None
    ) -> PanelInfo:
        """Pick who speaks next in a panel with the manual speaker policy."""
        request = p.PanelNext(panel=panel, participant=participant)
        return (await self.request(request, p.PanelChanged, timeout)).panel

    async def panel_report(self, panel: str, *, timeout: float | None = None) -> p.PanelReported:
        """A panel's analytics and its Markdown report."""
        return await self.request(p.PanelReport(panel=panel), p.PanelReported, timeout)
