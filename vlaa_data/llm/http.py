"""The backend for OpenAI-compatible chat-completion endpoints: a thin aiohttp client.

The ``openai`` SDK's typed objects cost about 3 ms of CPU per request, which caps a 2-core
machine at half the throughput of a 256-way run, so this speaks the protocol over aiohttp with
plain dicts instead. It keeps the SDK's error semantics: the same statuses are retried,
``Retry-After`` is honoured, and error messages come from the body's ``error.message``.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl

from vlaa_data.llm.estimate import estimate_input_tokens
from vlaa_data.llm.image_encoding import ImageEncoder
from vlaa_data.llm.limits import RateLimiter
from vlaa_data.llm.presets import redact_url
from vlaa_data.llm.reply import CallFailed, ChatReply, EndpointUnreachable, parse_completion
from vlaa_data.llm.request import ChatRequest

__all__ = ["AttemptFailed", "HttpBackend", "HttpConfig", "classify_status"]

logger = logging.getLogger(__name__)

# A server asking for a longer pause than this is still retried after this long.
MAX_RETRY_AFTER_S = 300.0
# Attempts in a row that could not connect, none answered in between, after which the endpoint
# is taken for unreachable: 256 samples against a closed port then stop at once instead of
# each one retrying for a minute.
UNREACHABLE_AFTER = 8

# Python leaked aborted TLS transports until 3.12.8 and 3.13.1; aiohttp warns if asked to clean
# them up on versions that no longer need it.
_CLEANUP_CLOSED = sys.version_info < (3, 12, 8) or (3, 13, 0) <= sys.version_info < (3, 13, 1)


@dataclass
class HttpConfig:
    """Where and how to reach an endpoint.

    ``base_url`` is the API root (``https://api.deepseek.com``, ``http://host:8000/v1``); requests
    go to ``{base_url}/chat/completions``. ``timeout_s`` bounds each attempt as a whole;
    ``max_retries`` counts retries after the first attempt, which wait ``Retry-After`` when the
    server sends it and otherwise ``uniform(0, min(backoff_max_s, backoff_base_s * 2**n))``.
    ``max_pixels`` caps images for requests that do not set their own cap.
    """

    base_url: str
    api_key: str | None
    timeout_s: float = 600.0
    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_pixels: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # The key and header values (which may hold other credentials) never reach a log.
        return (
            f"HttpConfig(base_url={redact_url(self.base_url)!r}, "
            f"api_key={'***' if self.api_key else None}, "
            f"timeout_s={self.timeout_s!r}, max_retries={self.max_retries!r}, "
            f"backoff_base_s={self.backoff_base_s!r}, backoff_max_s={self.backoff_max_s!r}, "
            f"max_pixels={self.max_pixels!r}, extra_headers={sorted(self.extra_headers)!r})"
        )


class AttemptFailed(Exception):
    """One attempt that brought back no completion (``HttpBackend.send``).

    ``reason`` is a code of ``vlaa_data.llm.reply``'s list; ``retryable`` says whether another
    attempt may succeed, ``retry_after`` how long the server asked to wait, ``status`` the HTTP
    status when a reply came, and ``connect`` that no connection could be made (nothing was sent).
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int | None = None,
        connect: bool = False,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.connect = connect


class HttpBackend:
    """Completes ``ChatRequest``s against an OpenAI-compatible endpoint, retrying transient errors.

    429, 408, 409 and 5xx replies, timeouts and dropped connections are retried; once the
    retries run out they fail as ``rate_limited``, ``timeout`` (408 too), ``server_error``
    (409 too) or ``connection_error``. 401/403 fail at once as ``auth_error``, other 4xx as
    ``bad_request``, and a 200 that is not a completion as ``unparseable_response`` (paid).
    When ``UNREACHABLE_AFTER`` attempts in a row cannot connect (refused, no such host, no
    route) with no reply in between, or a request's every attempt could not, the endpoint is
    down: that request and every later one raise ``EndpointUnreachable`` without sending.

    Every attempt first waits for ``limiter``; ``on_retry(reason)`` is called before each retry
    with the reason code of the failure being retried. ``sleep`` is the coroutine used for
    retry waits (tests pass a recording one).
    """

    name = "openai"

    def __init__(
        self,
        config: HttpConfig,
        *,
        limiter: RateLimiter | None = None,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        url = yarl.URL(f"{config.base_url.rstrip('/')}/chat/completions")
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL, not {config.base_url!r}")
        if config.max_retries < 0 or config.timeout_s <= 0:
            raise ValueError("max_retries must be >= 0 and timeout_s > 0")
        self.config = config
        self._url = url
        self._limiter = limiter
        self._on_retry = on_retry
        self._sleep = sleep
        self._headers = {"Content-Type": "application/json", **config.extra_headers}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._images = ImageEncoder()
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._refused = 0  # attempts in a row that could not connect
        self._down: str | None = None  # why the endpoint is taken for unreachable

    async def complete(self, request: ChatRequest) -> ChatReply:
        body = await self.encode(request)
        tokens = 0
        if self._limiter is not None and self._limiter.counts_tokens:
            tokens = _estimate_tokens(request)
        retries = self.config.max_retries
        for attempt in range(retries + 1):
            if self._down is not None:
                raise EndpointUnreachable(self._down)
            if self._limiter is not None:
                await self._limiter.acquire(tokens)
            try:
                return await self.send(body)
            except AttemptFailed as exc:
                failure = exc
            detail = failure.detail
            if failure.connect:
                # Every attempt of this request could not connect, none answered in between.
                all_refused = attempt == retries and self._refused > attempt
                if self._refused >= UNREACHABLE_AFTER or all_refused:
                    self._down = self.scrub(
                        f"endpoint {redact_url(self.config.base_url)} is unreachable: "
                        f"{self._refused} connection attempts in a row failed, none answered "
                        f"(last: {detail})"
                    )
                    raise EndpointUnreachable(self._down) from None
            if not failure.retryable or attempt == retries:
                if attempt:
                    detail = f"{detail} ({attempt + 1} attempts)"
                raise CallFailed(failure.reason, self.scrub(detail))
            wait = failure.retry_after
            if wait is None:
                wait = self.backoff(attempt)
            logger.debug(
                "retrying in %.1f s after %s: %s", wait, failure.reason, self.scrub(detail)
            )
            if self._on_retry is not None:
                self._on_retry(failure.reason)
            await self._sleep(wait)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def encode(self, request: ChatRequest) -> bytes:
        """The body that carries ``request``: images as data URLs within its pixel cap, else
        the config's."""
        max_pixels = request.max_pixels
        if max_pixels is None:
            max_pixels = self.config.max_pixels
        return await self._body(request, max_pixels)

    async def send(self, body: bytes) -> ChatReply:
        """One attempt, without retries or the limiter: POST ``body`` (see ``encode``) and
        return the completion. Raises ``AttemptFailed`` when none came back, and
        ``CallFailed("unparseable_response")`` for a 200 that is not a completion."""
        session = self._get_session()
        started = time.monotonic()
        try:
            async with session.post(self._url, data=body) as response:
                self._refused = 0  # it answered
                status = response.status
                data = await response.read()
                if 200 <= status < 300:
                    reply = parse_completion(data)
                    reply.latency_s = time.monotonic() - started
                    return reply
                reason, detail, retryable = classify_status(status, response.headers, data)
                retry_after = _retry_after(response.headers) if retryable else None
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on 3.10
            detail = f"no reply within {self.config.timeout_s:g} s"
            raise AttemptFailed("timeout", detail) from None
        except aiohttp.ClientConnectorError as exc:  # refused, no such host, no route
            self._refused += 1
            detail = f"{type(exc).__name__}: {exc}"
            raise AttemptFailed("connection_error", detail, connect=True) from None
        except aiohttp.ClientError as exc:  # dropped, reset, cut short
            raise AttemptFailed("connection_error", f"{type(exc).__name__}: {exc}") from None
        raise AttemptFailed(
            reason, detail, retryable=retryable, retry_after=retry_after, status=status
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def _body(self, request: ChatRequest, max_pixels: int | None) -> bytes:
        return json.dumps(await self._images.payload(request, max_pixels)).encode()

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            # A session belongs to the loop it was made in; a backend may outlive that loop.
            connector = aiohttp.TCPConnector(
                limit=0, ttl_dns_cache=300, enable_cleanup_closed=_CLEANUP_CLOSED
            )
            # No cookies: chat endpoints do not use them, and a load balancer's sticky-session
            # cookie would pin every request of a run to one replica.
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._session_loop = loop
        return self._session

    def backoff(self, attempt: int) -> float:
        """How long to wait before retry ``attempt + 1`` when the server did not say."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return random.uniform(0.0, ceiling)

    def scrub(self, text: str) -> str:
        # A server may echo the key back in its error message.
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    def __repr__(self) -> str:
        return f"HttpBackend({self.config!r})"


def classify_status(status: int, headers: Any, body: bytes) -> tuple[str, str, bool]:
    """The reason code, detail and whether to retry, for a non-2xx reply (as the SDK decides)."""
    detail = f"{status} {_error_message(body)}".rstrip()
    if status == 429:
        reason, retryable = "rate_limited", True
    elif status >= 500:
        reason, retryable = "server_error", True
    elif status == 408:
        reason, retryable = "timeout", True
    elif status == 409:  # a lock conflict on the server's side: transient
        reason, retryable = "server_error", True
    elif status in (401, 403):
        reason, retryable = "auth_error", False
    else:
        reason, retryable = "bad_request", False
    # Like the SDK, the server may overrule: x-should-retry: true|false.
    should_retry = headers.get("x-should-retry")
    if should_retry == "true":
        retryable = True
    elif should_retry == "false":
        retryable = False
    return reason, detail, retryable


def _error_message(body: bytes) -> str:
    """``error.message`` of an error body; vLLM's and FastAPI's shapes too; else the text."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body[:300].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail")
            if message:
                return str(message)[:1000]
        elif isinstance(error, str):
            return error[:1000]
    return json.dumps(data)[:300]


def _retry_after(headers: Any) -> float | None:
    """The wait a server asks for: ``retry-after-ms``, or ``Retry-After`` in seconds or a date."""
    wait = None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            wait = float(milliseconds) / 1000.0
        except ValueError:
            wait = None
    value = headers.get("retry-after")
    if wait is None and value is not None:
        try:
            wait = float(value)
        except ValueError:
            try:
                date = email.utils.parsedate_to_datetime(value)
                if date.tzinfo is None:
                    date = date.replace(tzinfo=datetime.timezone.utc)
                wait = date.timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                wait = None
    if wait is None or wait != wait:  # absent, unparseable or NaN
        return None
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


def _estimate_tokens(request: ChatRequest) -> int:
    """Tokens for the TPM budget: the prompt estimate plus the completion cap, as OpenAI counts."""
    params = request.params
    completion = params.get("max_tokens") or params.get("max_completion_tokens") or 0
    return estimate_input_tokens(request) + int(completion)
