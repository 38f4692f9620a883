"""A scripted OpenAI-compatible chat server on a loopback address, for tests, demos, benchmarks.

Each ``POST /v1/chat/completions`` is answered by a *responder*: a function of the request body
and of how many times that exact body has been seen, returning a ``Reply`` (a completion, an
HTTP error, a dropped connection or a malformed body), optionally after a delay. Tests script
faults with it over real HTTP::

    def flaky(request, attempt):
        return Reply.error(429, retry_after=1) if attempt == 1 else Reply.ok("The answer is 3.")

    with ScriptedServer(flaky) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x")

The command line serves a built-in responder in its own process, for benchmarks and demos::

    python -m vlaa_data.testing.server --latency 1.0 --reasoning field
    python -m vlaa_data.testing.server --demo      # scripts/demo.sh --scripted

The server says what it is: every completion carries ``system_fingerprint`` and every model it
lists ``owned_by`` ``"vlaa-data-scripted"`` (``SCRIPTED_FINGERPRINT``), so that the LLM steps
record its replies as placeholders and redo them against a real endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http
import ipaddress
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vlaa_data.llm.reply import SCRIPTED_FINGERPRINT

__all__ = [
    "REASONING_STYLES",
    "Reply",
    "Responder",
    "ScriptedServer",
    "builtin_responder",
    "default_responder",
    "is_loopback",
    "place_reasoning",
]

REASONING_STYLES = ("field", "inline", "lone", "none")

_JSON = "application/json"
_MALFORMED_BODY = b'{"choices": ['
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_completion_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """What the server does with one request; build it with the factories.

    ``delay`` is how long the server waits before acting (after the server's own latency):
    make it longer than a client's timeout to script a timeout.
    """

    kind: str  # "ok", "error", "drop" or "malformed"
    delay: float = 0.0
    content: str = ""
    reasoning_content: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int = 200
    retry_after: float | str | None = None
    message: str = ""

    @staticmethod
    def ok(
        content: str,
        *,
        reasoning_content: str | None = None,
        finish_reason: str = "stop",
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """HTTP 200 with a chat completion echoing the request's model.

        Token counts left out are estimated at four characters a token.
        """
        return Reply(
            "ok",
            delay,
            content=content,
            reasoning_content=reasoning_content,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    @staticmethod
    def error(
        status: int,
        *,
        retry_after: float | str | None = None,
        message: str = "",
        delay: float = 0.0,
    ) -> Reply:
        """An OpenAI-style error body with ``status``, and a ``Retry-After`` header when given."""
        if not 400 <= status <= 599:
            raise ValueError(f"an error reply needs a 4xx or 5xx status, not {status}")
        return Reply("error", delay, status=status, retry_after=retry_after, message=message)

    @staticmethod
    def drop(*, delay: float = 0.0) -> Reply:
        """Close the TCP connection without sending any response."""
        return Reply("drop", delay)

    @staticmethod
    def malformed(*, delay: float = 0.0) -> Reply:
        """HTTP 200 with a JSON content type and a body that is not valid JSON."""
        return Reply("malformed", delay)


Responder = Callable[[dict, int], Reply]


def builtin_responder(reasoning: str = "inline", *, truncate: bool = False) -> Responder:
    """A deterministic responder: a thought about the last user message, then an answer.

    ``reasoning`` says where the thought goes: ``field`` (in ``reasoning_content``), ``inline``
    (``<think>…</think>answer``), ``lone`` (``…</think>answer``, no opening tag, as self-hosted
    R1 sends) or ``none`` (no thought). With ``truncate``, a reply longer than the request's
    ``max_tokens`` (at four characters a token) is cut there and finishes with ``length``.
    """
    if reasoning not in REASONING_STYLES:
        raise ValueError(
            f"reasoning must be one of {', '.join(REASONING_STYLES)}, not {reasoning!r}"
        )

    def respond(request: dict, attempt: int) -> Reply:
        thought = f"Looking at: {_last_user_text(request)[:80]}"
        thinking, content = place_reasoning(thought, "The answer is 3.", reasoning)
        limit = request.get("max_tokens") or request.get("max_completion_tokens")
        budget = limit * 4 if isinstance(limit, int) else None
        if truncate and budget is not None and len(thinking or "") + len(content) > budget:
            if thinking is not None:
                content = content[: max(0, budget - len(thinking))]
                thinking = thinking[:budget]
            else:
                content = content[:budget]
            return Reply.ok(
                content, reasoning_content=thinking, finish_reason="length", completion_tokens=limit
            )
        return Reply.ok(content, reasoning_content=thinking)

    return respond


def place_reasoning(thought: str, answer: str, reasoning: str) -> tuple[str | None, str]:
    """``(reasoning_content, content)`` of a reply thinking ``thought`` in style ``reasoning``
    (see ``builtin_responder``)."""
    if reasoning == "field":
        return thought, answer
    if reasoning == "inline":
        return None, f"<think>{thought}</think>{answer}"
    if reasoning == "lone":
        return None, f"{thought}</think>{answer}"
    return None, answer


_inline_responder = builtin_responder("inline")


def default_responder(request: dict, attempt: int) -> Reply:
    """``<think>Looking at: <last user text></think>The answer is 3.``, for smoke tests."""
    return _inline_responder(request, attempt)


class ScriptedServer:
    """An OpenAI-compatible chat server run by a background thread with its own event loop.

    ``requests`` and ``auth_headers`` record each chat request (its JSON body and its
    ``Authorization`` header) as soon as its body is read, before any delay. ``responder`` and
    ``latency`` (a delay added to every reply) may be reassigned while the server runs. A
    responder that raises is answered with a 500 that carries the exception text.
    ``peak_in_flight`` is the most chat requests handled at once since the start or ``reset``.
    With ``identify=False`` it no longer says it is the scripted stand-in (no
    ``system_fingerprint``, models owned by ``"vlaa-data"``): for tests that need an endpoint
    that passes for a real model.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        models: list[str] | None = None,
        identify: bool = True,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"ScriptedServer binds loopback addresses only, not {host!r}")
        self.responder: Responder = responder or default_responder
        self.latency = latency
        self.host = host
        self.port = port
        self.models = list(models or ["scripted"])
        self.identify = identify
        self.requests: list[dict] = []
        self.auth_headers: list[str | None] = []
        self.peak_in_flight = 0
        self._in_flight = 0
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """The base URL for OpenAI clients: ``http://127.0.0.1:PORT/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def count(self) -> int:
        """How many chat requests have arrived."""
        return len(self.requests)

    def reset(self) -> None:
        """Forget the recorded requests, the attempt counters and the in-flight peak."""
        with self._lock:
            self.requests.clear()
            self.auth_headers.clear()
            self._attempts.clear()
            self.peak_in_flight = self._in_flight

    def start(self) -> ScriptedServer:
        """Start serving; returns once the server listens (``port`` is then the bound port)."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(ready),), name="scripted-server", daemon=True
        )
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Stop serving: in-flight handlers are cancelled and open connections closed."""
        if self._thread is None:
            return
        assert self._loop is not None and self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        # Request bodies carry base64 images, far over aiohttp's 1 MiB default.
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, backlog=4096)
            await site.start()
        except BaseException as exc:
            ready.set_exception(exc)
            await runner.cleanup()
            return
        self.port = site.port
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        ready.set_result(None)
        await self._stopping.wait()
        # Cancel sleeping handlers first, so that cleanup need not wait for them.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _error_response(400, f"the request body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error_response(400, "the request body must be a JSON object")
        key = json.dumps(body, sort_keys=True, separators=(",", ":"))
        with self._lock:
            self.requests.append(body)
            self.auth_headers.append(request.headers.get("Authorization"))
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            try:
                reply = self.responder(body, attempt)
                if not isinstance(reply, Reply):
                    raise TypeError(f"the responder returned {type(reply).__name__}, not a Reply")
            except Exception as exc:
                reply = Reply.error(500, message=f"responder raised {type(exc).__name__}: {exc}")
            wait = self.latency + reply.delay
            if wait > 0:
                await asyncio.sleep(wait)
            return _respond(reply, body, request, identify=self.identify)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _models(self, request: web.Request) -> web.Response:
        owner = SCRIPTED_FINGERPRINT if self.identify else "vlaa-data"
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": owner}
            for model in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _not_found(self, request: web.Request) -> web.Response:
        if request.path in ("/v1/chat/completions", "/v1/models"):
            return _error_response(405, f"{request.method} is not allowed on {request.path}")
        return _error_response(404, f"no such endpoint: {request.method} {request.path}")


def _respond(
    reply: Reply, request_body: dict, request: web.Request, *, identify: bool
) -> web.StreamResponse:
    if reply.kind == "ok":
        body = _completion(reply, request_body, identify=identify)
        return web.Response(body=body, content_type=_JSON)
    if reply.kind == "error":
        return _error_response(reply.status, reply.message, reply.retry_after)
    if reply.kind == "malformed":
        return web.Response(body=_MALFORMED_BODY, content_type=_JSON)
    if request.transport is not None:
        request.transport.close()
    # Writing to the closed transport fails, which aiohttp takes quietly as a client disconnect.
    return web.Response()


def _completion(reply: Reply, request: dict, *, identify: bool) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning_content is not None:
        message["reasoning_content"] = reply.reasoning_content
    prompt_tokens = reply.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = len(_message_text(request)) // 4 + 1
    completion_tokens = reply.completion_tokens
    if completion_tokens is None:
        completion_tokens = (len(reply.content) + len(reply.reasoning_content or "")) // 4 + 1
    body = {
        "id": f"chatcmpl-{'scripted-' if identify else ''}{next(_completion_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if identify:
        body["system_fingerprint"] = SCRIPTED_FINGERPRINT
    return json.dumps(body).encode()


def _error_response(
    status: int, message: str = "", retry_after: float | str | None = None
) -> web.Response:
    kind = "server_error" if status >= 500 else _ERROR_TYPES.get(status, "invalid_request_error")
    if not message:
        try:
            message = http.HTTPStatus(status).phrase
        except ValueError:
            message = f"error {status}"
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type=_JSON, headers=headers
    )


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part.get("text") or ""
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
    return []


def _message_text(request: dict) -> str:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return ""
    return "\n".join(
        text for m in messages if isinstance(m, dict) for text in _texts(m.get("content"))
    )


def _last_user_text(request: dict) -> str:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(_texts(message.get("content")))
    return ""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Serve a built-in responder until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m vlaa_data.testing.server",
        description="A scripted OpenAI-compatible chat server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument(
        "--reasoning",
        choices=REASONING_STYLES,
        default="inline",
        help="where the reasoning goes: reasoning_content, <think>…</think>, …</think>, nowhere",
    )
    parser.add_argument(
        "--max-tokens-truncate",
        action="store_true",
        help="cut replies longer than the request's max_tokens and finish them with 'length'",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="answer each step of the synthetic demo as it expects (vlaa_data.testing.demo)",
    )
    args = parser.parse_args(argv)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    if args.demo:
        from vlaa_data.testing.demo import demo_responder

        responder = demo_responder(args.reasoning)
    else:
        responder = builtin_responder(args.reasoning, truncate=args.max_tokens_truncate)
    with ScriptedServer(responder, latency=args.latency, port=args.port) as server:
        print(f"listening on {server.url}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    # The importable module's main: the --demo responder imports this module, and its Reply
    # must be the class the server checks replies against, not a copy in __main__.
    from vlaa_data.testing import server

    sys.exit(server.main())
