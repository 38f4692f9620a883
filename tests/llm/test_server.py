"""The scripted server, driven over real HTTP by the official OpenAI client, aiohttp and urllib."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from subprocess import PIPE

import aiohttp
import openai
import pytest

from vlaa_data.testing.server import (
    Reply,
    ScriptedServer,
    builtin_responder,
    default_responder,
)

MESSAGES = [{"role": "user", "content": "How many sides has a triangle?"}]


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def client(server: ScriptedServer, **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, **options)


def ask(server: ScriptedServer, content: str = "How many sides has a triangle?", **options):
    messages = [{"role": "user", "content": content}]
    return client(server, **options).chat.completions.create(model="m", messages=messages)


def post(url: str, data: bytes) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_ok_reply_reaches_the_openai_client(server):
    server.responder = lambda request, attempt: Reply.ok(
        "Three.",
        reasoning_content="A triangle has three sides.",
        finish_reason="length",
        prompt_tokens=7,
        completion_tokens=2,
    )
    completion = client(server).chat.completions.create(model="qwen-vl", messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.message.content == "Three."
    assert choice.message.reasoning_content == "A triangle has three sides."
    assert choice.finish_reason == "length"
    assert completion.model == "qwen-vl"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 2)
    assert completion.usage.total_tokens == 9
    assert server.count == 1
    assert server.requests[0]["messages"] == MESSAGES
    assert server.auth_headers == ["Bearer x"]


def test_default_responder_reasons_inline_and_estimates_tokens(server):
    completion = ask(server, "What is 1 + 2?")
    message = completion.choices[0].message
    assert message.content == "<think>Looking at: What is 1 + 2?</think>The answer is 3."
    assert getattr(message, "reasoning_content", None) is None
    assert completion.usage.prompt_tokens == len("What is 1 + 2?") // 4 + 1
    assert completion.usage.completion_tokens == len(message.content) // 4 + 1
    assert default_responder({"messages": MESSAGES}, 1).content.endswith("The answer is 3.")


@pytest.mark.parametrize(
    ("style", "content", "reasoning"),
    [
        ("field", "The answer is 3.", "Looking at: hi"),
        ("inline", "<think>Looking at: hi</think>The answer is 3.", None),
        ("lone", "Looking at: hi</think>The answer is 3.", None),
        ("none", "The answer is 3.", None),
    ],
)
def test_builtin_responders_place_the_reasoning(style, content, reasoning):
    reply = builtin_responder(style)({"messages": [{"role": "user", "content": "hi"}]}, 1)
    assert (reply.content, reply.reasoning_content, reply.finish_reason) == (
        content,
        reasoning,
        "stop",
    )


def test_builtin_responder_truncates_at_max_tokens():
    request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    reply = builtin_responder("field", truncate=True)(request, 1)
    assert (reply.reasoning_content, reply.content) == ("Looking ", "")
    assert (reply.finish_reason, reply.completion_tokens) == ("length", 2)
    assert builtin_responder("inline", truncate=True)(request, 1).content == "<think>L"
    assert builtin_responder("inline")(request, 1).finish_reason == "stop"
    with pytest.raises(ValueError, match="reasoning must be one of"):
        builtin_responder("hidden")


def test_attempt_counts_identical_bodies(server):
    def flaky(request, attempt):
        if attempt == 1:
            return Reply.error(500)
        return Reply.ok(f"attempt {attempt}")

    server.responder = flaky
    with pytest.raises(openai.InternalServerError):
        ask(server)
    assert ask(server).choices[0].message.content == "attempt 2"
    assert ask(server).choices[0].message.content == "attempt 3"
    with pytest.raises(openai.InternalServerError):
        ask(server, "another question")
    server.reset()
    assert (server.count, server.auth_headers) == (0, [])
    with pytest.raises(openai.InternalServerError):
        ask(server)


def test_rate_limit_carries_retry_after(server):
    server.responder = lambda request, attempt: Reply.error(429, retry_after=2, message="slow")
    with pytest.raises(openai.RateLimitError) as caught:
        ask(server)
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body["message"] == "slow"
    assert caught.value.body["type"] == "rate_limit_error"


def test_responder_exception_becomes_500(server):
    def broken(request, attempt):
        raise KeyError("no script for this")

    server.responder = broken
    with pytest.raises(openai.InternalServerError, match="no script for this"):
        ask(server)
    server.responder = lambda request, attempt: "not a reply"
    with pytest.raises(openai.InternalServerError, match="not a Reply"):
        ask(server)
    server.responder = default_responder
    assert ask(server).choices[0].finish_reason == "stop"


def test_drop_closes_the_connection(server):
    server.responder = lambda request, attempt: Reply.drop()
    with pytest.raises(openai.APIConnectionError) as caught:
        ask(server)
    assert not isinstance(caught.value, openai.APITimeoutError)

    async def post_with_aiohttp():
        url = f"{server.url}/chat/completions"
        async with aiohttp.ClientSession() as session, session.post(url, json={"n": 1}) as reply:
            await reply.read()

    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        asyncio.run(post_with_aiohttp())
    assert server.count == 2


def test_malformed_body_is_not_json(server):
    server.responder = lambda request, attempt: Reply.malformed()
    status, headers, body = post(f"{server.url}/chat/completions", b'{"model": "m"}')
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_delay_longer_than_client_timeout_times_out(server):
    server.responder = lambda request, attempt: Reply.ok("late", delay=5)
    with pytest.raises(openai.APITimeoutError):
        ask(server, timeout=0.2)
    # Counted as soon as it arrived, though its handler is still sleeping.
    assert server.count == 1
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1


def test_latency_applies_to_concurrent_requests_at_once(server):
    server.latency = 0.3

    async def ask_five():
        async with openai.AsyncOpenAI(base_url=server.url, api_key="x", max_retries=0) as aclient:
            calls = [
                aclient.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": str(n)}]
                )
                for n in range(5)
            ]
            return await asyncio.gather(*calls)

    started = time.monotonic()
    completions = asyncio.run(ask_five())
    elapsed = time.monotonic() - started
    assert len(completions) == 5
    assert 0.3 <= elapsed < 1.0
    assert server.peak_in_flight == 5


def test_models_and_unknown_paths(server):
    assert [model.id for model in client(server).models.list()] == ["scripted"]
    with ScriptedServer(models=["a", "b"]) as other:
        assert [model.id for model in client(other).models.list()] == ["a", "b"]
    status, _, body = post(f"{server.url}/embeddings", b"{}")
    assert status == 404
    assert "no such endpoint" in json.loads(body)["error"]["message"]


def test_non_json_body_is_a_400(server):
    status, _, body = post(f"{server.url}/chat/completions", b"not json")
    assert status == 400
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert server.count == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_refuses_non_loopback_hosts(host):
    with pytest.raises(ValueError, match="loopback"):
        ScriptedServer(host=host)


def test_error_needs_an_error_status():
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Reply.error(200)


def test_command_line_serves_until_sigterm():
    command = [sys.executable, "-m", "vlaa_data.testing.server", "--reasoning", "field"]
    with subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True) as process:
        try:
            line = process.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.split()[-1]
            body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
            status, _, reply = post(f"{url}/chat/completions", body)
            message = json.loads(reply)["choices"][0]["message"]
            assert status == 200
            assert message["content"] == "The answer is 3."
            assert message["reasoning_content"].startswith("Looking at: How many sides")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
            assert process.stderr.read() == ""
        finally:
            if process.poll() is None:
                process.kill()


def test_the_server_says_it_is_the_scripted_stand_in(server):
    from vlaa_data.doctor.endpoints import serves_scripted
    from vlaa_data.llm.presets import Endpoint, Preset

    def endpoint(url: str) -> Endpoint:
        return Endpoint(preset=Preset(name="s", model="scripted"), base_url=url)

    completion = client(server).chat.completions.create(model="m", messages=MESSAGES)
    assert completion.system_fingerprint == "vlaa-data-scripted"
    assert [m.owned_by for m in client(server).models.list()] == ["vlaa-data-scripted"]
    assert asyncio.run(serves_scripted(endpoint(server.url)))
    # Passing for a real model, for tests that need one.
    with ScriptedServer(identify=False) as other:
        completion = client(other).chat.completions.create(model="m", messages=MESSAGES)
        assert completion.system_fingerprint is None
        assert not completion.id.startswith("chatcmpl-scripted")
        assert [m.owned_by for m in client(other).models.list()] == ["vlaa-data"]
        assert not asyncio.run(serves_scripted(endpoint(other.url)))


def test_command_line_serves_the_demo_responder():
    command = [sys.executable, "-m", "vlaa_data.testing.server", "--demo"]
    with subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True) as process:
        try:
            url = process.stdout.readline().split()[-1]
            prompt = "Question: What is 2 + 2?\n\nThink it through."
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})
            status, _, reply = post(f"{url}/chat/completions", body.encode())
            assert status == 200, reply  # the responder's Reply is the server's own class
            assert json.loads(reply)["system_fingerprint"] == "vlaa-data-scripted"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
        finally:
            if process.poll() is None:
                process.kill()
