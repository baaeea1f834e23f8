"""Fake model APIs (Anthropic, OpenAI Responses, Gemini) and agent-CLI helpers for tests."""

from .anthropic_api import FakeAnthropic
from .clis import (
    AgentCliNotFoundError,
    claude_env,
    codex_env,
    default_cache_dir,
    find_agent_clis,
    gemini_env,
)
from .gemini_api import FakeGemini
from .openai_responses import FakeOpenAIResponses
from .server import Conversation, FakeServer, Message, RecordedRequest

__all__ = [
    "AgentCliNotFoundError",
    "Conversation",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAIResponses",
    "FakeServer",
    "Message",
    "RecordedRequest",
    "claude_env",
    "codex_env",
    "default_cache_dir",
    "find_agent_clis",
    "gemini_env",
]
