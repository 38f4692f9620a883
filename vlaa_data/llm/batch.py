"""The backend for OpenAI's Batch API: requests gathered into batch jobs, at half the price.

``complete(request)`` queues the request. The queue becomes one job when it holds
``batch_size`` requests (or ``max_bytes`` of JSONL), or once no request has joined it for
``idle_s``. A job's JSONL (one line per request, ``custom_id`` = the request's cache key) is
uploaded (``POST /files``, purpose ``batch``), the batch created (``POST /batches`` for
``/v1/chat/completions`` with a 24 h window) and polled every ``poll_s`` until it ends; then
its output and error files are read and each waiting ``complete`` returns its line's reply or
raises ``CallFailed`` with the line's error (its HTTP status classified as the HTTP backend
classifies it).

Nothing is paid twice across a crash: each job is recorded in ``state_path`` (the workspace's
``batches.json``) before the batch is created, and again as its status changes. A request
whose key belongs to a recorded job on the same endpoint that has not failed, expired or been
cancelled (and whose line did not fail) waits on that job, or reads its output, instead of
being sent again. A job still recorded as ``submitting`` (the process died while creating it)
is looked for among the endpoint's batches by its input file. Once every reply of an ended job
has been handed out, the job is forgotten when the backend closes.

Reason codes, besides those ``vlaa_data.llm.reply`` lists:

    batch_failed      the provider refused the whole batch (invalid file, token limit, ...)
    batch_expired     the batch ended its 24 h window before this request was answered
    batch_cancelled   the batch was cancelled before this request was answered
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import openai

from vlaa_data.errors import VlaaError
from vlaa_data.llm.http import classify_status
from vlaa_data.llm.image_encoding import ImageEncoder
from vlaa_data.llm.presets import redact_url
from vlaa_data.llm.reply import CallFailed, ChatReply, EndpointUnreachable, parse_completion
from vlaa_data.llm.request import ChatRequest

__all__ = ["BatchBackend", "BatchConfig", "BatchJobs"]

logger = logging.getLogger(__name__)

ENDPOINT: Final = "/v1/chat/completions"
# Statuses of a batch that may still answer (``submitting``: ours, before it has an id).
LIVE = frozenset(
    {"submitting", "validating", "in_progress", "finalizing", "cancelling", "completed"}
)
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
# Why a request of an ended batch has no reply, by the batch's status or a line's error code.
_NO_REPLY = {"expired": "batch_expired", "cancelled": "batch_cancelled"}
_LINE_CODES = {"batch_expired": "batch_expired", "batch_cancelled": "batch_cancelled"}

T = TypeVar("T")


@dataclass
class BatchConfig:
    """Where the Batch API is and how jobs are made and followed.

    ``base_url`` is the API root (``https://api.openai.com/v1``); ``timeout_s`` and
    ``max_retries`` apply to each API call (upload, create, poll, download), not to a job,
    which has its provider's ``completion_window``. ``state_path``: the JSON file recording
    submitted jobs (None: kept in memory only, so a crash forgets them).
    """

    base_url: str
    api_key: str | None
    timeout_s: float = 600.0
    max_retries: int = 6
    max_pixels: int | None = None
    batch_size: int = 1000
    max_bytes: int = 190 * 2**20  # OpenAI takes input files of up to 200 MB
    poll_s: float = 30.0
    idle_s: float = 1.0
    completion_window: str = "24h"
    state_path: Path | None = None

    def __repr__(self) -> str:
        return (
            f"BatchConfig(base_url={redact_url(self.base_url)!r}, "
            f"api_key={'***' if self.api_key else None}, batch_size={self.batch_size!r}, "
            f"poll_s={self.poll_s!r}, state_path={self.state_path!r})"
        )


class BatchJobs:
    """The jobs a workspace submitted, kept in a JSON file rewritten whole on each change.

    A job is a dict: ``id`` (None until the batch exists), ``input_file_id``, ``base_url``
    (credentials redacted), ``model``, ``created`` (Unix time), ``status``, ``custom_ids`` and,
    once its output was read, ``failed_ids`` (lines that came back with an error).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.jobs: list[dict[str, Any]] = []
        if path is not None and path.exists():
            try:
                self.jobs = list(json.loads(path.read_text(encoding="utf-8"))["jobs"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise VlaaError(
                    f"{path} cannot be read ({exc}); it records the batch jobs submitted: "
                    "restore it, or delete it once no job is running"
                ) from None

    def find(self, key: str, base_url: str | None) -> dict[str, Any] | None:
        """The live job on ``base_url`` that holds ``key`` and did not fail it, if any."""
        for job in reversed(self.jobs):
            if (
                job["status"] in LIVE
                and job["base_url"] == base_url
                and key in job["custom_ids"]
                and key not in job.get("failed_ids", ())
            ):
                return job
        return None

    def add(self, job: dict[str, Any]) -> None:
        self.jobs.append(job)
        self.save()

    def remove(self, jobs: list[dict[str, Any]]) -> None:
        if jobs:
            self.jobs = [job for job in self.jobs if all(job is not gone for gone in jobs)]
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        text = json.dumps({"jobs": self.jobs}, indent=1)
        partial = self.path.with_name(f".{self.path.name}.tmp")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, self.path)  # a crash leaves the old file or the new one


class BatchBackend:
    """Completes ``ChatRequest``s through OpenAI's Batch API; see the module docstring.

    ``client`` replaces the ``openai.AsyncOpenAI`` made from ``config`` (tests).
    """

    name = "batch"

    def __init__(self, config: BatchConfig, *, client: openai.AsyncOpenAI | None = None) -> None:
        if config.batch_size < 1 or config.poll_s <= 0 or config.idle_s < 0:
            raise ValueError("batch_size must be >= 1, poll_s > 0 and idle_s >= 0")
        self.config = config
        self.jobs = BatchJobs(config.state_path)
        self._base_url = redact_url(config.base_url)
        self._client = client
        self._images = ImageEncoder()
        self._futures: dict[str, asyncio.Future[ChatReply]] = {}
        self._delivered: set[str] = set()  # keys whose reply (or failure) was handed out
        self._settled: set[str] = set()  # input files of jobs whose output was read here
        self._queue: dict[str, bytes] = {}
        self._queued_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching: set[str] = set()  # input files of jobs being followed
        self._reconciled: asyncio.Task[None] | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=self.config.api_key or "none",  # the SDK insists on one
                timeout=self.config.timeout_s,
                max_retries=self.config.max_retries,
            )
        return self._client

    async def complete(self, request: ChatRequest) -> ChatReply:
        key = request.key()
        future = self._futures.get(key)
        if future is None:
            # Requests with the same key (an image two samples share) share one line.
            future = self._futures[key] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_consume)
            try:
                await self._start(key, request)
            except CallFailed as exc:
                del self._futures[key]
                future.set_exception(exc)
            except BaseException:
                del self._futures[key]
                future.set_exception(CallFailed("backend_error", "withdrawn before it was sent"))
                raise
        try:
            return await asyncio.shield(future)  # one waiter cancelled leaves the others
        finally:
            if future.done():
                self._delivered.add(key)
                if self._futures.get(key) is future:
                    del self._futures[key]  # handed out: only requests in flight are held

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Jobs whose replies were all handed out, and jobs that can answer nothing more.
        done = [
            job
            for job in self.jobs.jobs
            if job["base_url"] == self._base_url
            and (
                job["status"] not in LIVE
                or (
                    job["input_file_id"] in self._settled
                    and self._delivered.issuperset(job["custom_ids"])
                )
            )
        ]
        self.jobs.remove(done)
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _start(self, key: str, request: ChatRequest) -> None:
        """Follow the recorded job that holds ``key``, or queue its line for a new one."""
        if self._reconciled is None:
            self._reconciled = asyncio.ensure_future(self._reconcile())
        await asyncio.shield(self._reconciled)
        job = self.jobs.find(key, self._base_url)
        if job is not None:
            if job["id"] is None:  # still unconfirmed: the listing failed
                raise CallFailed(
                    "connection_error",
                    f"cannot tell whether a batch of {job['input_file_id']} was created; "
                    "a rerun asks again",
                )
            self._follow(job)
            return
        max_pixels = request.max_pixels
        if max_pixels is None:
            max_pixels = self.config.max_pixels
        body = await self._images.payload(request, max_pixels)
        line = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
        self._enqueue(key, (json.dumps(line, ensure_ascii=False) + "\n").encode())

    def _enqueue(self, key: str, line: bytes) -> None:
        if self._queue and self._queued_bytes + len(line) > self.config.max_bytes:
            self._flush()
        self._queue[key] = line
        self._queued_bytes += len(line)
        if len(self._queue) >= self.config.batch_size:
            self._flush()
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.config.idle_s, self._flush)

    def _flush(self) -> None:
        """Submit what is queued as one job."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue:
            return
        lines, self._queue, self._queued_bytes = self._queue, {}, 0
        self._spawn(self._submit(lines))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _follow(self, job: dict[str, Any]) -> None:
        if job["input_file_id"] not in self._watching:
            self._watching.add(job["input_file_id"])
            self._spawn(self._watch(job))

    async def _submit(self, lines: dict[str, bytes]) -> None:
        keys = list(lines)
        try:
            upload = await self.client.files.create(
                file=("requests.jsonl", b"".join(lines.values()), "application/jsonl"),
                purpose="batch",
            )
        except openai.APIError as exc:
            self._fail(keys, _api_failure(exc, "uploading the batch file"))
            return
        model = json.loads(next(iter(lines.values())))["body"].get("model")
        job: dict[str, Any] = {
            "id": None,
            "input_file_id": upload.id,
            "base_url": self._base_url,
            "model": model,
            "created": time.time(),
            "status": "submitting",
            "custom_ids": keys,
        }
        # Recorded before the batch exists: a crash from here on is found again by its file.
        self.jobs.add(job)
        try:
            # Not retried by the SDK: a create that timed out may have made a batch, and a
            # second one would be paid twice. A rerun finds it by its file instead.
            batch = await self.client.with_options(max_retries=0).batches.create(
                input_file_id=upload.id,
                endpoint=ENDPOINT,
                completion_window=self.config.completion_window,  # type: ignore[arg-type]
                metadata={"created_by": "vlaa-data"},
            )
        except openai.APIStatusError as exc:  # refused: no batch was made
            self.jobs.remove([job])
            self._fail(keys, _api_failure(exc, "creating the batch"))
            return
        except openai.APIError as exc:  # no answer: it may exist; a rerun looks for it
            self._fail(keys, _api_failure(exc, "creating the batch"))
            return
        job["id"], job["status"] = batch.id, batch.status
        self.jobs.save()
        logger.info("batch %s: %d requests submitted", batch.id, len(keys))
        self._follow(job)

    async def _watch(self, job: dict[str, Any]) -> None:
        try:
            results = await self._collect(job)
        except openai.NotFoundError:  # the batch or its output is gone: nothing more to get
            self.jobs.remove([job])
            what = f"batch {job['id']} (or its output) is not found at {self._base_url}"
            self._fail(job["custom_ids"], CallFailed("batch_failed", what))
            return
        except CallFailed as exc:  # the job stays recorded: a rerun follows it again
            self._fail(job["custom_ids"], exc)
            return
        finally:
            self._watching.discard(job["input_file_id"])
        self._settled.add(job["input_file_id"])
        for key, result in results.items():
            future = self._futures.get(key)
            if future is None:  # not asked yet: a later request of this key takes it
                future = self._futures[key] = asyncio.get_running_loop().create_future()
                future.add_done_callback(_consume)
            if future.done():
                continue
            if isinstance(result, CallFailed):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _collect(self, job: dict[str, Any]) -> dict[str, ChatReply | CallFailed]:
        """Poll ``job`` until it ends; each of its keys' reply or failure."""
        batch_id = job["id"]
        while True:
            batch = await self._patiently(
                f"polling batch {batch_id}", lambda: self.client.batches.retrieve(batch_id)
            )
            if batch.status != job["status"]:
                job["status"] = batch.status
                self.jobs.save()
            if batch.status in ENDED:
                break
            await asyncio.sleep(self.config.poll_s)
        keys = job["custom_ids"]
        if batch.status == "failed":
            errors = batch.errors.data if batch.errors and batch.errors.data else []
            detail = "; ".join(f"{e.code}: {e.message}" for e in errors) or "no reason given"
            failure = CallFailed("batch_failed", f"batch {batch_id} failed: {detail}")
            return dict.fromkeys(keys, failure)
        results: dict[str, ChatReply | CallFailed] = {}
        latency = max(0.0, time.time() - job["created"])
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._patiently(
                f"reading {file_id} of batch {batch_id}",
                functools.partial(self.client.files.content, file_id),
            )
            for text in content.text.splitlines():
                read = _read_line(text, batch_id) if text.strip() else None
                if read is None:
                    continue
                key, result = read
                if isinstance(result, ChatReply):
                    result.latency_s = latency
                results[key] = result
        reason = _NO_REPLY.get(batch.status, "server_error")
        for key in keys:
            if key not in results:
                results[key] = CallFailed(
                    reason, f"batch {batch_id} ended {batch.status} without answering this request"
                )
        job["failed_ids"] = [key for key in keys if isinstance(results[key], CallFailed)]
        self.jobs.save()
        return {key: results[key] for key in keys}

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again every ``poll_s`` while it fails transiently (the SDK has
        retried it already), up to ``max_retries`` times. A 404 raises ``NotFoundError``."""
        for attempt in range(self.config.max_retries + 1):
            try:
                return await call()
            except openai.NotFoundError:
                raise
            except openai.APIError as exc:
                failure = _api_failure(exc, what)
                transient = not isinstance(exc, openai.APIStatusError) or (
                    exc.status_code in (408, 409, 429) or exc.status_code >= 500
                )
                if not transient or attempt == self.config.max_retries:
                    detail = f"{failure.detail}; the batch stays recorded for the next run"
                    if isinstance(failure, EndpointUnreachable):  # the step stops: all wait
                        raise EndpointUnreachable(detail) from None
                    raise CallFailed(failure.reason, detail) from None
                logger.debug("%s failed, trying again: %s", what, failure.detail)
                await asyncio.sleep(self.config.poll_s)
        raise AssertionError("unreachable")

    async def _reconcile(self) -> None:
        """Find the batches of jobs recorded as ``submitting`` among the endpoint's batches;
        forget those that were never created."""
        pending = {
            job["input_file_id"]: job
            for job in self.jobs.jobs
            if job["status"] == "submitting" and job["base_url"] == self._base_url
        }
        if not pending:
            return
        oldest = min(job["created"] for job in pending.values()) - 3600  # clock skew
        found: dict[str, Any] = {}
        try:
            async for batch in self.client.batches.list(limit=100):
                if batch.input_file_id in pending:
                    found[batch.input_file_id] = batch
                if len(found) == len(pending) or batch.created_at < oldest:
                    break
        except openai.APIError as exc:
            logger.warning("cannot list batches to find unconfirmed jobs: %s", exc)
            return  # they stay unconfirmed; their requests fail and a rerun asks again
        for file_id, batch in found.items():
            pending[file_id]["id"], pending[file_id]["status"] = batch.id, batch.status
        self.jobs.remove([job for file_id, job in pending.items() if file_id not in found])
        self.jobs.save()

    def _fail(self, keys: list[str], failure: CallFailed) -> None:
        for key in keys:
            future = self._futures.get(key)
            if future is not None and not future.done():
                del self._futures[key]  # a later request of this key tries again
                future.set_exception(failure)

    def __repr__(self) -> str:
        return f"BatchBackend({self.config!r})"


def _consume(future: asyncio.Future[Any]) -> None:
    # A failure nobody awaits (its request was withdrawn) is not an "unretrieved" error.
    if not future.cancelled():
        future.exception()


def _api_failure(exc: openai.APIError, what: str) -> CallFailed:
    """A ``CallFailed`` for an SDK error, reason codes as the HTTP backend gives them."""
    if isinstance(exc, openai.APITimeoutError):
        return CallFailed("timeout", f"{what}: no reply in time")
    if isinstance(exc, openai.APIConnectionError):
        return EndpointUnreachable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        reason, detail, _ = classify_status(exc.status_code, {}, exc.response.content)
        return CallFailed(reason, f"{what}: {detail}")
    return CallFailed("server_error", f"{what}: {exc}")


def _read_line(text: str, batch_id: str) -> tuple[str, ChatReply | CallFailed] | None:
    """The custom_id of one output or error file line of batch ``batch_id``, and its reply or
    failure; None for a line without one (its request then counts as unanswered)."""
    try:
        line = json.loads(text)
        key = line["custom_id"]
    except (ValueError, KeyError, TypeError):
        logger.warning("a batch output line without a custom_id: %s", text[:200])
        return None
    if not isinstance(key, str) or not isinstance(line, dict):
        return None
    response = line.get("response")
    if not isinstance(response, dict):
        response = {}
    error = line.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(error)
        reason = _LINE_CODES.get(code or "", "batch_failed")
        return key, CallFailed(reason, f"batch {batch_id}: {code}: {message}")
    status = response.get("status_code")
    body = response.get("body")
    if isinstance(status, int) and 200 <= status < 300:
        try:
            return key, parse_completion(body if isinstance(body, (dict, str)) else str(body))
        except CallFailed as exc:
            return key, exc
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    reason, detail, _ = classify_status(status if isinstance(status, int) else 500, {}, raw)
    return key, CallFailed(reason, detail)
