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

It also speaks OpenAI's Batch API: ``POST /v1/files`` (a JSONL upload), ``GET
/v1/files/{id}[/content]``, ``POST /v1/batches``, ``GET /v1/batches[/{id}]`` and ``POST
/v1/batches/{id}/cancel``. A batch reports ``in_progress`` to its first ``batch_polls``
retrievals and then ends as ``batch_outcome`` says; a completed batch's lines are answered by
the same responder as chat requests (an error reply goes to the error file).
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
    "BATCH_OUTCOMES",
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
BATCH_OUTCOMES = ("completed", "failed", "expired", "cancelled")

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
# What the error file says of a request an ended batch did not answer, as OpenAI words it.
_UNANSWERED = {
    "expired": "This request could not be executed before the completion window expired.",
    "cancelled": "This request was not executed because the batch was cancelled.",
}


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

    Batch API: ``batch_creations`` records the body of each ``POST /v1/batches`` (``batch_count``
    counts them) and ``batch_requests`` the body of each batch line answered; ``batch_polls``
    (retrievals that still see a batch in progress) and ``batch_outcome`` (one of
    ``BATCH_OUTCOMES``) may be reassigned while the server runs. ``reset`` forgets the records,
    not the files and batches.
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
        self.batch_polls = 1
        self.batch_outcome = "completed"
        self.batch_creations: list[dict] = []
        self.batch_requests: list[dict] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._file_meta: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, int] = {}
        self._ids = itertools.count(1)
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

    @property
    def batch_count(self) -> int:
        """How many batches have been created."""
        return len(self.batch_creations)

    def reset(self) -> None:
        """Forget the recorded requests, the attempt counters and the in-flight peak."""
        with self._lock:
            self.requests.clear()
            self.auth_headers.clear()
            self.batch_creations.clear()
            self.batch_requests.clear()
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
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}", self._file)
        app.router.add_get("/v1/files/{id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches", self._list_batches)
        app.router.add_get("/v1/batches/{id}", self._retrieve_batch)
        app.router.add_post("/v1/batches/{id}/cancel", self._cancel_batch)
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
        with self._lock:
            self.requests.append(body)
            self.auth_headers.append(request.headers.get("Authorization"))
            attempt = self._attempt(body)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            reply = self._reply(body, attempt)
            wait = self.latency + reply.delay
            if wait > 0:
                await asyncio.sleep(wait)
            return _respond(reply, body, request, identify=self.identify)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _attempt(self, body: dict) -> int:
        """How many times this exact body has been seen, this time included (lock held)."""
        key = json.dumps(body, sort_keys=True, separators=(",", ":"))
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        return attempt

    def _reply(self, body: dict, attempt: int) -> Reply:
        try:
            reply = self.responder(body, attempt)
            if not isinstance(reply, Reply):
                raise TypeError(f"the responder returned {type(reply).__name__}, not a Reply")
        except Exception as exc:
            reply = Reply.error(500, message=f"responder raised {type(exc).__name__}: {exc}")
        return reply

    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = f"file-scripted-{next(self._ids)}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = data
        self._file_meta[file_id] = meta
        return meta

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
            return _error_response(400, "a multipart body with 'file' and 'purpose' is required")
        with self._lock:
            meta = self._new_file(upload.file.read(), upload.filename, purpose)
        return web.json_response(meta)

    async def _file(self, request: web.Request) -> web.Response:
        meta = self._file_meta.get(request.match_info["id"])
        if meta is None:
            return _error_response(404, f"no such file: {request.match_info['id']}")
        return web.json_response(meta)

    async def _file_content(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["id"])
        if data is None:
            return _error_response(404, f"no such file: {request.match_info['id']}")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _create_batch(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _error_response(400, f"the request body is not JSON: {exc}")
        if not isinstance(body, dict) or body.get("input_file_id") not in self.files:
            return _error_response(404, f"no such file: {body.get('input_file_id')}")
        if body.get("endpoint") != "/v1/chat/completions":
            return _error_response(400, f"unsupported endpoint: {body.get('endpoint')}")
        with self._lock:
            self.batch_creations.append(body)
            batch_id = f"batch_scripted_{next(self._ids)}"
            now = int(time.time())
            batch = self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body.get("completion_window", "24h"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": now,
                "expires_at": now + 24 * 3600,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"),
            }
            self._polls[batch_id] = 0
        return web.json_response(batch)

    async def _list_batches(self, request: web.Request) -> web.Response:
        newest_first = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [batch["id"] for batch in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query.get("limit", "20"))
        page = newest_first[:limit]
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(newest_first) > limit,
            }
        )

    async def _retrieve_batch(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["id"]
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return _error_response(404, f"no such batch: {batch_id}")
            if batch["status"] == "cancelling":
                self._end_batch(batch, "cancelled")
            elif batch["status"] in ("validating", "in_progress", "finalizing"):
                self._polls[batch_id] += 1
                if self._polls[batch_id] > self.batch_polls:
                    self._end_batch(batch, self.batch_outcome)
                else:
                    batch["status"] = "in_progress"
                    batch.setdefault("in_progress_at", int(time.time()))
            return web.json_response(batch)

    async def _cancel_batch(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["id"]
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return _error_response(404, f"no such batch: {batch_id}")
            if batch["status"] in ("validating", "in_progress", "finalizing"):
                batch["status"] = "cancelling"
                batch["cancelling_at"] = int(time.time())
            return web.json_response(batch)

    def _end_batch(self, batch: dict[str, Any], outcome: str) -> None:
        """Give ``batch`` its final status; a completed one answers its lines (lock held)."""
        if outcome not in BATCH_OUTCOMES:
            raise ValueError(f"batch_outcome must be one of {', '.join(BATCH_OUTCOMES)}")
        now = int(time.time())
        batch["status"] = outcome
        batch[f"{outcome}_at"] = now
        if outcome == "failed":
            error = {
                "code": "token_limit_exceeded",
                "message": "Enqueued token limit reached for the scripted model.",
                "param": None,
                "line": None,
            }
            batch["errors"] = {"object": "list", "data": [error]}
            return
        lines = [
            json.loads(text) for text in self.files[batch["input_file_id"]].splitlines() if text
        ]
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for line in lines:
            custom_id = line.get("custom_id")
            if outcome != "completed":
                error = {"code": f"batch_{outcome}", "message": _UNANSWERED[outcome]}
                errors.append(
                    {"id": None, "custom_id": custom_id, "response": None, "error": error}
                )
                continue
            body = line.get("body") or {}
            self.batch_requests.append(body)
            reply = self._reply(body, self._attempt(body))
            status, response = _line_response(reply, body, identify=self.identify)
            result = {
                "id": f"batch_req_scripted_{next(self._ids)}",
                "custom_id": custom_id,
                "response": {"status_code": status, "request_id": "scripted", "body": response},
                "error": None,
            }
            (outputs if status == 200 else errors).append(result)
        for kind, results in (("output", outputs), ("error", errors)):
            if results:
                data = "".join(json.dumps(result) + "\n" for result in results).encode()
                meta = self._new_file(data, f"{batch['id']}_{kind}.jsonl", "batch_output")
                batch[f"{kind}_file_id"] = meta["id"]
        batch["request_counts"] = {
            "total": len(lines),
            "completed": len(outputs),
            "failed": len(errors),
        }

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


def _line_response(reply: Reply, request: dict, *, identify: bool) -> tuple[int, Any]:
    """The status and body of a batch line answered with ``reply`` (a dropped connection is
    a 500; a malformed body stays text)."""
    if reply.kind == "ok":
        return 200, json.loads(_completion(reply, request, identify=identify))
    if reply.kind == "malformed":
        return 200, _MALFORMED_BODY.decode()
    if reply.kind == "drop":
        reply = Reply.error(500, message="the connection was dropped")
    return reply.status, _error_body(reply.status, reply.message)


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


def _error_body(status: int, message: str = "") -> dict[str, Any]:
    kind = "server_error" if status >= 500 else _ERROR_TYPES.get(status, "invalid_request_error")
    if not message:
        try:
            message = http.HTTPStatus(status).phrase
        except ValueError:
            message = f"error {status}"
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def _error_response(
    status: int, message: str = "", retry_after: float | str | None = None
) -> web.Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
    body = _error_body(status, message)
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
