"""The driver of a long-lived Claude Code process: stream-json plus its control protocol.

With ``--input-format stream-json --permission-prompt-tool stdio`` Claude Code asks its
caller before it uses a tool that its rules do not already allow. It writes

    {"type":"control_request","request_id":"…","request":{"subtype":"can_use_tool",
     "tool_name":"Bash","input":{…},…}}

to stdout and waits for a ``control_response`` on stdin: ``{"behavior":"allow",
"updatedInput":{…}}`` (the input the tool runs with, so it must echo the request's) or
``{"behavior":"deny","message":"…"}``. When the request no longer matters (the turn was
interrupted) it writes ``{"type":"control_cancel_request","request_id":"…"}``. The caller
can also send its own ``control_request``; ``interrupt`` stops the running turn and the CLI
answers with a ``control_response``.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec

from agentplex.plugins.api import ChunkData, PermissionPolicy
from agentplex.plugins.stream_json import ClaudeStreamParser, permission_chunk
from agentplex.protocol import UsageScope
from agentplex.protocol.errors import NothingToAnswer

DENIED_BY_POLICY = "Denied by agentplex: the session's permission policy is deny."
DENIED_BY_USER = "Denied by the user through agentplex."


# --------------------------------------------------------------------------- what we write


class _Verdict(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    behavior: str
    updated_input: Any = None
    message: str | None = None


class _ResponseBody(msgspec.Struct, frozen=True, kw_only=True):
    subtype: str = "success"
    request_id: str
    response: _Verdict


class _ControlResponse(msgspec.Struct, frozen=True, tag="control_response", tag_field="type"):
    response: _ResponseBody


class _InterruptBody(msgspec.Struct, frozen=True):
    subtype: str = "interrupt"


class _ControlRequest(msgspec.Struct, frozen=True, tag="control_request", tag_field="type"):
    request_id: str
    request: _InterruptBody = _InterruptBody()


def _line(message: msgspec.Struct) -> bytes:
    return msgspec.json.encode(message) + b"\n"


def verdict_line(request_id: str, allow: bool, tool_input: Any, message: str) -> bytes:
    """The ``control_response`` that allows (echoing ``tool_input``) or denies a tool use."""
    if allow:
        verdict = _Verdict("allow", updated_input={} if tool_input is None else tool_input)
    else:
        verdict = _Verdict("deny", message=message)
    return _line(_ControlResponse(_ResponseBody(request_id=request_id, response=verdict)))


# --------------------------------------------------------------------------- the driver


class ClaudeDriver(ClaudeStreamParser):
    """Reads a long-lived Claude Code process and answers its permission requests.

    Under policy ``ask`` each ``can_use_tool`` request becomes a ``permission_request``
    chunk carrying its ``request_id``, and :meth:`answer_permission` writes the answer.
    Under ``allow`` or ``deny`` the driver answers at once (through :meth:`take_outgoing`)
    and the chunk, without a ``request_id``, says how it was answered.
    """

    def __init__(self, policy: PermissionPolicy) -> None:
        super().__init__(UsageScope.PROCESS)  # each result's cost: the process's running total
        self.policy = policy
        self._asked: dict[str, Any] = {}
        """The tool input of each request still waiting for an answer, by request id."""
        self._outgoing: list[bytes] = []
        self._interrupts = itertools.count(1)

    def permission_request(
        self, request_id: str | None, tool_name: str, tool_input: Any
    ) -> ChunkData:
        if request_id is None:
            return permission_chunk(tool_name, tool_input, " (no request id; cannot answer)")
        if self.policy is PermissionPolicy.ASK:
            self._asked[request_id] = tool_input
            return permission_chunk(tool_name, tool_input, request_id=request_id)
        allow = self.policy is PermissionPolicy.ALLOW
        self._outgoing.append(verdict_line(request_id, allow, tool_input, DENIED_BY_POLICY))
        note = " (allowed by policy)" if allow else " (denied by policy)"
        return permission_chunk(tool_name, tool_input, note)

    def request_cancelled(self, request_id: str | None) -> ChunkData:
        if request_id is not None:
            self._asked.pop(request_id, None)
        return super().request_cancelled(request_id)

    def take_outgoing(self) -> bytes:
        outgoing, self._outgoing = b"".join(self._outgoing), []
        return outgoing

    def answer_permission(self, request_id: str, allow: bool) -> bytes:
        try:
            tool_input = self._asked.pop(request_id)
        except KeyError:
            raise NothingToAnswer(
                f"claude has no pending permission request {request_id!r}"
            ) from None
        return verdict_line(request_id, allow, tool_input, DENIED_BY_USER)

    def interrupt(self) -> bytes:
        """The in-band interrupt: the CLI ends the turn with a result and keeps running."""
        return _line(_ControlRequest(f"agentplex-interrupt-{next(self._interrupts)}"))
