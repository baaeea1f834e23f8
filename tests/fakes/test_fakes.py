"""The fake model APIs speak their wire formats and obey the magic words (no CLIs needed)."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from .anthropic_api import FakeAnthropic
from .gemini_api import FakeGemini
from .openai_responses import FakeOpenAIResponses
from .server import FakeServer

MODEL_PATHS: dict[type[FakeServer], str] = {
    FakeAnthropic: "/v1/messages",
    FakeOpenAIResponses: "/v1/responses",
    FakeGemini: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
}


def request(
    fake: FakeServer, method: str, path: str, body: Any = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """Send one request to the fake; return status and (de-chunked) body."""
    url = urlsplit(fake.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, payload, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def sse_payloads(raw: bytes) -> list[Any]:
    """The JSON ``data:`` payloads of an SSE body."""
    lines = raw.decode().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


def user_body(fake_class: type[FakeServer], text: str) -> Any:
    """A minimal streamed model request with one user prompt, in the fake's dialect."""
    if fake_class is FakeAnthropic:
        content = [
            {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
            {"type": "text", "text": text},
        ]
        tools = [{"name": "Bash"}]
        return {
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": content}],
            "tools": tools,
        }
    if fake_class is FakeOpenAIResponses:
        message = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        tools = [{"type": "function", "name": "exec_command"}]
        return {"model": "m", "stream": True, "input": [message], "tools": tools}
    declarations = [{"name": "run_shell_command"}]
    return {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "tools": [{"functionDeclarations": declarations}],
    }


def streamed_text(fake_class: type[FakeServer], events: list[Any]) -> list[str]:
    """The text deltas of a streamed reply."""
    if fake_class is FakeAnthropic:
        return [
            e["delta"]["text"] for e in events if e.get("delta", {}).get("type") == "text_delta"
        ]
    if fake_class is FakeOpenAIResponses:
        return [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    return [
        p["text"] for e in events for p in e["candidates"][0]["content"]["parts"] if "text" in p
    ]


@pytest.mark.parametrize("fake_class", list(MODEL_PATHS))
def test_default_reply_is_streamed_in_several_deltas(fake_class: type[FakeServer]) -> None:
    with fake_class() as fake:
        status, raw = request(fake, "POST", MODEL_PATHS[fake_class], user_body(fake_class, "hi"))
        deltas = streamed_text(fake_class, sse_payloads(raw))
        assert status == 200
        assert len(deltas) > 1
        assert "".join(deltas) == f"Hello from fake {fake.vendor}! You said: hi (turn 1)"
        assert fake.visible_text(fake.model_requests()[0]) == "user: hi"


@pytest.mark.parametrize("fake_class", list(MODEL_PATHS))
def test_digest_answers_the_size_and_sha256_of_the_whole_prompt(
    fake_class: type[FakeServer],
) -> None:
    prompt = "DIGEST " + "é" * 300_000
    with fake_class() as fake:
        status, raw = request(fake, "POST", MODEL_PATHS[fake_class], user_body(fake_class, prompt))
        reply = "".join(streamed_text(fake_class, sse_payloads(raw)))
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    assert status == 200
    assert reply == f"Prompt of {len(prompt)} characters, sha256 {digest}"


@pytest.mark.parametrize("fake_class", list(MODEL_PATHS))
def test_fail500_answers_http_500(fake_class: type[FakeServer]) -> None:
    with fake_class() as fake:
        status, raw = request(
            fake, "POST", MODEL_PATHS[fake_class], user_body(fake_class, "FAIL500")
        )
        assert status == 500
        assert "error" in json.loads(raw)


@pytest.mark.parametrize("fake_class", list(MODEL_PATHS))
def test_hang_is_released_when_the_server_stops(fake_class: type[FakeServer]) -> None:
    outcome: list[BaseException | tuple[int, bytes]] = []

    def call() -> None:
        try:
            outcome.append(
                request(fake, "POST", MODEL_PATHS[fake_class], user_body(fake_class, "HANG"))
            )
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    fake = fake_class()
    fake.start()
    client = threading.Thread(target=call)
    client.start()
    fake.wait_for_requests(lambda requests: len(requests) == 1)
    time.sleep(0.2)
    assert not outcome, "HANG must not answer"
    fake.stop()
    client.join(timeout=5)
    assert outcome and isinstance(outcome[0], http.client.RemoteDisconnected)


def test_slow_streams_forty_spaced_deltas() -> None:
    with FakeOpenAIResponses(slow_delay=0.01) as fake:
        started = time.monotonic()
        _, raw = request(fake, "POST", "/v1/responses", user_body(FakeOpenAIResponses, "SLOW"))
        assert len(streamed_text(FakeOpenAIResponses, sse_payloads(raw))) == 40
        assert time.monotonic() - started >= 0.4


def test_claude_turns_skip_context_and_tool_results() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                {"type": "text", "text": "first"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "echo hi"}}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Tool said: hi"}]},
        {"role": "system", "content": "mid-conversation system text"},
        {"role": "user", "content": "second"},
    ]
    with FakeAnthropic() as fake:
        _, raw = request(fake, "POST", "/v1/messages", {"stream": False, "messages": messages})
        assert json.loads(raw)["content"][0]["text"].endswith("You said: second (turn 2)")
        assert fake.visible_text(fake.requests[0]).splitlines() == [
            "user: first",
            "tool_call: echo hi",
            "tool_result: hi",
            "assistant: Tool said: hi",
            "user: second",
        ]


def test_run_tool_calls_exec_command_and_reports_its_output() -> None:
    with FakeOpenAIResponses() as fake:
        body = user_body(FakeOpenAIResponses, "RUN_TOOL echo hi")
        events = sse_payloads(request(fake, "POST", "/v1/responses", body)[1])
        call = next(
            e["item"]
            for e in events
            if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
        )
        assert (call["name"], json.loads(call["arguments"])) == ("exec_command", {"cmd": "echo hi"})
        output = "Chunk ID: 1\nProcess exited with code 0\nOutput:\nhi\n"
        body["input"] += [
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": output},
        ]
        events = sse_payloads(request(fake, "POST", "/v1/responses", body)[1])
        assert "".join(streamed_text(FakeOpenAIResponses, events)) == "Tool said: hi"


def test_run_tool_without_the_shell_tool_says_so() -> None:
    with FakeGemini() as fake:
        body = {"contents": [{"role": "user", "parts": [{"text": "RUN_TOOL echo hi"}]}]}
        _, raw = request(fake, "POST", "/v1beta/models/m:streamGenerateContent?alt=sse", body)
        assert "".join(streamed_text(FakeGemini, sse_payloads(raw))) == (
            "Fake Gemini: the run_shell_command tool was not offered."
        )


def test_gemini_router_schema_is_filled_and_not_a_turn() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "complexity_reasoning": {"type": "STRING"},
            "complexity_score": {"type": "INTEGER"},
        },
    }
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema},
    }
    with FakeGemini() as fake:
        _, raw = request(fake, "POST", "/v1beta/models/gemini-3.5-flash-lite:generateContent", body)
        text = json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"]
        assert json.loads(text) == {"complexity_reasoning": "fake", "complexity_score": 1}
        assert fake.model_requests() == []


def test_gemini_unwraps_shell_output() -> None:
    output = (
        "<untrusted_context>\nOutput: hi\nExit Code: 2\nProcess Group PGID: 7\n</untrusted_context>"
    )
    contents = [
        {
            "role": "user",
            "parts": [{"text": "<session_context>x</session_context>"}, {"text": "go"}],
        },
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "run_shell_command", "args": {"command": "x"}}}],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "run_shell_command", "response": {"output": output}}}
            ],
        },
    ]
    with FakeGemini() as fake:
        request(
            fake, "POST", "/v1beta/models/m:streamGenerateContent?alt=sse", {"contents": contents}
        )
        assert fake.visible_text(fake.requests[0]).splitlines()[-1] == "tool_result: hi"


def test_side_calls_are_answered() -> None:
    with FakeAnthropic() as fake:
        assert request(fake, "HEAD", "/")[0] == 200
        assert request(fake, "POST", "/v1/messages/count_tokens", {"messages": []})[0] == 200
        assert request(fake, "GET", "/v1/models")[0] == 200
        assert (fake.requests[0].method, fake.requests[0].path) == ("HEAD", "/")


def test_wait_for_requests_times_out() -> None:
    with FakeAnthropic() as fake, pytest.raises(TimeoutError):
        fake.wait_for_requests(lambda requests: bool(requests), timeout=0.1)
