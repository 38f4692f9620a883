"""The interface every backend implements: HTTP endpoints and in-process models alike."""

from __future__ import annotations

from typing import Protocol

from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest

__all__ = ["Backend"]


class Backend(Protocol):
    """Completes chat requests; many ``complete`` calls may be awaited at once.

    ``complete`` returns a ``ChatReply`` or raises ``CallFailed`` with a reason code once the
    backend has given up (an HTTP backend retries transient errors before that).
    """

    name: str

    async def complete(self, request: ChatRequest) -> ChatReply: ...

    async def aclose(self) -> None: ...
