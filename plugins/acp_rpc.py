"""The Agent Client Protocol messages the ``acp`` backend reads and writes.

ACP is JSON-RPC 2.0 over stdio, one message per line. Only the fields the backend uses are
declared; every field has a default, so an agent that leaves one out (or adds others) still
decodes. Names follow the protocol's camelCase so the Structs map onto the wire as they are.
Schema: https://agentclientprotocol.com (``schema/schema.json`` of agent-client-protocol).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from agentplex.protocol import Usage

PROTOCOL_VERSION = 1
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601

RequestId = int | str
"""A JSON-RPC request id; an answer must echo it with the same type."""


# --------------------------------------------------------------------------- envelopes


class RpcError(msgspec.Struct, frozen=True):
    code: int = 0
    message: str = ""
    data: Any = None

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class Incoming(msgspec.Struct, frozen=True):
    """Any message from the agent: a request (method and id), a notification (method, no
    id) or a response to one of ours (id with result or error)."""

    id: RequestId | None = None
    method: str | None = None
    params: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    result: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    error: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET

    def failure(self) -> RpcError | None:
        """The error of an error response (a malformed one kept as text), else None."""
        if isinstance(self.error, msgspec.UnsetType):
            return None
        try:
            return msgspec.json.decode(self.error, type=RpcError | None)
        except (msgspec.ValidationError, RecursionError):
            return RpcError(message=bytes(self.error).decode("utf-8", "replace"))


class Request(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    method: str
    params: Any
    jsonrpc: Literal["2.0"] = "2.0"


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    method: str
    params: Any
    jsonrpc: Literal["2.0"] = "2.0"


class Response(msgspec.Struct, frozen=True, kw_only=True):
    id: RequestId
    result: Any
    jsonrpc: Literal["2.0"] = "2.0"


class ErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    id: RequestId
    error: RpcError
    jsonrpc: Literal["2.0"] = "2.0"


# --------------------------------------------------------------------------- client → agent


class FileSystemCapability(msgspec.Struct, frozen=True):
    readTextFile: bool = False
    writeTextFile: bool = False


class ClientCapabilities(msgspec.Struct, frozen=True):
    """What the daemon serves: nothing, so the agent keeps files and shells to itself."""

    fs: FileSystemCapability = FileSystemCapability()
    terminal: bool = False


class InitializeParams(msgspec.Struct, frozen=True):
    protocolVersion: int = PROTOCOL_VERSION
    clientCapabilities: ClientCapabilities = ClientCapabilities()


class NewSessionParams(msgspec.Struct, frozen=True):
    cwd: str
    mcpServers: list[Any] = []


class SetModelParams(msgspec.Struct, frozen=True):
    sessionId: str
    modelId: str


class TextBlock(msgspec.Struct, frozen=True, tag_field="type", tag="text"):
    text: str


class PromptParams(msgspec.Struct, frozen=True):
    sessionId: str
    prompt: list[TextBlock]


class CancelParams(msgspec.Struct, frozen=True):
    sessionId: str


class Selected(msgspec.Struct, frozen=True, tag_field="outcome", tag="selected"):
    optionId: str


class Cancelled(msgspec.Struct, frozen=True, tag_field="outcome", tag="cancelled"):
    pass


class PermissionAnswer(msgspec.Struct, frozen=True):
    outcome: Selected | Cancelled


# --------------------------------------------------------------------------- agent → client


class ContentBlock(msgspec.Struct, frozen=True):
    """Text, image, audio, resource link or embedded resource; only text is read."""

    type: str = ""
    text: str | None = None
    uri: str | None = None

    def display(self) -> str:
        """The text, or a placeholder naming what the block holds."""
        if self.text is not None:
            return self.text
        return f"[{self.type or 'content'}{' ' + self.uri if self.uri else ''}]"


class ToolCallContent(msgspec.Struct, frozen=True):
    """``content`` (a content block), ``diff`` (path, new text) or ``terminal``."""

    type: str = ""
    content: ContentBlock | None = None
    path: str | None = None
    terminalId: str | None = None

    def display(self) -> str:
        match self.type:
            case "content":
                return (self.content or ContentBlock()).display()
            case "diff":
                return f"[diff {self.path}]"
            case "terminal":
                return f"[terminal {self.terminalId}]"
            case other:
                return f"[{other or 'content'}]"


class _Update(msgspec.Struct, frozen=True, tag_field="sessionUpdate"):
    """One ``session/update``, tagged by ``sessionUpdate``."""


class _Chunk(_Update, frozen=True):
    content: ContentBlock = ContentBlock()


class UserMessageChunk(_Chunk, frozen=True, tag="user_message_chunk"):
    pass


class AgentMessageChunk(_Chunk, frozen=True, tag="agent_message_chunk"):
    pass


class AgentThoughtChunk(_Chunk, frozen=True, tag="agent_thought_chunk"):
    pass


class ToolCallUpdate(_Update, frozen=True, tag="tool_call_update"):
    """A tool call's fields; all but the id may change (or be absent) in an update.
    Also the ``toolCall`` of a permission request, where the tag is absent."""

    toolCallId: str = ""
    title: str | None = None
    kind: str | None = None
    status: str | None = None
    content: list[ToolCallContent] | None = None
    rawInput: Any = None
    rawOutput: Any = None

    def output(self) -> str:
        """What the tool produced: the content's text, else the raw output."""
        text = "\n".join(filter(None, (item.display() for item in self.content or [])))
        if text or self.rawOutput is None:
            return text
        if isinstance(self.rawOutput, str):
            return self.rawOutput
        return msgspec.json.encode(self.rawOutput).decode()


class ToolCall(ToolCallUpdate, frozen=True, tag="tool_call"):
    """A new tool call: the same fields as an update."""


class PlanEntry(msgspec.Struct, frozen=True):
    content: str = ""
    status: str = ""


class Plan(_Update, frozen=True, tag="plan"):
    entries: list[PlanEntry] = []


class AvailableCommand(msgspec.Struct, frozen=True):
    name: str = ""


class AvailableCommandsUpdate(_Update, frozen=True, tag="available_commands_update"):
    availableCommands: list[AvailableCommand] = []


class CurrentModeUpdate(_Update, frozen=True, tag="current_mode_update"):
    currentModeId: str = ""


class SessionInfoUpdate(_Update, frozen=True, tag="session_info_update"):
    title: str | None = None


class UsageUpdate(_Update, frozen=True, tag="usage_update"):
    used: int = 0
    size: int = 0


SessionUpdate = (
    UserMessageChunk
    | AgentMessageChunk
    | AgentThoughtChunk
    | ToolCall
    | ToolCallUpdate
    | Plan
    | AvailableCommandsUpdate
    | CurrentModeUpdate
    | SessionInfoUpdate
    | UsageUpdate
)


class SessionNotification(msgspec.Struct, frozen=True):
    update: SessionUpdate
    sessionId: str | None = None


class AnyUpdate(msgspec.Struct, frozen=True):
    sessionUpdate: str = ""


class UpdateTag(msgspec.Struct, frozen=True):
    """Just the tag of an update this module does not declare."""

    update: AnyUpdate = AnyUpdate()
    sessionId: str | None = None


class PermissionOption(msgspec.Struct, frozen=True):
    optionId: str = ""
    name: str = ""
    kind: str = ""
    """``allow_once``, ``allow_always``, ``reject_once`` or ``reject_always``."""


class RequestPermissionParams(msgspec.Struct, frozen=True):
    toolCall: ToolCallUpdate = ToolCallUpdate()
    options: list[PermissionOption] = []
    sessionId: str | None = None


def choose(options: list[PermissionOption], allow: bool) -> Selected | Cancelled:
    """The first option of the preferred kind (once before always); else cancelled."""
    kinds = ("allow_once", "allow_always") if allow else ("reject_once", "reject_always")
    for kind in kinds:
        for option in options:
            if option.kind == kind:
                return Selected(option.optionId)
    return Cancelled()


# --------------------------------------------------------------------------- results


class AgentInfo(msgspec.Struct, frozen=True):
    name: str = "agent"
    version: str | None = None


class InitializeResult(msgspec.Struct, frozen=True):
    protocolVersion: int | None = None
    agentInfo: AgentInfo = AgentInfo()


class ModelState(msgspec.Struct, frozen=True):
    currentModelId: str | None = None


class ModeState(msgspec.Struct, frozen=True):
    currentModeId: str | None = None


class NewSessionResult(msgspec.Struct, frozen=True):
    sessionId: str
    models: ModelState = ModelState()
    modes: ModeState = ModeState()


class TokenUsage(msgspec.Struct, frozen=True):
    """ACP's (unstable) ``PromptResponse.usage``."""

    inputTokens: int = 0
    outputTokens: int = 0
    cachedReadTokens: int | None = None
    cachedWriteTokens: int | None = None


class QuotaTokens(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    output_tokens: int = 0


class Quota(msgspec.Struct, frozen=True):
    token_count: QuotaTokens = QuotaTokens()


class PromptMeta(msgspec.Struct, frozen=True):
    """Gemini CLI's extension: token counts under ``_meta.quota``."""

    quota: Quota | None = None


class PromptResult(msgspec.Struct, frozen=True):
    stopReason: str = ""
    """``end_turn``, ``max_tokens``, ``max_turn_requests``, ``refusal`` or ``cancelled``."""
    usage: TokenUsage | None = None
    meta: PromptMeta | None = msgspec.field(default=None, name="_meta")

    def token_usage(self, duration_ms: int | None) -> Usage:
        """Token counts from ACP's ``usage``, else from Gemini CLI's ``_meta.quota``."""
        if self.usage is not None:
            cached = (self.usage.cachedReadTokens or 0) + (self.usage.cachedWriteTokens or 0)
            return Usage(
                input_tokens=self.usage.inputTokens,
                output_tokens=self.usage.outputTokens,
                cached_tokens=cached,
                duration_ms=duration_ms,
            )
        quota = self.meta.quota if self.meta else None
        tokens = quota.token_count if quota else QuotaTokens()
        return Usage(
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            duration_ms=duration_ms,
        )
