"""Completing a list of requests at once through one backend, in order, then closing it.

What eval's generation and the open-ended judge share; the LLM steps have their own engine
(``vlaa_data.steps.llm_runner``) for the cache, ledger and budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from vlaa_data.llm.backend import Backend
from vlaa_data.llm.reply import CallFailed, ChatReply
from vlaa_data.llm.request import ChatRequest

__all__ = ["complete_all"]


def complete_all(
    backend: Backend,
    requests: Sequence[ChatRequest],
    *,
    concurrency: int,
    on_done: Callable[[int, int], None] | None = None,
) -> list[ChatReply | CallFailed]:
    """Each request's reply, or the ``CallFailed`` it ended with, in request order.

    At most ``concurrency`` requests are in flight (an in-process backend batches what is
    queued); ``on_done(finished, total)`` follows each. The backend is closed at the end, which
    frees an in-process model: one backend serves one call.
    """
    return asyncio.run(_complete_all(backend, requests, concurrency, on_done))


async def _complete_all(
    backend: Backend,
    requests: Sequence[ChatRequest],
    concurrency: int,
    on_done: Callable[[int, int], None] | None,
) -> list[ChatReply | CallFailed]:
    gate = asyncio.Semaphore(concurrency)
    finished = 0

    async def one(request: ChatRequest) -> ChatReply | CallFailed:
        nonlocal finished
        async with gate:
            try:
                result: ChatReply | CallFailed = await backend.complete(request)
            except CallFailed as exc:
                result = exc
        finished += 1
        if on_done is not None:
            on_done(finished, len(requests))
        return result

    try:
        return await asyncio.gather(*(one(request) for request in requests))
    finally:
        await backend.aclose()
