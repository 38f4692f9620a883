from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import time

import pytest
from PIL import Image

from vlaa_data.llm.estimate import estimate_input_tokens
from vlaa_data.llm.http import UNREACHABLE_AFTER, HttpBackend, HttpConfig, _retry_after
from vlaa_data.llm.limits import RateLimiter
from vlaa_data.llm.reply import CallFailed, ChatReply, EndpointUnreachable
from vlaa_data.llm.request import ChatRequest, image_part
from vlaa_data.testing.server import Reply, ScriptedServer

KEY = "sk-test-secret-0123456789"


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


class Recorder:
    """A fake ``sleep`` that records the waits asked for and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def text_request(text: str = "What is 1 + 2?", **params) -> ChatRequest:
    return ChatRequest("test-model", [{"role": "user", "content": text}], params=params)


def call(
    server: ScriptedServer,
    request: ChatRequest | None = None,
    *,
    sleep=None,
    limiter=None,
    on_retry=None,
    **config,
) -> ChatReply:
    """Complete one request with a fresh backend; ``sleep`` defaults to a non-waiting fake."""
    config = {"max_retries": 3, **config}
    backend = HttpBackend(
        HttpConfig(server.url, KEY, **config),
        limiter=limiter,
        on_retry=on_retry,
        sleep=sleep or Recorder(),
    )

    async def main() -> ChatReply:
        try:
            return await backend.complete(request or text_request())
        finally:
            await backend.aclose()

    return asyncio.run(main())


def failure(server: ScriptedServer, request: ChatRequest | None = None, **kwargs) -> CallFailed:
    with pytest.raises(CallFailed) as caught:
        call(server, request, **kwargs)
    return caught.value


def assert_no_key(error: CallFailed) -> None:
    for text in (str(error), repr(error), error.detail, repr(error.args)):
        assert KEY not in text


def test_success_returns_the_parsed_completion(server):
    server.responder = lambda body, attempt: Reply.ok(
        "The answer is 3.", reasoning_content="1 + 2 = 3", prompt_tokens=11, completion_tokens=7
    )
    reply = call(server, text_request(max_tokens=64, temperature=0.6))
    assert reply.content == "The answer is 3."
    assert reply.reasoning == "1 + 2 = 3"
    assert (reply.tokens_in, reply.tokens_out, reply.finish_reason) == (11, 7, "stop")
    assert reply.raw["choices"][0]["message"]["content"] == "The answer is 3."
    assert 0 < reply.latency_s < 5
    assert server.requests == [
        {
            "model": "test-model",
            "messages": [{"role": "user", "content": "What is 1 + 2?"}],
            "max_tokens": 64,
            "temperature": 0.6,
        }
    ]
    assert server.auth_headers == [f"Bearer {KEY}"]


def test_length_finish_is_a_reply_not_a_failure(server):
    server.responder = lambda body, attempt: Reply.ok("cut sh", finish_reason="length")
    reply = call(server)
    assert (reply.content, reply.finish_reason) == ("cut sh", "length")
    assert server.count == 1


def test_no_authorization_header_without_a_key(server):
    backend = HttpBackend(HttpConfig(server.url, None))

    async def main():
        await backend.complete(text_request())
        await backend.aclose()

    asyncio.run(main())
    assert server.auth_headers == [None]


def test_the_key_appears_in_no_repr_or_failure(server):
    config = HttpConfig(server.url, KEY, extra_headers={"X-Other-Secret": "hidden-value"})
    assert KEY not in repr(config) and "hidden-value" not in repr(config)
    assert KEY not in repr(HttpBackend(config))
    server.responder = lambda body, attempt: Reply.error(
        401, message=f"Incorrect API key provided: {KEY}"
    )
    error = failure(server)
    assert error.reason == "auth_error"
    assert error.detail.startswith("401 Incorrect API key provided")
    assert_no_key(error)
    assert server.count == 1
    server.stop()
    error = failure(server, max_retries=0)
    assert error.reason == "connection_error"
    assert_no_key(error)


def test_403_is_an_auth_error(server):
    server.responder = lambda body, attempt: Reply.error(403)
    assert failure(server).reason == "auth_error"
    assert server.count == 1


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_bad_requests_and_not_retried(server, status):
    server.responder = lambda body, attempt: Reply.error(status, message="max_tokens too large")
    error = failure(server)
    assert error.reason == "bad_request"
    assert error.detail == f"{status} max_tokens too large"
    assert not error.paid
    assert server.count == 1


def test_malformed_200_is_unparseable_and_not_retried(server):
    server.responder = lambda body, attempt: Reply.malformed()
    error = failure(server)
    assert error.reason == "unparseable_response"
    assert error.paid
    assert server.count == 1


def test_429_waits_as_long_as_retry_after_says(server):
    server.responder = lambda body, attempt: (
        Reply.error(429, retry_after=7) if attempt == 1 else Reply.ok("fine")
    )
    sleep = Recorder()
    retries: list[str] = []
    assert call(server, sleep=sleep, on_retry=retries.append).content == "fine"
    assert sleep.waits == [7.0]
    assert retries == ["rate_limited"]
    assert server.count == 2


def test_retry_after_as_an_http_date(server):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.responder = lambda body, attempt: (
        Reply.error(429, retry_after=when) if attempt == 1 else Reply.ok("fine")
    )
    sleep = Recorder()
    call(server, sleep=sleep)
    assert 27 < sleep.waits[0] <= 30


def test_retry_after_headers_are_read_and_capped():
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after({"retry-after": "12.5"}) == 12.5
    assert _retry_after({"retry-after": "86400"}) == 300.0
    assert _retry_after({"retry-after": "soon"}) is None
    assert _retry_after({}) is None


def test_retry_after_is_honoured_in_real_time(server):
    arrivals: list[float] = []

    def respond(body, attempt):
        arrivals.append(time.monotonic())
        return Reply.error(429, retry_after=0.5) if attempt == 1 else Reply.ok("fine")

    server.responder = respond
    assert call(server, sleep=asyncio.sleep).content == "fine"
    assert arrivals[1] - arrivals[0] >= 0.5


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (Reply.error(500, message="boom"), "server_error"),
        (Reply.error(503), "server_error"),
        (Reply.error(408), "timeout"),
        (Reply.error(409), "server_error"),
        (Reply.drop(), "connection_error"),
        (Reply.ok("too late", delay=1.0), "timeout"),
    ],
)
def test_transient_failures_are_retried_with_backoff(server, first, reason):
    server.responder = lambda body, attempt: first if attempt == 1 else Reply.ok("fine")
    sleep = Recorder()
    retries: list[str] = []
    reply = call(server, sleep=sleep, on_retry=retries.append, timeout_s=0.3)
    assert reply.content == "fine"
    assert retries == [reason]
    assert server.count == 2
    assert len(sleep.waits) == 1 and 0 <= sleep.waits[0] <= 1.0


def test_backoff_grows_exponentially_up_to_the_cap(server):
    server.responder = lambda body, attempt: Reply.error(502)
    sleep = Recorder()
    call_kwargs = {"backoff_base_s": 1.0, "backoff_max_s": 5.0, "max_retries": 6}
    with pytest.raises(CallFailed):
        call(server, sleep=sleep, **call_kwargs)
    assert len(sleep.waits) == 6
    for n, wait in enumerate(sleep.waits):
        assert 0 <= wait <= min(5.0, 2**n)


@pytest.mark.parametrize(
    ("reply", "reason", "detail"),
    [
        (Reply.error(429, message="slow down"), "rate_limited", "429 slow down (3 attempts)"),
        (Reply.error(502, message="bad gateway"), "server_error", "502 bad gateway (3 attempts)"),
        (Reply.drop(), "connection_error", "(3 attempts)"),
        (Reply.ok("late", delay=1.0), "timeout", "no reply within 0.2 s (3 attempts)"),
    ],
)
def test_giving_up_after_the_last_retry(server, reply, reason, detail):
    server.responder = lambda body, attempt: reply
    retries: list[str] = []
    error = failure(server, on_retry=retries.append, max_retries=2, timeout_s=0.2)
    assert error.reason == reason
    assert error.detail.endswith(detail)
    assert not error.paid
    assert retries == [reason, reason]
    assert server.count == 3


def test_the_limiter_is_consulted_before_every_attempt(server):
    calls: list[int] = []

    class CountingLimiter(RateLimiter):
        async def acquire(self, tokens: int = 0) -> None:
            calls.append(tokens)
            await super().acquire(tokens)

    limiter = CountingLimiter(rpm=1000, tpm=10**6)
    server.responder = lambda body, attempt: Reply.error(500) if attempt < 3 else Reply.ok("ok")
    request = text_request("x" * 400, max_tokens=100)
    call(server, request, limiter=limiter)
    expected = estimate_input_tokens(request) + 100  # the prompt and max_tokens, each attempt
    assert calls == [expected] * 3
    assert server.count == 3


def test_images_are_sent_as_downscaled_data_urls(server, tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (800, 600), (30, 120, 200)).save(path, format="JPEG")
    seen: list[tuple[str, tuple[int, int]]] = []

    def respond(body, attempt):
        for part in body["messages"][0]["content"]:
            if part["type"] == "image_url":
                header, data = part["image_url"]["url"].split(",", 1)
                seen.append((header, Image.open(io.BytesIO(base64.b64decode(data))).size))
        return Reply.ok("a blue picture")

    server.responder = respond
    content = [
        {"type": "text", "text": "Describe:"},
        image_part("abc", path, 800, 600),
    ]
    request = ChatRequest("vl-model", [{"role": "user", "content": content}], max_pixels=80 * 60)
    assert call(server, request).content == "a blue picture"
    assert seen == [("data:image/jpeg;base64", (80, 60))]
    assert server.requests[0]["messages"][0]["content"][0] == {"type": "text", "text": "Describe:"}
    assert server.requests[0]["model"] == "vl-model"
    seen.clear()
    call(server, ChatRequest("vl-model", request.messages), max_pixels=None)
    assert seen == [("data:image/jpeg;base64", (800, 600))]


def test_a_missing_image_fails_before_any_request(server, tmp_path):
    content = [image_part("gone", tmp_path / "gone.png", 10, 10)]
    request = ChatRequest("vl-model", [{"role": "user", "content": content}])
    assert failure(server, request).reason == "image_unreadable"
    assert server.count == 0


def test_many_concurrent_requests_share_one_session(server):
    server.latency = 0.2
    backend = HttpBackend(HttpConfig(server.url, KEY))

    async def main():
        replies = await asyncio.gather(
            *(backend.complete(text_request(f"question {i}")) for i in range(200))
        )
        await backend.aclose()
        return replies

    replies = asyncio.run(main())
    assert len(replies) == 200 and server.count == 200
    assert server.peak_in_flight > 100
    # The backend works again in a new event loop (a fresh session).
    asyncio.run(main())
    assert server.count == 400


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="http"):
        HttpBackend(HttpConfig("api.deepseek.com", KEY))


def test_connections_refused_in_a_row_give_the_endpoint_up(server):
    server.stop()
    url = server.url.replace("http://", "http://user:pw-SECRET@")
    sleep = Recorder()
    backend = HttpBackend(HttpConfig(url, None, max_retries=20), sleep=sleep)

    async def main():
        with pytest.raises(EndpointUnreachable) as first:
            await backend.complete(text_request())
        with pytest.raises(EndpointUnreachable) as later:  # sent nowhere: down is down
            await backend.complete(text_request())
        await backend.aclose()
        return first.value, later.value

    first, later = asyncio.run(main())
    assert len(sleep.waits) == UNREACHABLE_AFTER - 1  # eight attempts, not twenty-one
    assert first.reason == "connection_error" and isinstance(first, CallFailed)
    assert first.detail.startswith(f"endpoint http://***@127.0.0.1:{server.port}/v1 is unreachable")
    assert f"{UNREACHABLE_AFTER} connection attempts in a row failed" in first.detail
    assert later.detail == first.detail and "pw-SECRET" not in first.detail


def test_a_request_whose_every_attempt_is_refused_gives_the_endpoint_up(server):
    server.stop()
    with pytest.raises(EndpointUnreachable, match="3 connection attempts in a row"):
        call(server, max_retries=2)


class Reviver(Recorder):
    """Records the waits, and during the sixth starts a server on ``port``: the endpoint
    refuses six attempts in a row, then answers."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.revived: ScriptedServer | None = None

    async def __call__(self, seconds: float) -> None:
        await super().__call__(seconds)
        if len(self.waits) == 6:
            self.revived = ScriptedServer(port=self.port).start()


def test_an_answer_between_refusals_starts_the_count_again(server):
    server.stop()
    sleep = Reviver(server.port)
    backend = HttpBackend(HttpConfig(server.url, None, max_retries=20), sleep=sleep)

    async def main():
        reply = await backend.complete(text_request())
        assert sleep.revived is not None
        sleep.revived.stop()
        try:
            with pytest.raises(EndpointUnreachable) as down:
                await backend.complete(text_request())
        finally:
            await backend.aclose()
        return reply, down.value

    reply, down = asyncio.run(main())
    assert reply.content and sleep.revived is not None and sleep.revived.count == 1
    # The count began again after the answer: eight more refusals, not two (and before them,
    # maybe a retry of the pooled connection the stopped server dropped).
    assert f"{UNREACHABLE_AFTER} connection attempts in a row" in down.detail
    assert len(sleep.waits) >= 6 + UNREACHABLE_AFTER - 1
