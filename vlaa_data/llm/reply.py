"""What a backend gives back: a parsed completion, or a failure with a reason code.

Reason codes are short and stable (they are counted in reports and stored in ``results``):

    rate_limited        429 after every retry
    server_error        5xx after every retry
    timeout             no reply within the per-request timeout, after every retry
    connection_error    the connection failed or dropped, after every retry; raised as
                        ``EndpointUnreachable`` when no connection could be made at all
    bad_request         4xx other than 401/403/429 (the request itself is wrong; not retried)
    auth_error          401/403 (not retried)
    unparseable_response  HTTP 200 whose body is not a chat completion
    backend_error       an in-process backend raised
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vlaa_data.answers import split_reasoning

__all__ = [
    "SCRIPTED_FINGERPRINT",
    "CallFailed",
    "ChatReply",
    "EndpointUnreachable",
    "parse_completion",
]

# What the scripted stand-in server (vlaa_data.testing.server) says in every reply's
# ``system_fingerprint`` and as ``owned_by`` of every model it lists: its replies are
# placeholders, never a model's.
SCRIPTED_FINGERPRINT = "vlaa-data-scripted"


class CallFailed(Exception):
    """A request that could not be completed; ``reason`` is one of the codes above."""

    def __init__(self, reason: str, detail: str, *, paid: bool = False, raw: Any = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        # True when a reply came back (and may have been billed) but could not be used.
        self.paid = paid
        self.raw = raw
        # The endpoint that sent that reply, when a pool of several chose it (shown form).
        self.base_url: str | None = None


class EndpointUnreachable(CallFailed):
    """No connection to the endpoint could be made (refused, no such host, no route) for
    several attempts in a row, none answered in between: every request would fail the same
    way, so a run stops rather than failing each sample. ``detail`` names the endpoint, its
    credentials redacted."""

    def __init__(self, detail: str) -> None:
        super().__init__("connection_error", detail)


@dataclass
class ChatReply:
    content: str
    reasoning: str | None  # a separate reasoning field (DeepSeek's reasoning_content), if any
    finish_reason: str | None
    tokens_in: int | None
    tokens_out: int | None
    raw: dict[str, Any] = field(default_factory=dict)  # the response body, for the ledger
    latency_s: float = 0.0
    raw_json: str | None = None  # the body's text as received, when it came as text
    # The endpoint that answered, when a pool of several chose it (credentials redacted).
    base_url: str | None = None

    @property
    def scripted(self) -> bool:
        """Whether the scripted stand-in server sent this reply (see ``SCRIPTED_FINGERPRINT``)."""
        return self.raw.get("system_fingerprint") == SCRIPTED_FINGERPRINT

    def final_text(self) -> str:
        """The content without the reasoning a model wrote inline (``…</think>``), stripped:
        what a judge's verdict is read from."""
        if "</think>" in self.content:
            return split_reasoning(self.content)[1].strip()
        return self.content.strip()

    def response_json(self) -> str:
        """The response for the ledger: the body as received, else ``raw`` as JSON."""
        if self.raw_json is not None:
            return self.raw_json
        return json.dumps(self.raw, ensure_ascii=False)


def parse_completion(body: bytes | str | dict[str, Any]) -> ChatReply:
    """Parse an OpenAI chat-completion body; raise ``CallFailed('unparseable_response')``."""
    raw_json = None
    if isinstance(body, dict):
        data = body
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CallFailed(
                "unparseable_response", f"body is not JSON: {exc}", paid=True, raw=_preview(body)
            ) from None
        if isinstance(body, str):
            raw_json = body
        else:
            try:
                raw_json = body.decode("utf-8")
            except UnicodeDecodeError:  # JSON in UTF-16/32: the ledger re-encodes it
                raw_json = None
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise CallFailed(
            "unparseable_response", "no choices[0].message in the reply", paid=True, raw=data
        ) from None
    if not isinstance(message, dict):
        raise CallFailed("unparseable_response", "choices[0].message is not an object", paid=True)
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise CallFailed("unparseable_response", "message.content is not a string", paid=True)
    # DeepSeek's API says reasoning_content; recent vLLM reasoning parsers say reasoning.
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    usage = data.get("usage") or {}
    return ChatReply(
        content=content,
        reasoning=reasoning if isinstance(reasoning, str) and reasoning else None,
        finish_reason=choice.get("finish_reason"),
        tokens_in=_int_or_none(usage.get("prompt_tokens")),
        tokens_out=_int_or_none(usage.get("completion_tokens")),
        raw=data,
        raw_json=raw_json,
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _preview(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text[:2000]
