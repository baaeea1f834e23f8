"""The ``acp`` backend's driver (the backend is in acp_backend.py): any agent that speaks
the Agent Client Protocol (JSON-RPC over stdio).

The daemon is the ACP client of the command given after ``--`` (``gemini --acp``, …). The
driver opens with ``initialize`` and ``session/new`` (then ``session/set_model`` when the
session names a model), holds messages until the ACP session exists, and sends each as a
``session/prompt`` whose response ends the turn. Prompts go one at a time: an agent may
abort a running prompt when the next arrives (Gemini CLI does), so a message sent mid-turn
waits in the driver. ``session/update`` notifications become chunks; permission requests
are answered by policy or by a person; any other request gets "method not found", since
the client advertises no file-system or terminal capability.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from typing import Any, TypeVar

import msgspec

from agentplex.plugins import acp_rpc as rpc
from agentplex.plugins.api import ChunkData, Driver, PermissionPolicy, SessionSpec
from agentplex.plugins.json_lines import raw
from agentplex.protocol import ChunkKind, Stream
from agentplex.protocol.errors import NothingToAnswer

T = TypeVar("T")
_MaybeRaw = msgspec.Raw | msgspec.UnsetType
SUMMARY_CHARS = 160
"""Longest one-line summary of a tool call."""

_decode_incoming = msgspec.json.Decoder(rpc.Incoming).decode
_encode = msgspec.json.Encoder().encode
_TERMINAL_TOOL_STATUS = frozenset({"completed", "failed"})
_HANDSHAKE = frozenset({"initialize", "session/new", "session/set_model"})


@dataclasses.dataclass(frozen=True)
class _Asked:
    """A permission request waiting for a person's answer."""

    rpc_id: rpc.RequestId
    options: list[rpc.PermissionOption]


class AcpDriver(Driver):
    """The client side of one ACP connection."""

    def __init__(self, spec: SessionSpec) -> None:
        self._cwd = str(spec.cwd)
        self._instructions = spec.instructions
        self._model = spec.model
        self._policy = spec.permission_policy
        self._ids = itertools.count(1)
        self._calls: dict[rpc.RequestId, str] = {}
        """Our requests still unanswered: id → method."""
        self._initialized = False
        self._session_id: str | None = None
        self._model_done = spec.model is None
        self._held: collections.deque[str] = collections.deque()
        self._prompt_sent_at: float | None = None
        """When the running prompt was sent (monotonic), None while no prompt runs."""
        self._instructed = spec.instructions is None
        self._cancelled_early = False
        self._stalled = False
        """A handshake step failed; the next message retries it."""
        self._failure: str | None = None
        """Why the agent cannot be used at all (it refused ``initialize``)."""
        self._asked: dict[str, _Asked] = {}
        self._announced: set[str] = set()
        """Tool call ids already published as ``tool_use``."""
        self._outgoing = bytearray()

    # ------------------------------------------------------------------ Driver API

    def opening(self) -> bytes:
        return self._advance()

    def encode_input(self, message: str) -> bytes:
        self._held.append(message)
        self._stalled = False
        if self._handshaking:
            return b""
        return self._advance()  # sends it now, or retries a handshake step that failed

    def take_outgoing(self) -> bytes:
        data, self._outgoing = bytes(self._outgoing), bytearray()
        return data

    def failure(self) -> str | None:
        return self._failure

    def interrupt(self) -> bytes:
        if self._prompt_sent_at is None:
            if self._held:  # still waiting for the handshake: those messages never go out
                self._held.clear()
                self._cancelled_early = True
            return b""
        # ACP asks the client to answer its open permission requests as cancelled.
        answers = [_answer(a.rpc_id, rpc.Cancelled()) for a in self._asked.values()]
        self._asked.clear()
        assert self._session_id is not None
        cancel = rpc.Notification(
            method="session/cancel", params=rpc.CancelParams(self._session_id)
        )
        return b"".join([*answers, _line(cancel)])

    def answer_permission(self, request_id: str, allow: bool) -> bytes:
        asked = self._asked.pop(request_id, None)
        if asked is None:
            raise NothingToAnswer(f"the agent has no open permission request {request_id!r}")
        return _answer(asked.rpc_id, rpc.choose(asked.options, allow))

    def parse(self, line: str, stream: Stream) -> list[ChunkData]:
        if stream != Stream.STDOUT:
            return [raw(line)]
        try:
            message = _decode_incoming(line.encode("utf-8", "replace"))
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return [raw(line)]
        if message.method is not None:
            if message.id is None:
                return self._on_notification(message.method, message.params, line)
            return self._on_request(message.id, message.method, message.params)
        error = message.failure()
        if message.id is not None and message.id in self._calls:
            return self._on_response(self._calls.pop(message.id), message.result, error)
        if error is not None:
            return [_error(f"agent error: {error}")]
        return [raw(line)]

    # ------------------------------------------------------------------ outgoing

    @property
    def _handshaking(self) -> bool:
        return any(method in _HANDSHAKE for method in self._calls.values())

    def _call(self, method: str, params: Any) -> bytes:
        request_id = next(self._ids)
        self._calls[request_id] = method
        return _line(rpc.Request(id=request_id, method=method, params=params))

    def _advance(self) -> bytes:
        """The next handshake request, or, once the session is set up, the next prompt."""
        if self._stalled:
            return b""
        if not self._initialized:
            return self._call("initialize", rpc.InitializeParams())
        if self._session_id is None:
            return self._call("session/new", rpc.NewSessionParams(cwd=self._cwd))
        if not self._model_done:
            assert self._model is not None
            return self._call(
                "session/set_model", rpc.SetModelParams(self._session_id, self._model)
            )
        if self._prompt_sent_at is not None or not self._held:
            return b""
        blocks = [rpc.TextBlock(self._held.popleft())]
        if not self._instructed:  # persona instructions lead the first prompt
            blocks.insert(0, rpc.TextBlock(self._instructions or ""))
            self._instructed = True
        self._prompt_sent_at = time.monotonic()
        self._cancelled_early = False  # a later message has started a turn of its own
        return self._call("session/prompt", rpc.PromptParams(self._session_id, blocks))

    # ------------------------------------------------------------------ responses

    def _on_response(
        self, method: str, result: _MaybeRaw, error: rpc.RpcError | None
    ) -> list[ChunkData]:
        if method == "session/prompt":
            return self._on_prompt_done(result, error)
        if error is not None:
            chunks = self._on_handshake_failed(method, error)
        else:
            chunks = self._on_handshake_step(method, result)
        self._outgoing += self._advance()
        if self._cancelled_early and self._prompt_sent_at is None and not self._handshaking:
            self._cancelled_early = False
            chunks.append(ChunkData(ChunkKind.RESULT, "cancelled", cli_session_id=self._session_id))
        return chunks

    def _on_handshake_step(self, method: str, result: _MaybeRaw) -> list[ChunkData]:
        match method:
            case "initialize":
                self._initialized = True
                info = _decode(result, rpc.InitializeResult) or rpc.InitializeResult()
                agent = " ".join(filter(None, [info.agentInfo.name, info.agentInfo.version]))
                return [_system(f"initialized {agent} (ACP {info.protocolVersion})")]
            case "session/new":
                session = _decode(result, rpc.NewSessionResult)
                if session is None:
                    return self._on_handshake_failed(method, rpc.RpcError(message="no sessionId"))
                self._session_id = session.sessionId
                model = session.models.currentModelId
                mode = session.modes.currentModeId
                text = f"session {session.sessionId}: mode {mode}, model {model}"
                return [_system(text, cli_session_id=session.sessionId, model=model)]
            case _:
                self._model_done = True
                return [_system(f"model set to {self._model}", model=self._model)]

    def _on_handshake_failed(self, method: str, error: rpc.RpcError) -> list[ChunkData]:
        chunks = [_error(f"{method} failed: {error}")]
        if method == "session/set_model":  # the agent's own model will do
            self._model_done = True
            return chunks
        self._stalled = True
        if method == "initialize":  # no ACP connection: nothing a later message could retry
            self._failure = f"the ACP agent refused initialize: {error}"
        if self._held or self._cancelled_early:  # end the turn those messages started
            self._held.clear()
            self._cancelled_early = False
            chunks.append(
                ChunkData(ChunkKind.RESULT, f"no ACP session: {error.message}", is_error=True)
            )
        return chunks

    def _on_prompt_done(self, result: _MaybeRaw, error: rpc.RpcError | None) -> list[ChunkData]:
        sent_at, self._prompt_sent_at = self._prompt_sent_at, None
        duration_ms = None if sent_at is None else int((time.monotonic() - sent_at) * 1000)
        self._asked.clear()  # the turn is over; nothing can be answered any more
        self._outgoing += self._advance()
        session = self._session_id
        if error is not None:
            text = str(error)
            return [
                _error(f"session/prompt failed: {text}", cli_session_id=session),
                ChunkData(ChunkKind.RESULT, text, is_error=True, cli_session_id=session),
            ]
        done = _decode(result, rpc.PromptResult) or rpc.PromptResult()
        return [
            ChunkData(
                ChunkKind.RESULT,
                done.stopReason,
                is_error=done.stopReason == "refusal",
                usage=done.token_usage(duration_ms),
                cli_session_id=session,
            )
        ]

    # ------------------------------------------------------------------ agent requests

    def _on_request(self, rpc_id: rpc.RequestId, method: str, params: Any) -> list[ChunkData]:
        if method == "session/request_permission":
            request = _decode(params, rpc.RequestPermissionParams)
            if request is not None:
                return self._on_permission(rpc_id, request)
            error = rpc.RpcError(rpc.INVALID_PARAMS, "malformed session/request_permission")
        else:
            error = rpc.RpcError(rpc.METHOD_NOT_FOUND, f"{method} is not offered by this client")
        self._outgoing += _line(rpc.ErrorResponse(id=rpc_id, error=error))
        return [_system(f"declined the agent's {method} request: {error.message}")]

    def _on_permission(
        self, rpc_id: rpc.RequestId, request: rpc.RequestPermissionParams
    ) -> list[ChunkData]:
        chunks = self._announce(request.toolCall)
        tool = _tool_chunk(ChunkKind.PERMISSION_REQUEST, request.toolCall)
        text = f"permission: {tool.text}"
        if self._policy is PermissionPolicy.ASK:
            key = str(rpc_id)
            self._asked[key] = _Asked(rpc_id, request.options)
            chunks.append(msgspec.structs.replace(tool, text=text, request_id=key))
        else:
            allow = self._policy is PermissionPolicy.ALLOW
            outcome = rpc.choose(request.options, allow)
            self._outgoing += _answer(rpc_id, outcome)
            choice = outcome.optionId if isinstance(outcome, rpc.Selected) else "cancelled"
            verdict = "allowed" if allow else "denied"
            chunks.append(
                msgspec.structs.replace(tool, text=f"{text} ({verdict} by policy: {choice})")
            )
        return [msgspec.structs.replace(c, cli_session_id=request.sessionId) for c in chunks]

    # ------------------------------------------------------------------ notifications

    def _on_notification(self, method: str, params: Any, line: str) -> list[ChunkData]:
        if method != "session/update":
            return [_system(f"notification {method}")]
        note = _decode(params, rpc.SessionNotification)
        if note is None:
            tag = _decode(params, rpc.UpdateTag)
            if tag is None or not tag.update.sessionUpdate:
                return [raw(line)]
            return [_system(tag.update.sessionUpdate, cli_session_id=tag.sessionId)]
        chunks = self._update_chunks(note.update)
        return [msgspec.structs.replace(c, cli_session_id=note.sessionId) for c in chunks]

    def _update_chunks(self, update: rpc.SessionUpdate) -> list[ChunkData]:
        match update:
            case rpc.AgentMessageChunk(content=content):
                return [ChunkData(ChunkKind.TEXT, content.display(), partial=True)]
            case rpc.AgentThoughtChunk(content=content):
                return [ChunkData(ChunkKind.THINKING, content.display(), partial=True)]
            case rpc.UserMessageChunk(content=content):
                return [_system(f"user: {content.display()}")]
            case rpc.ToolCallUpdate():  # also a new ToolCall, which subclasses it
                return self._tool_chunks(update)
            case rpc.Plan(entries=entries):
                return [_system("plan:" + "".join(f"\n[{e.status}] {e.content}" for e in entries))]
            case rpc.AvailableCommandsUpdate(availableCommands=commands):
                return [_system("commands: " + ", ".join(f"/{c.name}" for c in commands))]
            case rpc.CurrentModeUpdate(currentModeId=mode):
                return [_system(f"mode: {mode}")]
            case rpc.SessionInfoUpdate(title=title):
                return [_system(f"title: {title}")]
            case rpc.UsageUpdate(used=used, size=size):
                return [_system(f"context: {used} of {size} tokens")]

    def _tool_chunks(self, call: rpc.ToolCallUpdate) -> list[ChunkData]:
        chunks = self._announce(call)
        if call.status in _TERMINAL_TOOL_STATUS:
            output = call.output()
            failed = call.status == "failed"
            chunks.append(ChunkData(ChunkKind.TOOL_RESULT, output, is_error=failed))
        elif not chunks:
            chunks.append(
                _system(f"tool {call.title or call.toolCallId}: {call.status or 'updated'}")
            )
        return chunks

    def _announce(self, call: rpc.ToolCallUpdate) -> list[ChunkData]:
        """A ``tool_use`` chunk the first time a tool call is seen (in a ``tool_call``, or in
        a permission request or an update when the agent sent no ``tool_call`` first)."""
        if call.toolCallId in self._announced:
            return []
        self._announced.add(call.toolCallId)
        return [_tool_chunk(ChunkKind.TOOL_USE, call)]


# --------------------------------------------------------------------------- helpers


def _line(message: msgspec.Struct) -> bytes:
    return _encode(message) + b"\n"


def _answer(rpc_id: rpc.RequestId, outcome: rpc.Selected | rpc.Cancelled) -> bytes:
    return _line(rpc.Response(id=rpc_id, result=rpc.PermissionAnswer(outcome)))


def _decode(raw: _MaybeRaw, kind: type[T]) -> T | None:
    """``raw`` as ``kind``, or None when it is absent or does not fit."""
    if isinstance(raw, msgspec.UnsetType):
        return None
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def _tool_chunk(kind: ChunkKind, call: rpc.ToolCallUpdate) -> ChunkData:
    """A chunk naming a tool call: ``tool_name`` is its kind (``execute``, ``read``, …), the
    text its title, ``tool_input`` its raw input (which some agents leave out)."""
    name = call.kind or "other"
    summary = " ".join(f"{name}: {call.title or call.toolCallId}".split())
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 1] + "…"
    return ChunkData(kind, summary, tool_name=name, tool_input=call.rawInput)


def _system(text: str, **fields: Any) -> ChunkData:
    return ChunkData(ChunkKind.SYSTEM, text, **fields)


def _error(text: str, **fields: Any) -> ChunkData:
    return ChunkData(ChunkKind.ERROR, text, is_error=True, **fields)
